// The load engine: resident (registered mappings, one DMA per tensor) and one-shot (threads pread
// into a pinned ring, chunks copied on several streams while the next ones are read).
#include "runtime/detail/engine.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "hct/cache.h"
#include "hct/detail/check_host.h"
#include "runtime/detail/sources.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#endif

namespace hct::detail {
namespace {

constexpr uint64_t kAlign = 4096;  // O_DIRECT offset/length/buffer alignment we use
uint64_t AlignDown(uint64_t x) { return x & ~(kAlign - 1); }
uint64_t AlignUp(uint64_t x) { return (x + kAlign - 1) & ~(kAlign - 1); }

std::string TensorCtx(const TensorSpec& s) { return "tensor '" + s.name + "'"; }

Status ReadFully(int fd, std::byte* dst, uint64_t want, uint64_t min_bytes, uint64_t off,
                 const std::string& path) {
  uint64_t got = 0;
  while (got < min_bytes) {
    ssize_t r = ::pread(fd, dst + got, want - got, off + got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read", path, errno);
    }
    if (r == 0) return Status::OutOfRange(path + ": file shrank while reading");
    got += uint64_t(r);
  }
  return Status::OK();
}


}  // namespace

LoadState::~LoadState() {
#if HCT_WITH_CUDA
  if (event) (void)cudaEventDestroy(static_cast<cudaEvent_t>(event));
#endif
}

// ------------------------------------------------------------------------------- WorkerPool
WorkerPool::WorkerPool(int n, std::function<void(int)> on_start) : on_start_(std::move(on_start)) {
  for (int i = 0; i < n; ++i) threads_.emplace_back([this, i] { Loop(i); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Run(const std::function<void(int)>& fn) {
  std::unique_lock<std::mutex> l(mu_);
  fn_ = &fn;
  running_ = int(threads_.size());
  ++generation_;
  cv_.notify_all();
  done_cv_.wait(l, [&] { return running_ == 0; });
  fn_ = nullptr;
}

void WorkerPool::Loop(int id) {
  if (on_start_) on_start_(id);
  uint64_t seen = 0;
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    const auto* fn = fn_;
    l.unlock();
    (*fn)(id);
    l.lock();
    if (--running_ == 0) done_cv_.notify_all();
  }
}

// ----------------------------------------------------------------------------------- Engine
Result<std::unique_ptr<Engine>> Engine::Create(const RuntimeOptions& options) {
  HCT_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<Engine> e(new Engine());
  e->opt_ = options;
  HCT_RETURN_IF_ERROR(e->Init());
  return e;
}

Status Engine::Init() {
  placement_ = Placement::kHost;
#if HCT_WITH_CUDA
  int n = 0;
  if (!opt_.force_host && cudaGetDeviceCount(&n) == cudaSuccess && n > 0) {
    if (opt_.device < 0 || opt_.device >= n)
      return Status::InvalidArgument("device " + std::to_string(opt_.device) + " does not exist (" +
                                     std::to_string(n) + " CUDA devices)");
    placement_ = Placement::kDevice;
    device_ = opt_.device;
  } else {
    (void)cudaGetLastError();  // clear the "no device" error so that it does not leak to callers
  }
#endif
  stats_.placement = placement_;
  stats_.device = device_;
  slot_bytes_ = opt_.chunk_bytes;
  nslots_ = int(std::max<uint64_t>(2, opt_.staging_bytes / slot_bytes_));
  const uint64_t ring_bytes = slot_bytes_ * uint64_t(nslots_);
  if (placement_ == Placement::kDevice) {
#if HCT_WITH_CUDA
    DeviceGuard g(device_);
    void* p = nullptr;
    HCT_CHECK(cuda, cudaHostAlloc(&p, ring_bytes, cudaHostAllocDefault));
    ring_ = static_cast<std::byte*>(p);
    stats_.pinned_staging_bytes = ring_bytes;
    for (int i = 0; i < nslots_; ++i) {
      cudaEvent_t ev;
      HCT_CHECK(cuda, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming | cudaEventBlockingSync));
      slot_events_.push_back(ev);
    }
    for (int i = 0; i < opt_.streams; ++i) {
      cudaStream_t s;
      HCT_CHECK(cuda, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      streams_.push_back(s);
      cudaEvent_t ev;
      HCT_CHECK(cuda, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
      join_events_.push_back(ev);
    }
#endif
  } else {
    ring_ = static_cast<std::byte*>(std::aligned_alloc(kAlign, ring_bytes));
    if (!ring_) return Status::ResourceExhausted("staging ring of " + std::to_string(ring_bytes));
  }
  const int dev = device_;
  const bool gpu = placement_ == Placement::kDevice;
  pool_ = std::make_unique<WorkerPool>(opt_.io_threads, [dev, gpu](int) {
#if HCT_WITH_CUDA
    if (gpu) (void)cudaSetDevice(dev);
#endif
  });
  return Status::OK();
}

Engine::~Engine() {
  pool_.reset();
  decode_pool_.reset();
  for (auto& [p, n] : read_bufs_) std::free(p);
  (void)ReleaseResident();
  for (auto& [p, f] : files_) {
    if (f->fd >= 0) ::close(f->fd);
    if (f->direct_fd >= 0) ::close(f->direct_fd);
  }
#if HCT_WITH_CUDA
  if (placement_ == Placement::kDevice) {
    DeviceGuard g(device_);
    for (void* s : streams_) (void)cudaStreamSynchronize(static_cast<cudaStream_t>(s));
    for (void* s : streams_) (void)cudaStreamDestroy(static_cast<cudaStream_t>(s));
    for (void* e : slot_events_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
    for (void* e : join_events_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
    if (ring_) (void)cudaFreeHost(ring_);
    if (hct_owns_ring_) {
      for (void* e : hct_slot_events_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
      (void)cudaFreeHost(hct_ring_);
    }
    if (dscratch_) (void)cudaFree(dscratch_);
    return;
  }
#endif
  std::free(ring_);
}

Result<void*> Engine::AllocateRaw(uint64_t bytes) {
  const uint64_t n = std::max<uint64_t>(bytes, 1);
  if (placement_ == Placement::kDevice) {
#if HCT_WITH_CUDA
    DeviceGuard g(device_);
    void* p = nullptr;
    HCT_CHECK(cuda, cudaMalloc(&p, n));
    return p;
#endif
  }
  void* p = std::aligned_alloc(kAlign, AlignUp(n));
  if (!p) return Status::ResourceExhausted("host allocation of " + std::to_string(n) + " bytes");
  return p;
}

void Engine::FreeRaw(void* p) { FreeMemory(placement_, device_, p); }

void FreeMemory(Placement placement, int device, void* p) {
  if (!p) return;
  if (placement == Placement::kDevice) {
#if HCT_WITH_CUDA
    DeviceGuard g(device);
    (void)cudaFree(p);  // implicitly ordered after pending work on the buffer
    return;
#endif
  }
  std::free(p);
}

Result<std::shared_ptr<Buffer>> Engine::Allocate(uint64_t bytes) {
  HCT_ASSIGN_OR_RETURN(void* p, AllocateRaw(bytes));
  auto b = std::make_shared<Buffer>();
  b->ptr = p;
  b->bytes = bytes;
  b->placement = placement_;
  b->device = device_;
  b->release = [](Buffer& x) { FreeMemory(x.placement, x.device, x.ptr); };
  return b;
}

Result<OpenFile*> Engine::Open(const std::string& path) {
  auto it = files_.find(path);
  if (it != files_.end()) return it->second.get();
  auto f = std::make_unique<OpenFile>();
  f->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    int e = errno;
    Status s = Status::FromErrno("open", path, e);
    return e == ENOENT ? Status::NotFound(s.message()) : s;
  }
  struct stat st {};
  if (::fstat(f->fd, &st) != 0) {
    int e = errno;
    ::close(f->fd);
    return Status::FromErrno("stat", path, e);
  }
  f->size = uint64_t(st.st_size);
  if (opt_.o_direct != ODirectMode::kOff) {
    f->direct_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);  // EINVAL on tmpfs
  }
  OpenFile* raw = f.get();
  files_[path] = std::move(f);
  return raw;
}

Status Engine::CheckSpecs(std::span<const TensorSpec> specs) {
  for (const TensorSpec& s : specs) {
    uint64_t n = 1;
    for (int64_t d : s.shape) {
      if (d < 0) return Status::InvalidArgument("negative dimension").WithContext(TensorCtx(s));
      if (d != 0 && n > UINT64_MAX / uint64_t(d))
        return Status::OutOfRange("shape overflows 64 bits").WithContext(TensorCtx(s));
      n *= uint64_t(d);
    }
    auto bytes = DTypeBytes(s.dtype, n);
    if (!bytes || *bytes != s.length)
      return Status::InvalidArgument("length " + std::to_string(s.length) +
                                     " does not match shape x " + std::string(DTypeName(s.dtype)))
          .WithContext(TensorCtx(s));
    auto f = Open(s.path);
    if (!f.ok()) return f.status().WithContext(TensorCtx(s));
    if (s.compressed()) continue;  // chunk ranges were checked when the HCT file was opened
    if (s.offset > (*f)->size || s.length > (*f)->size - s.offset)
      return Status::OutOfRange(s.path + ": bytes [" + std::to_string(s.offset) + ", " +
                                std::to_string(s.offset + s.length) + ") pass the end of the file (" +
                                std::to_string((*f)->size) + " bytes)")
          .WithContext(TensorCtx(s));
  }
  return Status::OK();
}

Status Engine::MakeResident(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  return MakeResidentLocked(path);
}

Status Engine::MakeResidentLocked(const std::string& path) {
  if (resident_.count(path)) return Status::OK();
  HCT_ASSIGN_OR_RETURN(OpenFile * f, Open(path));
  const uint64_t map_bytes = AlignUp(std::max<uint64_t>(f->size, 1));
  if (resident_used_ + map_bytes > opt_.resident_budget)
    return Status::ResourceExhausted(path + ": " + std::to_string(map_bytes) +
                                     " bytes do not fit the resident budget (" +
                                     std::to_string(opt_.resident_budget - resident_used_) +
                                     " of " + std::to_string(opt_.resident_budget) + " left)");
  ResidentFile r;
  r.size = f->size;
  r.map_bytes = map_bytes;
  // Host placement: MAP_POPULATE so that loads are memcpys without page faults.
  int flags = MAP_SHARED | (placement_ == Placement::kHost ? MAP_POPULATE : 0);
  r.map = ::mmap(nullptr, map_bytes, PROT_READ, flags, f->fd, 0);
  if (r.map == MAP_FAILED) return Status::FromErrno("mmap", path, errno);
#if HCT_WITH_CUDA
  if (placement_ == Placement::kDevice) {
    DeviceGuard g(device_);
    Status s = HCT_CALL_STATUS(cuda, cudaHostRegister(r.map, map_bytes, cudaHostRegisterReadOnly));
    if (!s.ok()) {
      (void)cudaGetLastError();
      ::munmap(r.map, map_bytes);
      struct rlimit rl {};
      std::string lim = "unknown";
      if (::getrlimit(RLIMIT_MEMLOCK, &rl) == 0)
        lim = rl.rlim_cur == RLIM_INFINITY ? "unlimited" : std::to_string(rl.rlim_cur);
      return Status(s.code(), path + ": registering the mapping failed (RLIMIT_MEMLOCK " + lim +
                                  "): " + s.message());
    }
    r.registered = true;
    stats_.registered_bytes += map_bytes;
  }
#endif
  resident_used_ += map_bytes;
  resident_[path] = r;
  stats_.resident_files = resident_.size();
  return Status::OK();
}

bool Engine::IsResident(const std::string& path) const {
  std::lock_guard<std::mutex> l(mu_);
  return resident_.count(path) != 0;
}

Status Engine::ReleaseResident() {
  std::lock_guard<std::mutex> l(mu_);
  Status first;
  for (auto& [path, r] : resident_) {
#if HCT_WITH_CUDA
    if (r.registered) {
      DeviceGuard g(device_);
      Status s = HCT_CALL_STATUS(cuda, cudaHostUnregister(r.map));
      if (!s.ok() && first.ok()) first = s.WithContext(path);
    }
#endif
    ::munmap(r.map, r.map_bytes);
  }
  resident_.clear();
  verified_.clear();
  resident_used_ = 0;
  stats_.registered_bytes = 0;
  stats_.resident_files = 0;
  return first;
}

RuntimeStats Engine::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

// Whether to read these ranges of `f` with O_DIRECT: forced on, or (auto) when less than half of
// their pages are in the page cache (mincore on a mapping that is never touched).
bool Engine::WantDirect(const OpenFile& f, std::span<const TensorSpec> specs,
                        std::span<const size_t> which) {
  if (f.direct_fd < 0 || opt_.o_direct == ODirectMode::kOff) return false;
  if (opt_.o_direct == ODirectMode::kOn) return true;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (size_t i : which) {
    const TensorSpec& s = specs[i];
    if (s.length == 0 || files_.at(s.path).get() != &f) continue;
    ranges.emplace_back(s.offset, s.length);
  }
  return MostlyCold(f, ranges);
}

bool Engine::MostlyCold(const OpenFile& f, std::span<const std::pair<uint64_t, uint64_t>> ranges) {
  const long page = ::sysconf(_SC_PAGESIZE);
  uint64_t cached = 0, total = 0;
  std::vector<unsigned char> vec;
  for (auto [off, n] : ranges) {
    if (n == 0) continue;
    const uint64_t a0 = off & ~uint64_t(page - 1);
    const uint64_t len = off + n - a0;
    void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, f.fd, off_t(a0));
    if (m == MAP_FAILED) return false;
    vec.assign((len + page - 1) / page, 0);
    if (::mincore(m, len, vec.data()) == 0) {
      for (unsigned char c : vec) cached += (c & 1);
      total += vec.size();
    }
    ::munmap(m, len);
  }
  return total > 0 && cached * 2 < total;
}

Status Engine::StreamBarrier() {
#if HCT_WITH_CUDA
  if (placement_ != Placement::kDevice) return Status::OK();
  for (size_t i = 0; i < streams_.size(); ++i)
    HCT_CHECK(cuda, cudaEventRecord(static_cast<cudaEvent_t>(join_events_[i]),
                                    static_cast<cudaStream_t>(streams_[i])));
  for (void* s : streams_)
    for (void* e : join_events_)
      HCT_CHECK(cuda, cudaStreamWaitEvent(static_cast<cudaStream_t>(s),
                                          static_cast<cudaEvent_t>(e), 0));
#endif
  return Status::OK();
}

// Piece length (whole blocks) for a tensor verified by block checksums; 0: not so verified.
static uint64_t BlockPieceBytes(const TensorSpec& s, bool verify, uint64_t slot_bytes) {
  if (!verify || s.block_xxh3.empty() || s.block_bytes == 0 || s.block_bytes % kAlign != 0)
    return 0;
  if (s.block_xxh3.size() != (s.length + s.block_bytes - 1) / s.block_bytes) return 0;
  // The O_DIRECT cover of a piece starting at an unaligned offset takes one more page.
  const uint64_t room = slot_bytes - (s.offset % kAlign ? kAlign : 0);
  return room / s.block_bytes * s.block_bytes;  // 0 when a block does not fit a slot
}

static std::string BlockMismatch(const TensorSpec& s, uint64_t b, uint64_t from, uint64_t to,
                                 uint64_t h) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "checksum mismatch in block %llu (bytes %llu..%llu of the tensor): XXH3 %016llx, "
                "expected %016llx",
                (unsigned long long)b, (unsigned long long)from, (unsigned long long)to,
                (unsigned long long)h, (unsigned long long)s.block_xxh3[b]);
  return s.path + ": " + buf;
}

// Reads bytes [file_off, file_off + n) of `s` (buffered fd; file_off - s.offset on a block
// boundary) into dst, hashing each kHashStep step right after its read, while it is in cache.
// `after(done)` runs after each step with the bytes of the piece read (and hashed) so far.
static Status ReadAndCheckBlocks(int fd, std::byte* dst, uint64_t file_off, uint64_t n,
                                 const TensorSpec& s, uint64_t copy_step,
                                 const std::function<Status(uint64_t)>& after) {
  const uint64_t kHashStep = copy_step ? copy_step : 512 << 10;
  thread_local std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                              &XXH3_freeState);
  if (!state) return Status::ResourceExhausted("XXH3_createState");
  const uint64_t t0 = file_off - s.offset;
  for (uint64_t o = 0; o < n; o += s.block_bytes) {
    const uint64_t len = std::min(s.block_bytes, n - o);
    XXH3_64bits_reset(state.get());
    for (uint64_t k = 0; k < len; k += kHashStep) {
      const uint64_t step = std::min(kHashStep, len - k);
      HCT_RETURN_IF_ERROR(ReadFully(fd, dst + o + k, step, step, file_off + o + k, s.path)
                              .WithContext(TensorCtx(s)));
      XXH3_64bits_update(state.get(), dst + o + k, step);
      if (copy_step) HCT_RETURN_IF_ERROR(after(o + k + step).WithContext(TensorCtx(s)));
    }
    const uint64_t h = XXH3_64bits_digest(state.get());
    const uint64_t b = (t0 + o) / s.block_bytes;
    if (h != s.block_xxh3[b])
      return Status::Corruption(BlockMismatch(s, b, t0 + o, t0 + o + len, h))
          .WithContext(TensorCtx(s));
  }
  return Status::OK();
}

// Verifies bytes [tensor_off, tensor_off + n) of `s` (tensor_off on a block boundary).
static Status CheckBlocks(const TensorSpec& s, uint64_t tensor_off, const std::byte* data,
                          uint64_t n) {
  for (uint64_t o = 0; o < n; o += s.block_bytes) {
    const uint64_t len = std::min(s.block_bytes, n - o);
    const uint64_t b = (tensor_off + o) / s.block_bytes;
    const uint64_t h = XXH3_64bits(data + o, len);
    if (h != s.block_xxh3[b])
      return Status::Corruption(BlockMismatch(s, b, tensor_off + o, tensor_off + o + len, h))
          .WithContext(TensorCtx(s));
  }
  return Status::OK();
}

Status Engine::LoadResident(std::span<const TensorSpec> specs, std::span<const size_t> which,
                            std::byte* base, const std::vector<uint64_t>& offs) {
  // Verify each tensor the first time it is read from its mapping: in parallel over tensors, and
  // over blocks of a tensor when it has block checksums.
  std::vector<size_t> todo;
  if (opt_.verify) {
    for (size_t i : which)
      if ((specs[i].xxh3 || !specs[i].block_xxh3.empty()) &&
          !verified_.count({specs[i].path, specs[i].offset, specs[i].length}))
        todo.push_back(i);
  }
  struct Unit {
    size_t k;           // index into todo
    uint64_t off, len;  // tensor-relative
    bool block;
  };
  std::vector<Unit> units;
  for (size_t k = 0; k < todo.size(); ++k) {
    const TensorSpec& s = specs[todo[k]];
    if (BlockPieceBytes(s, true, UINT64_MAX / 2)) {
      for (uint64_t o = 0; o < s.length; o += s.block_bytes)
        units.push_back({k, o, std::min(s.block_bytes, s.length - o), true});
    } else if (s.xxh3) {
      units.push_back({k, 0, s.length, false});
    }
  }
  const bool host = placement_ == Placement::kHost;
  std::vector<Status> errs(units.size());
  if (!units.empty() || host) {
    std::atomic<size_t> next{0};
    std::vector<size_t> copy_idx(which.begin(), which.end());
    std::atomic<size_t> next_copy{0};
    pool_->Run([&](int) {
      for (size_t u; (u = next.fetch_add(1)) < units.size();) {
        const Unit& un = units[u];
        const TensorSpec& s = specs[todo[un.k]];
        const auto* p = static_cast<const std::byte*>(resident_.at(s.path).map) + s.offset;
        if (un.block) {
          errs[u] = CheckBlocks(s, un.off, p + un.off, un.len);
          continue;
        }
        uint64_t h = XXH3_64bits(p, s.length);
        if (h != *s.xxh3) {
          char buf[96];
          std::snprintf(buf, sizeof buf, "checksum mismatch: XXH3 %016llx, expected %016llx",
                        (unsigned long long)h, (unsigned long long)*s.xxh3);
          errs[u] = Status::Corruption(s.path + ": " + buf).WithContext(TensorCtx(s));
        }
      }
      if (!host) return;
      for (size_t k; (k = next_copy.fetch_add(1)) < copy_idx.size();) {
        const TensorSpec& s = specs[copy_idx[k]];
        std::memcpy(base + offs[copy_idx[k]],
                    static_cast<const std::byte*>(resident_.at(s.path).map) + s.offset, s.length);
      }
    });
  }
  for (const Status& e : errs) HCT_RETURN_IF_ERROR(e);
  for (size_t k = 0; k < todo.size(); ++k) {
    const TensorSpec& s = specs[todo[k]];
    verified_.insert({s.path, s.offset, s.length});
    stats_.bytes_verified += s.length;
  }
#if HCT_WITH_CUDA
  if (!host) {
    size_t k = 0;
    for (size_t i : which) {
      const TensorSpec& s = specs[i];
      if (s.length == 0) continue;
      const auto* src = static_cast<const std::byte*>(resident_.at(s.path).map) + s.offset;
      auto st = static_cast<cudaStream_t>(streams_[k++ % streams_.size()]);
      HCT_CHECK(cuda, cudaMemcpyAsync(base + offs[i], src, s.length, cudaMemcpyHostToDevice, st));
    }
  }
#endif
  for (size_t i : which) {
    ++stats_.loads_resident;
    stats_.bytes_resident += specs[i].length;
  }
  return Status::OK();
}

// One read + one copy: bytes [file_off, file_off + n) of tensor `t`, landing at dst.
struct Engine::Piece {
  size_t t;
  const OpenFile* file;
  bool direct;
  uint64_t file_off, n;
  std::byte* dst;
  bool first, last;  // of its tensor
};

Status Engine::LoadOneShot(std::span<const TensorSpec> specs, std::span<const size_t> which,
                           std::byte* base, const std::vector<uint64_t>& offs) {
  // Pieces: tensors in the given order, split at multiples of chunk_bytes in file-offset space so
  // that the 4096-aligned cover of a piece always fits one ring slot. Tensors verified by block
  // checksums are split at whole blocks from the tensor start instead (each piece verified alone).
  std::map<const OpenFile*, bool> direct;
  std::vector<Piece> pieces;
  std::vector<uint64_t> block_piece(specs.size(), 0);
  bool baton = false;  // some tensor is verified by one sequential XXH3 (in piece order)
  for (size_t i : which) {
    const TensorSpec& s = specs[i];
    const OpenFile* f = files_.at(s.path).get();
    if (!direct.count(f)) direct[f] = WantDirect(*f, specs, which);
    if (s.length == 0) continue;
    block_piece[i] = BlockPieceBytes(s, opt_.verify, slot_bytes_);
    if (!block_piece[i] && opt_.verify && s.xxh3) baton = true;
    for (uint64_t o = s.offset; o < s.offset + s.length;) {
      uint64_t end = block_piece[i]
                         ? std::min(s.offset + s.length, o + block_piece[i])
                         : std::min(s.offset + s.length, (o / slot_bytes_ + 1) * slot_bytes_);
      pieces.push_back({i, f, direct[f], o, end - o, base + offs[i] + (o - s.offset), o == s.offset,
                        end == s.offset + s.length});
      o = end;
    }
  }
  if (pieces.empty()) return Status::OK();

  const bool gpu = placement_ == Placement::kDevice;
  const int64_t nslots = nslots_;
  std::mutex mu;
  std::condition_variable cv;
  // Per slot, the last piece whose copy out of the slot was enqueued (host: done).
  std::vector<int64_t> slot_done;
  for (int64_t s = 0; s < nslots; ++s) slot_done.push_back(s - nslots);
  int64_t hashed = 0;  // pieces [0, hashed) are hashed (the hash goes in piece order)
  bool abort = false;
  Status first_err;
  std::atomic<int64_t> next{0};
  XXH3_state_t* hs = XXH3_createState();
  uint64_t direct_bytes = 0, buffered_bytes = 0;
  std::atomic<uint64_t> verified_bytes{0};
  const int64_t np = int64_t(pieces.size());

  auto fail = [&](Status s) {
    std::lock_guard<std::mutex> l(mu);
    if (first_err.ok()) first_err = std::move(s);
    abort = true;
    cv.notify_all();
  };

  pool_->Run([&](int) {
    for (int64_t j; (j = next.fetch_add(1)) < np;) {
      const Piece& p = pieces[size_t(j)];
      const TensorSpec& s = specs[p.t];
      const size_t slot = size_t(j % nslots);
      std::byte* sbuf = ring_ + slot * slot_bytes_;
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return abort || slot_done[slot] == j - nslots; });
        if (abort) return;
      }
      // The slot's previous copy must have finished before we overwrite it.
#if HCT_WITH_CUDA
      if (gpu) {
        Status st = HCT_CALL_STATUS(
            cuda, cudaEventSynchronize(static_cast<cudaEvent_t>(slot_events_[slot])));
        if (!st.ok()) return fail(st.WithContext(TensorCtx(s)));
      }
#endif
      // Copy steps (GPU, buffered): the copy of bytes [enq, done) of the piece is enqueued as soon
      // as they are read; the slot's event is recorded after the last one.
      const uint64_t cstep = gpu && !p.direct ? opt_.copy_step_bytes : 0;
      uint64_t enq = 0;
      auto copy_upto = [&](uint64_t done) -> Status {
#if HCT_WITH_CUDA
        if (done > enq) {
          auto cs = static_cast<cudaStream_t>(streams_[size_t(j) % streams_.size()]);
          HCT_CHECK(cuda, cudaMemcpyAsync(p.dst + enq, sbuf + enq, done - enq,
                                          cudaMemcpyHostToDevice, cs));
          enq = done;
        }
#else
        (void)done;
#endif
        return Status::OK();
      };
      const std::byte* data;
      if (p.direct) {
        const uint64_t a0 = AlignDown(p.file_off);
        const uint64_t want = AlignUp(p.file_off + p.n) - a0;
        Status st = ReadFully(p.file->direct_fd, sbuf, want, p.file_off + p.n - a0, a0, s.path);
        if (!st.ok() && st.code() == Code::kIOError)  // the file system refused O_DIRECT here
          st = ReadFully(p.file->fd, sbuf + (p.file_off - a0), p.n, p.n, p.file_off, s.path);
        if (!st.ok()) return fail(st.WithContext(TensorCtx(s)));
        data = sbuf + (p.file_off - a0);
      } else if (block_piece[p.t]) {
        // Block checksums: read and hash in small steps, each hashed while still in this core's
        // cache, so verification costs no second pass over memory.
        std::byte* to = gpu ? sbuf : p.dst;  // host placement: read straight into place
        Status st = ReadAndCheckBlocks(p.file->fd, to, p.file_off, p.n, s, cstep, copy_upto);
        if (!st.ok()) return fail(st);
        verified_bytes += p.n;
        data = to;
      } else {
        std::byte* to = gpu ? sbuf : p.dst;  // host placement: read straight into place
        const uint64_t step = cstep ? cstep : p.n;
        for (uint64_t k = 0; k < p.n; k += step) {
          const uint64_t len = std::min(step, p.n - k);
          Status st = ReadFully(p.file->fd, to + k, len, len, p.file_off + k, s.path);
          if (st.ok() && cstep) st = copy_upto(k + len);
          if (!st.ok()) return fail(st.WithContext(TensorCtx(s)));
        }
        data = to;
      }
      if (block_piece[p.t] && p.direct) {
        // Block checksums: this thread verifies what it read, before anything is copied out.
        Status st = CheckBlocks(s, p.file_off - s.offset, data, p.n);
        if (!st.ok()) return fail(st);
        verified_bytes += p.n;
      }
      if (baton) {
        // Every piece passes the baton in order, so `hashed` counts a prefix of the pieces.
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return abort || hashed == j; });
        if (abort) return;
        l.unlock();  // only the thread holding piece `hashed` touches the state
        const bool h_on = opt_.verify && s.xxh3.has_value() && !block_piece[p.t];
        if (h_on && p.first) XXH3_64bits_reset(hs);
        if (h_on) XXH3_64bits_update(hs, data, p.n);
        Status bad;
        if (h_on && p.last) {
          uint64_t h = XXH3_64bits_digest(hs);
          if (h != *s.xxh3) {
            char buf[96];
            std::snprintf(buf, sizeof buf, "checksum mismatch: XXH3 %016llx, expected %016llx",
                          (unsigned long long)h, (unsigned long long)*s.xxh3);
            bad = Status::Corruption(s.path + ": " + buf).WithContext(TensorCtx(s));
          }
        }
        l.lock();
        if (h_on) verified_bytes += p.n;
        ++hashed;
        cv.notify_all();
        l.unlock();
        if (!bad.ok()) return fail(bad);
      }
#if HCT_WITH_CUDA
      if (gpu) {
        auto st = static_cast<cudaStream_t>(streams_[size_t(j) % streams_.size()]);
        Status c = cstep ? copy_upto(p.n)
                         : HCT_CALL_STATUS(
                               cuda, cudaMemcpyAsync(p.dst, data, p.n, cudaMemcpyHostToDevice, st));
        if (c.ok())
          c = HCT_CALL_STATUS(cuda,
                              cudaEventRecord(static_cast<cudaEvent_t>(slot_events_[slot]), st));
        if (!c.ok()) return fail(c.WithContext(TensorCtx(s)));
      }
#endif
      if (!gpu && p.direct) std::memcpy(p.dst, data, p.n);
      std::lock_guard<std::mutex> l(mu);
      slot_done[slot] = j;
      (p.direct ? direct_bytes : buffered_bytes) += p.n;
      cv.notify_all();
    }
  });
  XXH3_freeState(hs);
  stats_.bytes_o_direct += direct_bytes;
  stats_.bytes_buffered += buffered_bytes;
  stats_.bytes_verified += verified_bytes.load();
  HCT_RETURN_IF_ERROR(first_err);
  for (size_t i : which) {
    ++stats_.loads_one_shot;
    stats_.bytes_one_shot += specs[i].length;
  }
  return Status::OK();
}

Result<std::vector<LoadedTensor>> Engine::LoadMany(std::span<const TensorSpec> specs,
                                                   StreamHandle stream, void* dst,
                                                   uint64_t dst_bytes, std::shared_ptr<Buffer> slot,
                                                   EventHandle wait_before) {
  std::lock_guard<std::mutex> l(mu_);
  // Cache tensors: lease their entry files first (evict then leaves them alone, and the path
  // keeps naming the file we read); an entry that is gone falls back to the compressed source.
  std::vector<std::shared_ptr<void>> leases;
  std::vector<TensorSpec> eff_store;
  std::span<const TensorSpec> orig = specs;
  uint64_t fallbacks = 0;
  bool any_cache = false;
  for (const TensorSpec& s : specs) any_cache = any_cache || s.cache != nullptr;
  if (any_cache) {
    eff_store.assign(specs.begin(), specs.end());
    std::map<std::string, std::shared_ptr<Lease>> by_path;
    for (TensorSpec& s : eff_store) {
      if (!s.cache) continue;
      auto it = by_path.find(s.path);
      if (it == by_path.end()) {
        auto lease = Lease::Acquire(s.path);
        std::shared_ptr<Lease> p;
        if (lease.ok()) p = std::make_shared<Lease>(std::move(*lease));
        else if (!s.hct || lease.status().code() != Code::kNotFound)
          return lease.status().WithContext("cache entry of " + TensorCtx(s));
        it = by_path.emplace(s.path, p).first;
        if (p) leases.push_back(p);
      }
      if (!it->second) {  // evicted: the compressed source
        s.cache = nullptr;
        s.path = s.hct->file->path();
        s.offset = 0;
        s.xxh3.reset();
        s.block_xxh3.clear();
        ++fallbacks;
      }
    }
    specs = eff_store;
  }
  HCT_RETURN_IF_ERROR(CheckSpecs(specs));
  uint64_t total = 0;
  std::vector<uint64_t> offs = PackOffsets(specs, &total);

  std::shared_ptr<Buffer> buf;
  if (dst) {
    if (dst_bytes < total)
      return Status::InvalidArgument("destination holds " + std::to_string(dst_bytes) +
                                     " bytes, the tensors need " + std::to_string(total));
    buf = std::make_shared<Buffer>();  // the caller's memory: nothing to release
    buf->ptr = dst;
    buf->bytes = dst_bytes;
    buf->placement = placement_;
    buf->device = device_;
  } else if (slot) {
    if (slot->bytes < total)
      return Status::InvalidArgument("pool slot holds " + std::to_string(slot->bytes) +
                                     " bytes, the layer needs " + std::to_string(total));
    buf = std::move(slot);
  } else {
    HCT_ASSIGN_OR_RETURN(buf, Allocate(total));
  }
  auto* base = static_cast<std::byte*>(buf->ptr);

  // Resident when the file is (or can be made) resident; else one-shot.
  std::vector<size_t> res, one, hctv;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].compressed()) {
      hctv.push_back(i);
      continue;
    }
    const std::string& p = specs[i].path;
    if (!resident_.count(p) && opt_.resident_budget > 0 && !resident_refused_.count(p)) {
      Status s = MakeResidentLocked(p);
      if (!s.ok()) {
        resident_refused_.insert(p);
        // Reported through the stats, never printed: the library does not write to stderr.
        stats_.resident_fallback = p + ": " + s.ToString();
      }
    }
    (resident_.count(p) ? res : one).push_back(i);
  }

  auto state = std::make_shared<LoadState>();
  state->placement = placement_;
  state->device = device_;
  Status st;
#if HCT_WITH_CUDA
  std::unique_ptr<DeviceGuard> guard;
  auto caller = static_cast<cudaStream_t>(stream);
  if (placement_ == Placement::kDevice) {
    guard = std::make_unique<DeviceGuard>(device_);
    // Copies follow what the caller enqueued before (e.g. its last use of dst) and wait_before.
    cudaEvent_t start = static_cast<cudaEvent_t>(join_events_[0]);
    HCT_CHECK(cuda, cudaEventRecord(start, caller));
    for (void* s : streams_) {
      HCT_CHECK(cuda, cudaStreamWaitEvent(static_cast<cudaStream_t>(s), start, 0));
      if (wait_before)
        HCT_CHECK(cuda, cudaStreamWaitEvent(static_cast<cudaStream_t>(s),
                                            static_cast<cudaEvent_t>(wait_before), 0));
    }
  }
#endif
  state->keep = std::move(leases);
  if (!res.empty()) st = LoadResident(specs, res, base, offs);
  if (st.ok() && !one.empty()) st = LoadOneShot(specs, one, base, offs);
  if (!st.ok() && st.code() == Code::kCorruption) {
    // A corrupt cache entry: when every tensor read from files has a compressed source, decode
    // them all from it instead (after the copies already enqueued, which write the same bytes).
    bool all_hct = true;
    for (size_t i : res) all_hct = all_hct && specs[i].hct != nullptr;
    for (size_t i : one) all_hct = all_hct && specs[i].hct != nullptr;
    if (all_hct) {
      stats_.cache_fallback_reason = st.ToString();
      for (size_t i : res) hctv.push_back(i);
      for (size_t i : one) hctv.push_back(i);
      fallbacks += res.size() + one.size();
      // Every tensor read from a file here had a cache row, so `specs` is eff_store.
      for (size_t i : hctv) {
        TensorSpec& e = eff_store[i];
        if (!e.cache) continue;
        e.cache = nullptr;
        e.path = e.hct->file->path();
        e.offset = 0;
        e.xxh3.reset();
        e.block_xxh3.clear();
        if (auto f = Open(e.path); !f.ok()) st = f.status().WithContext(TensorCtx(e));
      }
      res.clear();
      one.clear();
      if (st.code() == Code::kCorruption) st = StreamBarrier();
    }
  }
  if (st.ok() && !hctv.empty()) st = LoadHct(specs, hctv, base, offs);
#if HCT_WITH_CUDA
  if (placement_ == Placement::kDevice) {
    // Join: the caller's stream follows every copy (also after an error, so that the caller's
    // memory is not written behind its back), then the handle's event is recorded on it.
    for (size_t i = 0; i < streams_.size(); ++i) {
      auto ev = static_cast<cudaEvent_t>(join_events_[i]);
      HCT_CHECK(cuda, cudaEventRecord(ev, static_cast<cudaStream_t>(streams_[i])));
      HCT_CHECK(cuda, cudaStreamWaitEvent(caller, ev, 0));
    }
    HCT_RETURN_IF_ERROR(st);
    cudaEvent_t done;
    HCT_CHECK(cuda, cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    state->event = done;
    HCT_CHECK(cuda, cudaEventRecord(done, caller));
  }
#endif
  HCT_RETURN_IF_ERROR(st);

  // Reads of cache tensors, counted in memory and flushed to the index in the background.
  stats_.cache_fallbacks += fallbacks;
  for (size_t i : res) {
    if (specs[i].cache) specs[i].cache->cache->RecordAccess(specs[i].cache->tensor_id);
    stats_.loads_cache += specs[i].cache != nullptr;
  }
  for (size_t i : one) {
    if (specs[i].cache) specs[i].cache->cache->RecordAccess(specs[i].cache->tensor_id);
    stats_.loads_cache += specs[i].cache != nullptr;
  }

  std::vector<LoadedTensor> out;
  out.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    LoadedTensor t;
    t.spec_ = std::make_shared<const TensorSpec>(orig[i]);
    t.buffer_ = buf;
    t.state_ = state;
    t.data_ = base + offs[i];
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace hct::detail
