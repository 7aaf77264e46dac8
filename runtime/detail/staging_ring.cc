#include "runtime/detail/staging_ring.h"

#include <cstdlib>
#include <string>

#include "runtime/detail/device.h"

#if HCT_WITH_CUDA
#include "hct/detail/check_cuda.h"
#endif

namespace hct::detail {

Result<std::unique_ptr<StagingRing>> StagingRing::Create(Placement placement, int device,
                                                         uint64_t slot_bytes, int nslots) {
  std::unique_ptr<StagingRing> r(new StagingRing());
  r->placement_ = placement;
  r->device_ = device;
  r->slot_bytes_ = slot_bytes;
  r->nslots_ = nslots;
  const uint64_t bytes = r->bytes();
  if (placement == Placement::kDevice) {
#if HCT_WITH_CUDA
    DeviceGuard g(device);
    void* p = nullptr;
    HCT_CHECK(cuda, cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
    r->base_ = static_cast<std::byte*>(p);
    for (int i = 0; i < nslots; ++i) {
      cudaEvent_t ev;
      HCT_CHECK(cuda, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming | cudaEventBlockingSync));
      r->events_.push_back(ev);
    }
    return r;
#endif
  }
  r->placement_ = Placement::kHost;
  r->base_ = static_cast<std::byte*>(std::aligned_alloc(4096, bytes));
  if (!r->base_) return Status::ResourceExhausted("staging ring of " + std::to_string(bytes));
  return r;
}

StagingRing::~StagingRing() {
#if HCT_WITH_CUDA
  if (placement_ == Placement::kDevice) {
    DeviceGuard g(device_);
    for (void* e : events_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
    if (base_) (void)cudaFreeHost(base_);
    return;
  }
#endif
  std::free(base_);
}

RingTurns::RingTurns(const StagingRing& ring) : ring_(ring) {
  const int64_t n = ring.nslots();
  for (int64_t s = 0; s < n; ++s) done_.push_back(s - n);
}

bool RingTurns::Acquire(int64_t j, size_t* slot, const std::string& ctx) {
  const int64_t n = ring_.nslots();
  *slot = size_t(j % n);
  if (!WaitFor([&] { return done_[*slot] == j - n; })) return false;
#if HCT_WITH_CUDA
  // The slot's previous copy (and kernel) must have finished before it is overwritten.
  if (void* ev = ring_.event(*slot)) {
    Status st = HCT_CALL_STATUS(cuda, cudaEventSynchronize(static_cast<cudaEvent_t>(ev)));
    if (!st.ok()) {
      Fail(st.WithContext(ctx));
      return false;
    }
  }
#else
  (void)ctx;
#endif
  return true;
}

void RingTurns::Fail(Status s) {
  std::lock_guard<std::mutex> l(mu_);
  if (first_err_.ok()) first_err_ = std::move(s);
  abort_ = true;
  cv_.notify_all();
}

Status RingTurns::status() const {
  std::lock_guard<std::mutex> l(mu_);
  return first_err_;
}

}  // namespace hct::detail
