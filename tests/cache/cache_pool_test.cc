// Warm's job pool: every job and task runs exactly once, nested ParallelFor works, and idle
// threads help a single large job (one big entry still uses several threads).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "cache/detail/pool.h"

namespace hct::detail {
namespace {

TEST(CachePool, EveryJobAndNestedTaskRunsOnce) {
  for (int threads : {1, 2, 5}) {
    const size_t jobs = 7, outer = 5, inner = 11;
    std::vector<std::atomic<int>> hits(jobs * outer * inner);
    std::vector<std::atomic<int>> job_hits(jobs);
    RunJobs(threads, jobs, [&](size_t j, const ParallelFor& pf) {
      job_hits[j]++;
      pf(outer,
         [&](size_t o) { pf(inner, [&](size_t i) { hits[(j * outer + o) * inner + i]++; }); });
    });
    for (auto& h : job_hits) EXPECT_EQ(h.load(), 1) << threads << " threads";
    for (auto& h : hits) EXPECT_EQ(h.load(), 1) << threads << " threads";
  }
}

TEST(CachePool, IdleThreadsHelpASingleJob) {
  std::mutex mu;
  std::set<std::thread::id> ids;
  RunJobs(4, 1, [&](size_t, const ParallelFor& pf) {
    pf(16, [&](size_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      std::lock_guard lk(mu);
      ids.insert(std::this_thread::get_id());
    });
  });
  EXPECT_GT(ids.size(), 1u);
}

TEST(CachePool, ZeroJobsAndEmptyBatches) {
  int calls = 0;
  RunJobs(3, 0, [&](size_t, const ParallelFor&) { ++calls; });
  EXPECT_EQ(calls, 0);
  RunJobs(3, 2, [&](size_t, const ParallelFor& pf) { pf(0, [&](size_t) { ADD_FAILURE(); }); });
}

}  // namespace
}  // namespace hct::detail
