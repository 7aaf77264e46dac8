// runtime/detail/one_shot.h: the one-shot loader -- io_threads threads pread pieces (O_DIRECT
// when cold) into the raw staging ring, verify them (block checksums on the reading thread, or
// one whole-tensor XXH3 in piece order) and copy each to its place on the copy streams while
// the next pieces are read (internal).
#pragma once

#include <span>

#include "runtime/detail/load_env.h"
#include "runtime/detail/source_planner.h"
#include "runtime/detail/staging_ring.h"

namespace hct::detail {

// Loads the reads in `which` (kRange) through `ring`.
Status LoadOneShot(const LoadEnv& env, const StagingRing& ring, const ReadPlan& plan,
                   std::span<const size_t> which, const Destination& dst);

}  // namespace hct::detail
