// Buffers, load states and the copy streams of the engine.
#include "runtime/detail/device.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#if HCT_WITH_CUDA
#include "hct/detail/check_cuda.h"
#endif

namespace hct::detail {

LoadState::~LoadState() {
#if HCT_WITH_CUDA
  if (event) (void)cudaEventDestroy(static_cast<cudaEvent_t>(event));
#endif
}

Result<void*> AllocateMemory(Placement placement, int device, uint64_t bytes) {
  const uint64_t n = std::max<uint64_t>(bytes, 1);
  if (placement == Placement::kDevice) {
#if HCT_WITH_CUDA
    DeviceGuard g(device);
    void* p = nullptr;
    HCT_CHECK(cuda, cudaMalloc(&p, n));
    return p;
#endif
  }
  (void)device;
  void* p = std::aligned_alloc(4096, (n + 4095) & ~uint64_t(4095));
  if (!p) return Status::ResourceExhausted("host allocation of " + std::to_string(n) + " bytes");
  return p;
}

void FreeMemory(Placement placement, int device, void* p) {
  if (!p) return;
  if (placement == Placement::kDevice) {
#if HCT_WITH_CUDA
    DeviceGuard g(device);
    (void)cudaFree(p);  // implicitly ordered after pending work on the buffer
    return;
#endif
  }
  (void)device;
  std::free(p);
}

void CopyStreams::Synchronize() const {
#if HCT_WITH_CUDA
  if (streams_.empty()) return;
  DeviceGuard g(device_);
  for (void* s : streams_) (void)cudaStreamSynchronize(static_cast<cudaStream_t>(s));
#endif
}

CopyStreams::~CopyStreams() {
  Synchronize();
#if HCT_WITH_CUDA
  if (streams_.empty()) return;
  DeviceGuard g(device_);
  for (void* s : streams_) (void)cudaStreamDestroy(static_cast<cudaStream_t>(s));
  for (void* e : join_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
#endif
}

Status CopyStreams::Create(int device, int n) {
  device_ = device;
#if HCT_WITH_CUDA
  DeviceGuard g(device);
  for (int i = 0; i < n; ++i) {
    cudaStream_t s;
    HCT_CHECK(cuda, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    streams_.push_back(s);
    cudaEvent_t ev;
    HCT_CHECK(cuda, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    join_.push_back(ev);
  }
#else
  (void)n;
#endif
  return Status::OK();
}

Status CopyStreams::Follow(void* caller, void* wait_before) {
#if HCT_WITH_CUDA
  if (streams_.empty()) return Status::OK();
  cudaEvent_t start = static_cast<cudaEvent_t>(join_[0]);
  HCT_CHECK(cuda, cudaEventRecord(start, static_cast<cudaStream_t>(caller)));
  for (void* s : streams_) {
    HCT_CHECK(cuda, cudaStreamWaitEvent(static_cast<cudaStream_t>(s), start, 0));
    if (wait_before)
      HCT_CHECK(cuda, cudaStreamWaitEvent(static_cast<cudaStream_t>(s),
                                          static_cast<cudaEvent_t>(wait_before), 0));
  }
#else
  (void)caller, (void)wait_before;
#endif
  return Status::OK();
}

Status CopyStreams::Join(void* caller) {
#if HCT_WITH_CUDA
  for (size_t i = 0; i < streams_.size(); ++i) {
    auto ev = static_cast<cudaEvent_t>(join_[i]);
    HCT_CHECK(cuda, cudaEventRecord(ev, static_cast<cudaStream_t>(streams_[i])));
    HCT_CHECK(cuda, cudaStreamWaitEvent(static_cast<cudaStream_t>(caller), ev, 0));
  }
#else
  (void)caller;
#endif
  return Status::OK();
}

Status CopyStreams::Barrier() {
#if HCT_WITH_CUDA
  for (size_t i = 0; i < streams_.size(); ++i)
    HCT_CHECK(cuda, cudaEventRecord(static_cast<cudaEvent_t>(join_[i]),
                                    static_cast<cudaStream_t>(streams_[i])));
  for (void* s : streams_)
    for (void* e : join_)
      HCT_CHECK(cuda, cudaStreamWaitEvent(static_cast<cudaStream_t>(s),
                                          static_cast<cudaEvent_t>(e), 0));
#endif
  return Status::OK();
}

}  // namespace hct::detail
