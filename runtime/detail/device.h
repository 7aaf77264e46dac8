// runtime/detail/device.h: memory the loaded tensors live in, the completion of a load, the
// calling thread's CUDA device for a scope, and the engine's internal copy streams (internal).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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
// Shared by the tensors of the load (and their DLPack exports): when the last is gone, the
// event is destroyed, the leases released and the buffer freed (or its slot returned).
struct LoadState {
  void* event = nullptr;
  std::vector<std::shared_ptr<void>> keep;  // cache leases held while the tensors live
  std::shared_ptr<Buffer> buffer;
  ~LoadState();
};

// Device memory (kDevice) or 4096-aligned host memory (kHost) of at least one byte.
Result<void*> AllocateMemory(Placement placement, int device, uint64_t bytes);
// Frees memory from AllocateMemory; needs no Engine (buffers may outlive it).
void FreeMemory(Placement placement, int device, void* p);

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

// The engine's non-blocking copy streams, each with an event to join it (GPU only; empty on the
// host path).
class CopyStreams {
 public:
  CopyStreams() = default;
  CopyStreams(const CopyStreams&) = delete;
  CopyStreams& operator=(const CopyStreams&) = delete;
  ~CopyStreams();
  Status Create(int device, int n);
  size_t size() const { return streams_.size(); }
  // The stream for work item j (round-robin), a cudaStream_t.
  void* at(uint64_t j) const { return streams_[j % streams_.size()]; }
  // Every stream waits for what the caller's stream enqueued so far and for `wait_before`.
  Status Follow(void* caller, void* wait_before);
  // The caller's stream waits for every stream.
  Status Join(void* caller);
  // Every stream waits for the work enqueued so far on all of them.
  Status Barrier();
  // Blocks until the work enqueued on every stream is done.
  void Synchronize() const;

 private:
  int device_ = -1;
  std::vector<void*> streams_;  // cudaStream_t
  std::vector<void*> join_;     // cudaEvent_t, one per stream
};

}  // namespace hct::detail
