// hct::LayerStreamer over the public Runtime API: prefetch + 1 slots allocated once
// (Runtime::Allocate), layers loaded into them in order on a background thread
// (Runtime::LoadInto with a LoadTarget that returns the slot when the layer is dropped), and
// Restart() for the next token in the same slots.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <span>
#include <thread>
#include <utility>

#include "hct/runtime.h"
#include "runtime/detail/engine.h"

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

// Arena mode (Options::extra_bytes): one buffer of slot_bytes + extra bytes, layers alternating
// between window 0 = [0, slot) and window 1 = [extra, extra + slot); each tensor is a Piece that
// is released on its own when its last handle is dropped.
struct Piece {
  uint64_t lo = 0, hi = 0;
  bool released = false;
  uint64_t order = 0;     // release order (all releases are recorded on the streamer's stream)
  void* event = nullptr;  // cudaEvent_t recorded at the release; null on the host
};

struct Arena {
  Placement placement = Placement::kHost;
  int device = -1;
  uint64_t slot = 0, extra = 0;
  std::shared_ptr<void> mem;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  uint64_t order = 0;
  std::vector<std::shared_ptr<Piece>> live;  // placed and not yet overwritten
  std::vector<void*> pool;                   // spare events
  ~Arena() {
#if HCT_WITH_CUDA
    for (void* e : pool) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
    for (auto& p : live)
      if (p->event) (void)cudaEventDestroy(static_cast<cudaEvent_t>(p->event));
#endif
  }
  std::byte* at(uint64_t off) const { return static_cast<std::byte*>(mem.get()) + off; }
  Result<void*> NewEvent() {
    if (placement != Placement::kDevice) return nullptr;
    std::lock_guard<std::mutex> l(mu);
    if (!pool.empty()) {
      void* e = pool.back();
      pool.pop_back();
      return e;
    }
#if HCT_WITH_CUDA
    cudaEvent_t e;
    HCT_CHECK(cuda, cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return static_cast<void*>(e);
#else
    return nullptr;
#endif
  }
  void Release(Piece& p, StreamHandle stream) {
    std::lock_guard<std::mutex> l(mu);  // records in release order on the one stream
#if HCT_WITH_CUDA
    if (p.event) {
      int prev = -1;
      (void)cudaGetDevice(&prev);
      (void)cudaSetDevice(device);
      (void)cudaEventRecord(static_cast<cudaEvent_t>(p.event), static_cast<cudaStream_t>(stream));
      if (prev >= 0) (void)cudaSetDevice(prev);
    }
#else
    (void)stream;
#endif
    p.released = true;
    p.order = ++order;
    cv.notify_all();
  }
  // Waits until every live piece overlapping [lo, hi) is released, then takes them out of
  // `live`: *wait gets the event of the last released (it follows the others on the stream),
  // *taken the pieces (their events go back to the pool once the wait is enqueued). False when
  // stopped.
  bool Claim(uint64_t lo, uint64_t hi, void** wait, std::vector<std::shared_ptr<Piece>>* taken) {
    std::unique_lock<std::mutex> l(mu);
    auto hit = [&](const Piece& p) { return p.lo < hi && lo < p.hi; };
    cv.wait(l, [&] {
      if (stop) return true;
      for (auto& p : live)
        if (hit(*p) && !p->released) return false;
      return true;
    });
    if (stop) return false;
    uint64_t best = 0;
    *wait = nullptr;
    for (size_t i = 0; i < live.size();) {
      if (!hit(*live[i])) {
        ++i;
        continue;
      }
      if (live[i]->order > best) best = live[i]->order, *wait = live[i]->event;
      taken->push_back(std::move(live[i]));
      live.erase(live.begin() + std::ptrdiff_t(i));
    }
    return true;
  }
  void Recycle(std::vector<std::shared_ptr<Piece>>& taken) {
    std::lock_guard<std::mutex> l(mu);
    for (auto& p : taken)
      if (p->event) pool.push_back(std::exchange(p->event, nullptr));
    taken.clear();
  }
};

class Streamer final : public LayerStreamer {
 public:
  Streamer(Runtime* rt, std::vector<std::vector<TensorSpec>> layers, StreamHandle stream,
           bool cyclic)
      : rt_(rt), layers_(std::move(layers)), stream_(stream), cyclic_(cyclic) {}
  ~Streamer() override { Stop(); }
  Status Init(int prefetch, uint64_t extra_bytes);
  Result<StreamedLayer> Next() override;
  Status Restart() override { return RestartAt(0); }
  Status RestartAt(int layer) override;
  int num_layers() const override { return int(layers_.size()); }
  uint64_t slot_bytes() const override { return pool_->slot_bytes; }
  int slots() const override { return int(pool_->mem.size()); }

 private:
  void Start();
  void Stop();
  void Run();
  bool Stopped();
  Status InitArena(uint64_t extra_bytes);
  Result<StreamedLayer> LoadLayer(int k, int slot);
  Result<StreamedLayer> LoadArena(int k);
  Status LoadRun(std::span<const TensorSpec> run, uint64_t lo, uint64_t hi,
                 std::vector<LoadedTensor>* out);

  Runtime* rt_;
  std::vector<std::vector<TensorSpec>> layers_;
  StreamHandle stream_;
  const bool cyclic_;
  std::shared_ptr<SlotPool> pool_;
  std::shared_ptr<Arena> arena_;  // arena mode only
  uint64_t seq_ = 0;              // arena loads so far (window = seq % 2); worker thread only
  int start_ = 0;                 // the layer the worker starts at
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Result<StreamedLayer>> ready_;
  int handed_out_ = 0;
};

Status Streamer::Init(int prefetch, uint64_t extra_bytes) {
  auto pool = std::make_shared<SlotPool>();
  pool->placement = rt_->placement();
  pool->device = rt_->device();
  std::vector<TensorSpec> all;
  for (const auto& l : layers_) {
    uint64_t total = 0, rtotal = 0;
    PackOffsets(l, &total);
    std::vector<TensorSpec> rev(l.rbegin(), l.rend());  // arena window 0 packs in reverse
    PackOffsets(rev, &rtotal);
    pool->slot_bytes = std::max({pool->slot_bytes, total, extra_bytes ? rtotal : uint64_t{0}});
    all.insert(all.end(), l.begin(), l.end());
  }
  if (extra_bytes) pool->slot_bytes = (pool->slot_bytes + 255) & ~uint64_t(255);
  const int nslots = std::min<int>(prefetch + 1, std::max<int>(1, int(layers_.size())));
  for (int i = 0; i < nslots && !extra_bytes; ++i) {
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
  if (extra_bytes) HCT_RETURN_IF_ERROR(InitArena(extra_bytes));
  HCT_RETURN_IF_ERROR(rt_->Prepare(all));
  Start();
  return Status::OK();
}

Status Streamer::InitArena(uint64_t extra_bytes) {
  auto a = std::make_shared<Arena>();
  a->placement = pool_->placement;
  a->device = pool_->device;
  a->slot = pool_->slot_bytes;
  a->extra = std::min(extra_bytes, a->slot) & ~uint64_t(255);
  HCT_ASSIGN_OR_RETURN(a->mem, rt_->Allocate(a->slot + a->extra));
  pool_->mem.push_back(a->mem);  // slots() == 1: the arena
  arena_ = std::move(a);
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

// One load of the tensors `run` into the arena bytes [lo, hi) (their PackOffsets layout from lo),
// after the pieces there were released; each tensor becomes a Piece released by its last handle.
Status Streamer::LoadRun(std::span<const TensorSpec> run, uint64_t lo, uint64_t hi,
                         std::vector<LoadedTensor>* out) {
  void* wait = nullptr;
  std::vector<std::shared_ptr<Piece>> taken;
  if (!arena_->Claim(lo, hi, &wait, &taken)) return Status::Busy("layer streamer stopped");
  LoadTarget t;
  t.dst = arena_->at(lo);
  t.dst_bytes = hi - lo;
  t.wait_before = wait;
  auto r = rt_->LoadInto(run, stream_, t);
  arena_->Recycle(taken);  // the copies' wait on them is enqueued
  if (!r.ok()) return r.status();
  for (LoadedTensor& x : *r) {
    auto p = std::make_shared<Piece>();
    p->lo = uint64_t(static_cast<std::byte*>(x.data()) - arena_->at(0));
    p->hi = p->lo + x.bytes();
    HCT_ASSIGN_OR_RETURN(p->event, arena_->NewEvent());
    {
      std::lock_guard<std::mutex> l(arena_->mu);
      arena_->live.push_back(p);
    }
    auto spec = std::make_shared<const TensorSpec>(x.spec());
    void* data = x.data();
    EventHandle ev = x.event();
    const Placement pl = x.placement();
    const int dev = x.device();
    auto held = std::make_shared<LoadedTensor>(std::move(x));  // the load's state and event
    std::shared_ptr<Arena> a = arena_;
    StreamHandle st = stream_;
    std::shared_ptr<void> token(nullptr, [a, p, st, held](void*) { a->Release(*p, st); });
    out->emplace_back(LoadedTensor::Key{}, std::move(spec), data, std::move(token), ev, pl, dev);
  }
  return Status::OK();
}

// Layer k into window seq % 2: window 0 packs the tensors in reverse order from 0, window 1 in
// order from `extra`, so that the bytes both windows share, [extra, slot), hold each layer's
// first-used tensors. The tensors outside the shared bytes load first (nothing of the previous
// layer is there), then the others once the previous layer's tensors there are dropped.
Result<StreamedLayer> Streamer::LoadArena(int k) {
  const auto& specs = layers_[size_t(k)];
  const bool w1 = (seq_++ % 2) == 1;
  std::vector<TensorSpec> packed(specs.begin(), specs.end());
  if (!w1) std::reverse(packed.begin(), packed.end());
  uint64_t total = 0;
  const std::vector<uint64_t> offs = PackOffsets(packed, &total);
  const uint64_t base = w1 ? arena_->extra : 0, ov_lo = arena_->extra, ov_hi = arena_->slot;
  const size_t n = packed.size();
  // Window 0: [0, split) lies below the shared bytes; window 1: [split, n) lies above them.
  size_t split = 0;
  while (split < n && (w1 ? base + offs[split] < ov_hi
                          : base + offs[split] + packed[split].length <= ov_lo))
    ++split;
  auto end_of = [&](size_t j) { return j == n ? base + total : base + offs[j]; };
  std::vector<LoadedTensor> got;
  std::span<const TensorSpec> all(packed);
  const size_t first[2] = {w1 ? split : 0, w1 ? 0 : split};
  const size_t last[2] = {w1 ? n : split, w1 ? split : n};
  std::vector<LoadedTensor> by_packed(n);
  for (int part = 0; part < 2; ++part) {
    if (first[part] == last[part]) continue;
    got.clear();
    Status st = LoadRun(all.subspan(first[part], last[part] - first[part]),
                        base + offs[first[part]], end_of(last[part]), &got);
    if (!st.ok()) return st.WithContext("layer " + std::to_string(k));
    for (size_t j = first[part]; j < last[part]; ++j) by_packed[j] = std::move(got[j - first[part]]);
  }
  StreamedLayer layer;
  layer.index = k;
  for (size_t i = 0; i < n; ++i)  // back to the caller's order
    layer.tensors.push_back(std::move(by_packed[w1 ? i : n - 1 - i]));
  return layer;
}

bool Streamer::Stopped() {
  std::lock_guard<std::mutex> l(pool_->mu);
  return pool_->stop;
}

void Streamer::Run() {
  const int n = int(layers_.size());
  for (int i = 0; cyclic_ || start_ + i < n; ++i) {
    const int k = (start_ + i) % n;
    int slot = -1;
    if (!arena_) {
      std::unique_lock<std::mutex> l(pool_->mu);
      pool_->cv.wait(l, [&] { return pool_->stop || !pool_->free.empty(); });
      if (pool_->stop) return;
      slot = pool_->free.front();
      pool_->free.pop_front();
    }
    Result<StreamedLayer> r = arena_ ? LoadArena(k) : LoadLayer(k, slot);
    if (!r.ok() && Stopped()) return;  // a wait ended by Stop(): not an error of the layer
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
  if (arena_) {
    std::lock_guard<std::mutex> l(arena_->mu);
    arena_->stop = false;
  }
  worker_ = std::thread([this] { Run(); });
}

void Streamer::Stop() {
  {
    std::lock_guard<std::mutex> l(pool_->mu);
    pool_->stop = true;
  }
  pool_->cv.notify_all();
  if (arena_) {
    {
      std::lock_guard<std::mutex> l(arena_->mu);
      arena_->stop = true;
    }
    arena_->cv.notify_all();
  }
  if (worker_.joinable()) worker_.join();
}

Status Streamer::RestartAt(int layer) {
  if (layer < 0 || layer >= std::max(1, int(layers_.size())))
    return Status::InvalidArgument("restart at layer " + std::to_string(layer) + " of " +
                                   std::to_string(layers_.size()));
  Stop();
  std::deque<Result<StreamedLayer>> dropped;
  {
    std::lock_guard<std::mutex> l(mu_);
    dropped.swap(ready_);
    handed_out_ = 0;
  }
  dropped.clear();  // their slots return to the pool (outside our lock)
  start_ = layer;
  Start();
  return Status::OK();
}

Result<StreamedLayer> Streamer::Next() {
  std::unique_lock<std::mutex> l(mu_);
  const int left = int(layers_.size()) - start_;
  if (!cyclic_ && handed_out_ >= left)
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
  Options o;
  o.prefetch = prefetch;
  return Create(runtime, std::move(layers), o, stream);
}

Result<std::unique_ptr<LayerStreamer>> LayerStreamer::Create(
    Runtime* runtime, std::vector<std::vector<TensorSpec>> layers, const Options& options,
    StreamHandle stream) {
  if (!runtime) return Status::InvalidArgument("LayerStreamer needs a runtime");
  const int prefetch = options.prefetch;
  if (prefetch < 0 || prefetch > 64)
    return Status::InvalidArgument("prefetch " + std::to_string(prefetch) + " is not in [0, 64]");
  if (options.extra_bytes && prefetch != 0)
    return Status::InvalidArgument("extra_bytes " + std::to_string(options.extra_bytes) +
                                   " needs prefetch 0 (got " + std::to_string(prefetch) + ")");
  auto s = std::make_unique<Streamer>(runtime, std::move(layers), stream, options.cyclic);
  HCT_RETURN_IF_ERROR(s->Init(prefetch, options.extra_bytes));
  return std::unique_ptr<LayerStreamer>(std::move(s));
}

}  // namespace hct
