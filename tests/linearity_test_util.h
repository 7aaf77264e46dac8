// Linearity checks for tests (issue 10 item 7): the CPU time of a piece of work at n and at 4n.
// Linear work costs about 4x, quadratic 16x; the check is the ratio, never an absolute time, so
// that it holds on a loaded 2-core CI machine. CPU time of this thread (not wall time) and the
// least of a few runs keep most of the machine's noise out.
#pragma once

#include <time.h>

#include <algorithm>
#include <functional>
#include <limits>

namespace hct::test {

inline double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// Least thread CPU seconds of `runs` calls of work(n); `setup(n)` runs untimed before each.
inline double LeastCpuSeconds(size_t n, int runs, const std::function<void(size_t)>& setup,
                              const std::function<void(size_t)>& work) {
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < runs; ++r) {
    if (setup) setup(n);
    const double t0 = ThreadCpuSeconds();
    work(n);
    best = std::min(best, ThreadCpuSeconds() - t0);
  }
  return best;
}

// Time of work(4n) over work(n); runs alternate between the sizes so that a burst of load
// falls on both.
inline double GrowthOf4x(size_t n, const std::function<void(size_t)>& setup,
                         const std::function<void(size_t)>& work, int runs = 3) {
  double small = std::numeric_limits<double>::infinity(), large = small;
  for (int r = 0; r < runs; ++r) {
    small = std::min(small, LeastCpuSeconds(n, 1, setup, work));
    large = std::min(large, LeastCpuSeconds(4 * n, 1, setup, work));
  }
  return large / small;
}

// Linear is 4 (a little more with n log n maps and cache misses), quadratic 16.
inline constexpr double kMaxLinearGrowth = 8.0;

}  // namespace hct::test
