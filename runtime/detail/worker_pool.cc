#include "runtime/detail/worker_pool.h"

namespace hct::detail {

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

}  // namespace hct::detail
