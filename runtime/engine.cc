// The load engine: owns the parts (runtime/detail/) and orchestrates one load.
#include "runtime/detail/engine.h"

#include <algorithm>

#include "hct/cache.h"
#include "runtime/detail/one_shot.h"
#include "runtime/detail/sources.h"
#include "runtime/detail/verify.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#endif

namespace hct::detail {

Result<std::unique_ptr<Engine>> Engine::Create(const RuntimeOptions& options) {
  HCT_RETURN_IF_ERROR(options.Validate());
  Placement placement = Placement::kHost;
  int device = -1;
#if HCT_WITH_CUDA
  int n = 0;
  if (!options.force_host && cudaGetDeviceCount(&n) == cudaSuccess && n > 0) {
    if (options.device < 0 || options.device >= n)
      return Status::InvalidArgument("device " + std::to_string(options.device) +
                                     " does not exist (" + std::to_string(n) + " CUDA devices)");
    placement = Placement::kDevice;
    device = options.device;
  } else {
    (void)cudaGetLastError();  // clear the "no device" error so that it does not leak to callers
  }
#endif
  std::unique_ptr<Engine> e(new Engine(options, placement, device));
  HCT_RETURN_IF_ERROR(e->Init());
  return e;
}

Engine::Engine(const RuntimeOptions& options, Placement placement, int device)
    : opt_(options), placement_(placement), device_(device), files_(options.o_direct) {}

// The one-time setup made at creation: the raw ring, the copy streams and the io threads. The
// compressed path's resources follow on Prepare() or the first compressed load.
Status Engine::Init() {
  stats_.placement = placement_;
  stats_.device = device_;
  const double t0 = NowSeconds();
  const int nslots = int(std::max<uint64_t>(2, opt_.staging_bytes / opt_.chunk_bytes));
  HCT_ASSIGN_OR_RETURN(ring_, StagingRing::Create(placement_, device_, opt_.chunk_bytes, nslots));
  if (ring_->pinned()) stats_.pinned_staging_bytes = ring_->bytes();
  const bool gpu = placement_ == Placement::kDevice;
  if (gpu) HCT_RETURN_IF_ERROR(streams_.Create(device_, opt_.streams));
  const int dev = device_;
  io_ = std::make_unique<WorkerPool>(opt_.io_threads, [dev, gpu](int) {
#if HCT_WITH_CUDA
    if (gpu) (void)cudaSetDevice(dev);
#endif
    (void)dev, (void)gpu;
  });
  CountSetup(stats_, t0, ring_->bytes());
  env_ = std::make_unique<LoadEnv>(LoadEnv{opt_, placement_, device_, *io_, streams_, stats_});
  resident_ = std::make_unique<ResidentFiles>(*env_, files_);
  compressed_ = std::make_unique<CompressedLoader>(*env_, *ring_);
  return Status::OK();
}

Engine::~Engine() {
  streams_.Synchronize();  // nothing may still read the rings or write the scratch
  compressed_.reset();
  resident_.reset();
}

Result<std::shared_ptr<void>> Engine::Allocate(uint64_t bytes) {
  HCT_ASSIGN_OR_RETURN(void* p, AllocateMemory(placement_, device_, bytes));
  {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.buffer_allocations;
  }
  const Placement pl = placement_;
  const int dev = device_;
  return std::shared_ptr<void>(p, [pl, dev](void* q) { FreeMemory(pl, dev, q); });
}

Status Engine::Prepare() {
  std::lock_guard<std::mutex> l(mu_);
  return compressed_->Prepare();
}

Status Engine::Prepare(std::span<const TensorSpec> specs) {
  std::lock_guard<std::mutex> l(mu_);
  resident_->BeginLoad();
  bool compressed = false;
  uint64_t read_bytes = 0;
  for (const TensorSpec& s : specs) {
    if (!s.source) continue;
    if (s.source->hct) {
      compressed = true;
      read_bytes = std::max(read_bytes, compressed_->ReadBytesFor(*s.source->hct));
      if (!s.source->range) (void)resident_->Use(s.source->hct->file->path());
    }
    // Resident files are mapped and registered now (a refusal shows in the stats as on a load).
    if (s.source->range && !s.source->range->row_bytes) (void)resident_->Use(s.source->range->path);
  }
  if (compressed) HCT_RETURN_IF_ERROR(compressed_->Prepare(read_bytes));
  return Status::OK();
}

Status Engine::MakeResident(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  return resident_->Add(path);
}

bool Engine::IsResident(const std::string& path) const {
  std::lock_guard<std::mutex> l(mu_);
  return resident_->Has(path);
}

Status Engine::ReleaseResident() {
  std::lock_guard<std::mutex> l(mu_);
  return resident_->Release();
}

RuntimeStats Engine::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

// The memory the tensors land in: the caller's, or a new allocation (freed with the buffer).
// target.on_release is attached by LoadMany once the load succeeded: after a failed load the
// caller still owns its memory (e.g. a streamer slot it returns itself).
Result<std::shared_ptr<Buffer>> Engine::Target(const LoadTarget& target, uint64_t total) {
  auto buf = std::make_shared<Buffer>();
  buf->placement = placement_;
  buf->device = device_;
  if (target.dst) {
    if (target.dst_bytes < total)
      return Status::InvalidArgument("destination holds " + std::to_string(target.dst_bytes) +
                                     " bytes, the tensors need " + std::to_string(total));
    buf->ptr = target.dst;
    buf->bytes = target.dst_bytes;
    return buf;
  }
  HCT_ASSIGN_OR_RETURN(buf->ptr, AllocateMemory(placement_, device_, total));
  ++stats_.buffer_allocations;
  buf->bytes = total;
  buf->release = [](Buffer& x) { FreeMemory(x.placement, x.device, x.ptr); };
  return buf;
}

// Byte-range reads: resident when the file is (or can be made) resident, else one-shot.
Status Engine::Read(const ReadPlan& plan, const Destination& dst, std::vector<size_t>* res,
                    std::vector<size_t>* one) {
  for (size_t i = 0; i < plan.reads.size(); ++i)
    if (plan.reads[i].kind == ReadKind::kRange)  // strided ranges (slices) always one-shot
      (!plan.reads[i].range->row_bytes && resident_->Use(plan.reads[i].range->path) ? res : one)
          ->push_back(i);
  Status st;
  if (!res->empty()) st = resident_->Load(plan, *res, dst);
  if (st.ok() && !one->empty()) st = LoadOneShot(*env_, *ring_, plan, *one, dst);
  return st;
}

// Every read of the plan; `served` gets the byte-range reads that were served (not fallen back).
Status Engine::ReadAll(ReadPlan& plan, const Destination& dst, std::vector<size_t>* served) {
  std::vector<size_t> res, one, comp;
  for (size_t i = 0; i < plan.reads.size(); ++i)
    if (plan.reads[i].kind == ReadKind::kCompressed) comp.push_back(i);
  Status st = Read(plan, dst, &res, &one);
  std::vector<size_t> files = res;
  files.insert(files.end(), one.begin(), one.end());
  if (st.code() == Code::kCorruption && SourcePlanner::CanFallBack(plan, files)) {
    // A corrupt cache entry, and every tensor read from files has a compressed source: decode
    // them all from it instead (after the copies already enqueued, which write the same bytes).
    stats_.cache_fallback_reason = st.ToString();
    HCT_ASSIGN_OR_RETURN(plan, planner_.FallBack(plan, files));
    comp.insert(comp.end(), files.begin(), files.end());
    files.clear();
    st = streams_.Barrier();
  }
  if (st.ok() && !comp.empty()) {
    // HCT files share the resident budget with raw files: a resident one is DMA'd from its
    // registered mapping; one that is refused (budget, registration) is read as before.
    bool any = false;
    for (size_t i : comp) any |= resident_->Use(plan.reads[i].file->path);
    st = compressed_->Load(plan, comp, dst, any ? resident_.get() : nullptr);
  }
  *served = std::move(files);
  return st;
}

// Reads of cache tensors, counted in memory and flushed to the index in the background.
void Engine::Record(const ReadPlan& plan, std::span<const size_t> served) {
  stats_.cache_fallbacks += plan.fallbacks;
  for (size_t i : served) {
    const PlannedRead& r = plan.reads[i];
    if (!r.row) continue;
    r.row->cache->RecordAccess(r.row->tensor_id);
    ++stats_.loads_cache;
  }
}

Result<std::vector<LoadedTensor>> Engine::LoadMany(std::span<const TensorSpec> specs,
                                                   StreamHandle stream,
                                                   const LoadTarget& target) {
  std::lock_guard<std::mutex> l(mu_);
  HCT_ASSIGN_OR_RETURN(ReadPlan plan, planner_.Plan(specs));
  resident_->BeginLoad();
  uint64_t total = 0;
  const std::vector<uint64_t> offs = PackOffsets(specs, &total);
  HCT_ASSIGN_OR_RETURN(std::shared_ptr<Buffer> buf, Target(target, total));
  const Destination dst{static_cast<std::byte*>(buf->ptr), &offs};
  auto state = std::make_shared<LoadState>();
  const bool gpu = placement_ == Placement::kDevice;
#if HCT_WITH_CUDA
  std::unique_ptr<DeviceGuard> guard;
  if (gpu) {
    guard = std::make_unique<DeviceGuard>(device_);
    // Copies follow what the caller enqueued before (e.g. its last use of dst) and wait_before.
    HCT_RETURN_IF_ERROR(streams_.Follow(stream, target.wait_before));
  }
#endif
  std::vector<size_t> served;
  Status st = ReadAll(plan, dst, &served);
#if HCT_WITH_CUDA
  if (gpu) {
    // Join: the caller's stream follows every copy (also after an error, so that the caller's
    // memory is not written behind its back), then the handle's event is recorded on it.
    HCT_RETURN_IF_ERROR(streams_.Join(stream));
    HCT_RETURN_IF_ERROR(st);
    cudaEvent_t done;
    HCT_CHECK(cuda, cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    state->event = done;
    HCT_CHECK(cuda, cudaEventRecord(done, static_cast<cudaStream_t>(stream)));
  }
#endif
  HCT_RETURN_IF_ERROR(st);
  Record(plan, served);
  if (target.on_release) {
    buf->release = [free = std::move(buf->release), done = target.on_release](Buffer& x) {
      if (free) free(x);
      done();
    };
  }
  state->keep = std::move(plan.leases);
  state->buffer = buf;
  std::vector<LoadedTensor> out;
  out.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i)
    out.emplace_back(LoadedTensor::Key{}, std::make_shared<const TensorSpec>(specs[i]),
                     dst.at(i), state, state->event, placement_, gpu ? device_ : -1);
  return out;
}

}  // namespace hct::detail
