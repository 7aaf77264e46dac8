// hct::LayerStreamer over the public Runtime API: prefetch + 1 slots allocated once
// (Runtime::Allocate), layers loaded into them in order on a background thread
// (Runtime::LoadInto with a LoadTarget that returns the slot when the layer is dropped), and
// Restart() for the next token in the same slots.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "hct/runtime.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#endif

namespace hct {

const LoadedTensor* StreamedLayer::Find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.spec().name == name) return &t;
  return nullptr;
}

namespace {

// The reused buffers; shared with every load's on_release so that it outlives the streamer
// while a layer is still held.
struct SlotPool {
  Placement placement = Placement::kHost;
  int device = -1;
  uint64_t slot_bytes = 0;
  std::vector<std::shared_ptr<void>> mem;
  std::vector<void*> free_events;  // cudaEvent_t: the consumer's stream is done with the slot
  std::mutex mu;
  std::condition_variable cv;
  std::deque<int> free;  // FIFO: slots are reused round-robin, the longest-idle first
  bool stop = false;     // under mu: the worker is asked to stop
  ~SlotPool() {
#if HCT_WITH_CUDA
    for (void* e : free_events) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
#endif
  }
  // Returns `slot` once the consumer's work on `stream` so far is done (on the GPU).
  void Release(int slot, StreamHandle stream) {
#if HCT_WITH_CUDA
    if (placement == Placement::kDevice) {
      // The next load into this slot waits (on the GPU) for the consumer's work so far.
      int prev = -1;
      (void)cudaGetDevice(&prev);
      (void)cudaSetDevice(device);
      (void)cudaEventRecord(static_cast<cudaEvent_t>(free_events[size_t(slot)]),
                            static_cast<cudaStream_t>(stream));
      if (prev >= 0) (void)cudaSetDevice(prev);
    }
#else
    (void)stream;
#endif
    std::lock_guard<std::mutex> l(mu);
    free.push_back(slot);
    cv.notify_all();
  }
};

class Streamer final : public LayerStreamer {
 public:
  Streamer(Runtime* rt, std::vector<std::vector<TensorSpec>> layers, StreamHandle stream)
      : rt_(rt), layers_(std::move(layers)), stream_(stream) {}
  ~Streamer() override { Stop(); }
  Status Init(int prefetch);
  Result<StreamedLayer> Next() override;
  Status Restart() override;
  int num_layers() const override { return int(layers_.size()); }
  uint64_t slot_bytes() const override { return pool_->slot_bytes; }
  int slots() const override { return int(pool_->mem.size()); }

 private:
  void Start();
  void Stop();
  void Run();
  Result<StreamedLayer> LoadLayer(int k, int slot);

  Runtime* rt_;
  std::vector<std::vector<TensorSpec>> layers_;
  StreamHandle stream_;
  std::shared_ptr<SlotPool> pool_;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Result<StreamedLayer>> ready_;
  int handed_out_ = 0;
};

Status Streamer::Init(int prefetch) {
  auto pool = std::make_shared<SlotPool>();
  pool->placement = rt_->placement();
  pool->device = rt_->device();
  std::vector<TensorSpec> all;
  for (const auto& l : layers_) {
    uint64_t total = 0;
    PackOffsets(l, &total);
    pool->slot_bytes = std::max(pool->slot_bytes, total);
    all.insert(all.end(), l.begin(), l.end());
  }
  const int nslots = std::min<int>(prefetch + 1, std::max<int>(1, int(layers_.size())));
  for (int i = 0; i < nslots; ++i) {
    HCT_ASSIGN_OR_RETURN(std::shared_ptr<void> p, rt_->Allocate(pool->slot_bytes));
    pool->mem.push_back(std::move(p));
    pool->free.push_back(i);
#if HCT_WITH_CUDA
    if (pool->placement == Placement::kDevice) {
      cudaEvent_t ev;
      HCT_CHECK(cuda, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
      pool->free_events.push_back(ev);
    }
#endif
  }
  pool_ = std::move(pool);
  HCT_RETURN_IF_ERROR(rt_->Prepare(all));
  Start();
  return Status::OK();
}

Result<StreamedLayer> Streamer::LoadLayer(int k, int slot) {
  LoadTarget t;
  t.dst = pool_->mem[size_t(slot)].get();
  t.dst_bytes = pool_->slot_bytes;
  std::shared_ptr<SlotPool> keep = pool_;
  StreamHandle st = stream_;
  // Called once the layer is dropped; not by a failed load (LoadTarget::on_release).
  t.on_release = [keep, slot, st] { keep->Release(slot, st); };
  t.wait_before = pool_->free_events.empty() ? nullptr : pool_->free_events[size_t(slot)];
  auto r = rt_->LoadInto(layers_[size_t(k)], stream_, t);
  if (!r.ok()) {
    t.on_release();  // nothing holds the slot: it is free again
    return r.status().WithContext("layer " + std::to_string(k));
  }
  StreamedLayer layer;
  layer.index = k;
  layer.tensors = std::move(*r);
  return layer;
}

void Streamer::Run() {
  for (int k = 0; k < int(layers_.size()); ++k) {
    int slot = -1;
    {
      std::unique_lock<std::mutex> l(pool_->mu);
      pool_->cv.wait(l, [&] { return pool_->stop || !pool_->free.empty(); });
      if (pool_->stop) return;
      slot = pool_->free.front();
      pool_->free.pop_front();
    }
    Result<StreamedLayer> r = LoadLayer(k, slot);
    const bool ok = r.ok();
    {
      std::lock_guard<std::mutex> l(mu_);
      ready_.push_back(std::move(r));
    }
    cv_.notify_all();
    if (!ok) return;  // later layers are not loaded after an error
  }
}

void Streamer::Start() {
  {
    std::lock_guard<std::mutex> l(pool_->mu);
    pool_->stop = false;
  }
  worker_ = std::thread([this] { Run(); });
}

void Streamer::Stop() {
  {
    std::lock_guard<std::mutex> l(pool_->mu);
    pool_->stop = true;
  }
  pool_->cv.notify_all();
  if (worker_.joinable()) worker_.join();
}

Status Streamer::Restart() {
  Stop();
  std::deque<Result<StreamedLayer>> dropped;
  {
    std::lock_guard<std::mutex> l(mu_);
    dropped.swap(ready_);
    handed_out_ = 0;
  }
  dropped.clear();  // their slots return to the pool (outside our lock)
  Start();
  return Status::OK();
}

Result<StreamedLayer> Streamer::Next() {
  std::unique_lock<std::mutex> l(mu_);
  if (handed_out_ >= int(layers_.size()))
    return Status::OutOfRange("all " + std::to_string(layers_.size()) + " layers were streamed");
  cv_.wait(l, [&] { return !ready_.empty(); });
  Result<StreamedLayer> r = std::move(ready_.front());
  if (r.ok()) {
    ready_.pop_front();
    ++handed_out_;
  }  // an error stays at the front: every later Next() reports it
  return r;
}

}  // namespace

Result<std::unique_ptr<LayerStreamer>> LayerStreamer::Create(
    Runtime* runtime, std::vector<std::vector<TensorSpec>> layers, int prefetch,
    StreamHandle stream) {
  if (!runtime) return Status::InvalidArgument("LayerStreamer needs a runtime");
  if (prefetch < 0 || prefetch > 64)
    return Status::InvalidArgument("prefetch " + std::to_string(prefetch) + " is not in [0, 64]");
  auto s = std::make_unique<Streamer>(runtime, std::move(layers), stream);
  HCT_RETURN_IF_ERROR(s->Init(prefetch));
  return std::unique_ptr<LayerStreamer>(std::move(s));
}

}  // namespace hct
