// runtime/detail/worker_pool.h: a fixed set of worker threads (internal).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hct::detail {

// Run(fn) calls fn(worker) on every worker and waits for all of them. `on_start(worker)` runs
// once on each thread when it starts (e.g. cudaSetDevice).
class WorkerPool {
 public:
  WorkerPool(int n, std::function<void(int)> on_start);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
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

}  // namespace hct::detail
