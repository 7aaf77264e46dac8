// runtime/detail/engine.h: the load engine behind hct::Runtime (internal).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "hct/runtime.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace hct::detail {

// Memory some loaded tensors live in; `release` frees it (or returns a pool slot).
struct Buffer {
  void* ptr = nullptr;
  uint64_t bytes = 0;
  Placement placement = Placement::kHost;
  int device = -1;
  std::function<void(Buffer&)> release;
  ~Buffer() {
    if (release) release(*this);
  }
};

// The completion of one Load(): a cudaEvent_t recorded on the caller's stream (null on host).
struct LoadState {
  void* event = nullptr;
  Placement placement = Placement::kHost;
  int device = -1;
  std::vector<std::shared_ptr<void>> keep;  // cache leases held while the tensors live
  ~LoadState();
};

// Frees memory from Engine::AllocateRaw; needs no Engine (buffers may outlive it).
void FreeMemory(Placement placement, int device, void* p);

// Fixed set of worker threads; Run(fn) calls fn(worker) on every worker and waits.
class WorkerPool {
 public:
  WorkerPool(int n, std::function<void(int)> on_start);
  ~WorkerPool();
  int size() const { return int(threads_.size()); }
  void Run(const std::function<void(int)>& fn);

 private:
  void Loop(int id);
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* fn_ = nullptr;
  uint64_t generation_ = 0;
  int running_ = 0;
  bool stop_ = false;
  std::function<void(int)> on_start_;
};

struct OpenFile {
  int fd = -1;         // buffered
  int direct_fd = -1;  // O_DIRECT, -1 when the file system refuses it
  uint64_t size = 0;
};

struct ResidentFile {
  void* map = nullptr;
  uint64_t size = 0;        // file size
  uint64_t map_bytes = 0;   // page-rounded
  bool registered = false;  // cudaHostRegister'ed
};

#if HCT_WITH_CUDA
// Sets the calling thread's device for a scope, then restores it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int dev) {
    if (cudaGetDevice(&prev_) != cudaSuccess) prev_ = -1;
    if (prev_ != dev) (void)cudaSetDevice(dev);
  }
  ~DeviceGuard() {
    if (prev_ >= 0) (void)cudaSetDevice(prev_);
  }

 private:
  int prev_ = -1;
};
#endif

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> Create(const RuntimeOptions& options);
  ~Engine();

  Placement placement() const { return placement_; }
  int device() const { return device_; }
  const RuntimeOptions& options() const { return opt_; }

  // Loads `specs` into `dst` (PackOffsets layout) or, when dst is null, into `slot` (a pool
  // buffer), or into a new allocation. `wait_before`: a cudaEvent_t the copies must follow.
  Result<std::vector<LoadedTensor>> LoadMany(std::span<const TensorSpec> specs, StreamHandle stream,
                                             void* dst, uint64_t dst_bytes,
                                             std::shared_ptr<Buffer> slot, EventHandle wait_before);
  Result<std::shared_ptr<Buffer>> Allocate(uint64_t bytes);
  // Raw allocation without a Buffer (pool slots).
  Result<void*> AllocateRaw(uint64_t bytes);
  void FreeRaw(void* p);

  Status MakeResident(const std::string& path);
  bool IsResident(const std::string& path) const;
  Status ReleaseResident();
  RuntimeStats stats() const;

 private:
  Engine() = default;
  struct Piece;
  Status Init();
  Result<OpenFile*> Open(const std::string& path);
  Status MakeResidentLocked(const std::string& path);
  Status CheckSpecs(std::span<const TensorSpec> specs);
  Status LoadResident(std::span<const TensorSpec> specs, std::span<const size_t> which,
                      std::byte* base, const std::vector<uint64_t>& offs);
  Status LoadOneShot(std::span<const TensorSpec> specs, std::span<const size_t> which,
                     std::byte* base, const std::vector<uint64_t>& offs);
  // The compressed path (runtime/hct_load.cc).
  Status LoadHct(std::span<const TensorSpec> specs, std::span<const size_t> which,
                 std::byte* base, const std::vector<uint64_t>& offs);
  Status EnsureHctResources();
  bool WantDirect(const OpenFile& f, std::span<const TensorSpec> specs,
                  std::span<const size_t> which);
  // Whether less than half of the pages of these ranges of `f` are in the page cache.
  bool MostlyCold(const OpenFile& f, std::span<const std::pair<uint64_t, uint64_t>> ranges);
  // Makes every internal stream wait for the work enqueued so far on all of them.
  Status StreamBarrier();

  RuntimeOptions opt_;
  Placement placement_ = Placement::kHost;
  int device_ = -1;
  std::unique_ptr<WorkerPool> pool_;

  mutable std::mutex mu_;  // one load at a time; guards everything below
  std::map<std::string, std::unique_ptr<OpenFile>> files_;
  std::map<std::string, ResidentFile> resident_;
  std::set<std::string> resident_refused_;
  std::set<std::tuple<std::string, uint64_t, uint64_t>> verified_;
  uint64_t resident_used_ = 0;
  std::byte* ring_ = nullptr;
  uint64_t slot_bytes_ = 0;
  int nslots_ = 0;
  std::vector<void*> slot_events_;  // cudaEvent_t: the copy out of the slot finished
  std::vector<void*> streams_;      // cudaStream_t, non-blocking
  std::vector<void*> join_events_;  // one per stream, to order the caller's stream after it
  // Compressed path, made on first use: decode threads, their read buffers (aligned, not
  // pinned: compressed bytes), and the device scratch ring (nslots_ x slot_bytes_) for symbols.
  std::unique_ptr<WorkerPool> decode_pool_;
  std::vector<std::pair<std::byte*, uint64_t>> read_bufs_;
  std::byte* dscratch_ = nullptr;
  // The compressed path's pinned ring: its own (hct_owns_ring_) or the raw ring_ above.
  std::byte* hct_ring_ = nullptr;
  uint64_t hct_slot_bytes_ = 0;
  int hct_nslots_ = 0;
  std::vector<void*> hct_slot_events_;
  bool hct_owns_ring_ = false;
  RuntimeStats stats_;
};

}  // namespace hct::detail
