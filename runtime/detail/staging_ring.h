// runtime/detail/staging_ring.h: a ring of staging buffers allocated once (pinned, with one
// event per slot, on the GPU path), and the turns of one load's work items over it (internal).
// Both the raw ring (one-shot loads) and the compressed path's ring are a StagingRing.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "hct/runtime.h"

namespace hct::detail {

class StagingRing {
 public:
  // `nslots` slots of `slot_bytes` (a multiple of 4096): cudaHostAlloc'ed with an event per slot
  // for kDevice, 4096-aligned host memory for kHost.
  static Result<std::unique_ptr<StagingRing>> Create(Placement placement, int device,
                                                     uint64_t slot_bytes, int nslots);
  ~StagingRing();
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;

  std::byte* slot(size_t i) const { return base_ + i * slot_bytes_; }
  // cudaEvent_t recorded after the last work reading slot i; null on the host path.
  void* event(size_t i) const { return events_.empty() ? nullptr : events_[i]; }
  uint64_t slot_bytes() const { return slot_bytes_; }
  int nslots() const { return nslots_; }
  uint64_t bytes() const { return slot_bytes_ * uint64_t(nslots_); }
  bool pinned() const { return placement_ == Placement::kDevice; }

 private:
  StagingRing() = default;
  Placement placement_ = Placement::kHost;
  int device_ = -1;
  std::byte* base_ = nullptr;
  uint64_t slot_bytes_ = 0;
  int nslots_ = 0;
  std::vector<void*> events_;
};

// One load's work items 0..n-1 over a ring, shared by the worker threads: item j uses slot
// j % nslots once item j - nslots has released it and (pinned ring) the GPU work reading the
// slot has finished. The first error aborts every item.
class RingTurns {
 public:
  explicit RingTurns(const StagingRing& ring);
  // Waits for item j's slot; false when the load was aborted (Fail names why). `ctx` names the
  // item in a failed wait.
  bool Acquire(int64_t j, size_t* slot, const std::string& ctx);
  // Item j is done with `slot` (its GPU work enqueued, the slot's event recorded after it);
  // `under_lock` runs under the turns' lock (counters of the load).
  template <class F>
  void Release(size_t slot, int64_t j, F&& under_lock) {
    std::lock_guard<std::mutex> l(mu_);
    done_[slot] = j;
    under_lock();
    cv_.notify_all();
  }
  // Waits until pred() (under the lock); false when aborted.
  template <class P>
  bool WaitFor(P&& pred) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return abort_ || pred(); });
    return !abort_;
  }
  // Runs f under the lock and wakes the waiters.
  template <class F>
  void Update(F&& f) {
    std::lock_guard<std::mutex> l(mu_);
    f();
    cv_.notify_all();
  }
  void Fail(Status s);
  Status status() const;

 private:
  const StagingRing& ring_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int64_t> done_;  // per slot, the last item that released it
  bool abort_ = false;
  Status first_err_;
};

}  // namespace hct::detail
