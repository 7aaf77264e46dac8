// Warm's thread pool (internal): one job per entry on each thread, and idle threads helping the
// busy ones with the fine-grained tasks (tensors of a batch, chunks of a tensor) those hand to
// their ParallelFor. So a few large entries (per-layer entries of a 70B model are ~1.6 GiB) still
// use every core, while many small entries run one per thread without coordination.
#pragma once

#include <cstddef>
#include <functional>

#include "hct/codec.h"

namespace hct::detail {

// Runs job(0..n_jobs-1) on `threads` threads (the caller is one of them). A job gets a
// ParallelFor: body(0..n-1) runs on the calling thread and on any thread that has no job left;
// it returns when all n calls have returned. It may be nested (a body may call it again).
void RunJobs(int threads, size_t n_jobs,
             const std::function<void(size_t job, const ParallelFor& pf)>& job);

}  // namespace hct::detail
