// runtime/detail/load_env.h: what the loaders of one engine share (internal).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hct/runtime.h"
#include "runtime/detail/device.h"
#include "runtime/detail/worker_pool.h"

namespace hct::detail {

struct LoadEnv {
  const RuntimeOptions& opt;
  Placement placement;
  int device;
  WorkerPool& io;              // io_threads readers
  const CopyStreams& streams;  // the internal copy streams (none on the host path)
  RuntimeStats& stats;
  bool gpu() const { return placement == Placement::kDevice; }
};

// Where the tensors of one load land: tensor i at base + offs[i] (PackOffsets layout).
struct Destination {
  std::byte* base = nullptr;
  const std::vector<uint64_t>* offs = nullptr;
  std::byte* at(size_t i) const { return base + (*offs)[i]; }
};

// Seconds on a monotonic clock.
inline double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Counts one piece of one-time setup (a ring, scratch, threads, a registration) in the stats.
inline void CountSetup(RuntimeStats& stats, double since, uint64_t bytes) {
  stats.setup_seconds += NowSeconds() - since;
  stats.setup_bytes += bytes;
  ++stats.setup_allocations;
}

}  // namespace hct::detail
