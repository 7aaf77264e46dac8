#include "cache/detail/pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

namespace hct::detail {
namespace {

// One ParallelFor call: tasks handed out in index order, to the owner and to helpers.
struct Batch {
  const std::function<void(size_t)>* body = nullptr;
  size_t n = 0;
  size_t next = 0;  // guarded by Shared::mu
  size_t done = 0;  // guarded by Shared::mu
};

struct Shared {
  std::mutex mu;
  std::condition_variable cv;  // a batch opened, a batch completed, or the jobs are over
  std::list<Batch*> open;      // batches with tasks not yet handed out
  int in_jobs = 0;             // threads still running jobs
  bool jobs_over = false;

  // Takes one task of `t` (mu held), runs it without the lock, counts it done.
  void RunOne(std::unique_lock<std::mutex>& lk, Batch* t) {
    const size_t i = t->next++;
    if (t->next == t->n) open.remove(t);
    lk.unlock();
    (*t->body)(i);
    lk.lock();
    if (++t->done == t->n) cv.notify_all();
  }

  void For(size_t n, const std::function<void(size_t)>& body) {
    if (n == 0) return;
    if (n == 1) return body(0);
    Batch b;
    b.body = &body;
    b.n = n;
    std::unique_lock lk(mu);
    open.push_back(&b);
    cv.notify_all();
    // Own tasks first; then, while helpers finish ours, help with any other open batch (a task
    // of ours may itself have opened one, e.g. the chunks of a tensor), else sleep.
    while (b.done < b.n) {
      Batch* t = b.next < b.n ? &b : open.empty() ? nullptr : open.front();
      if (t)
        RunOne(lk, t);
      else
        cv.wait(lk);
    }
  }

  // A thread without jobs: run other threads' tasks until every job is over.
  void Help() {
    std::unique_lock lk(mu);
    while (true) {
      cv.wait(lk, [&] { return !open.empty() || jobs_over; });
      if (open.empty()) return;
      RunOne(lk, open.front());
    }
  }
};

}  // namespace

void RunJobs(int threads, size_t n_jobs,
             const std::function<void(size_t job, const ParallelFor& pf)>& job) {
  threads = std::max(1, threads);
  if (threads == 1) {
    const ParallelFor serial = [](size_t n, const std::function<void(size_t)>& body) {
      for (size_t i = 0; i < n; ++i) body(i);
    };
    for (size_t j = 0; j < n_jobs; ++j) job(j, serial);
    return;
  }
  Shared sh;
  sh.in_jobs = threads;
  const ParallelFor pf = [&sh](size_t n, const std::function<void(size_t)>& body) {
    sh.For(n, body);
  };
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t j; (j = next.fetch_add(1)) < n_jobs;) job(j, pf);
    {
      std::lock_guard lk(sh.mu);
      if (--sh.in_jobs == 0) sh.jobs_over = true;
    }
    sh.cv.notify_all();
    sh.Help();
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
}

}  // namespace hct::detail
