// One parser for sizes and counts written by people ("64M", "1.5T", "4096", "10GiB"), shared by
// the tools, the cache and the runtime settings so that every option accepts the same spelling
// and rejects the same mistakes.
#pragma once

#include <cstdint>
#include <limits>
#include <string_view>

#include "hct/status.h"

namespace hct {

// A non-negative number (a fraction is allowed: "1.5T") with an optional unit K, M, G, T, P
// (powers of 1024; "KB", "KiB" and "B" are accepted, any case). Trailing spaces are ignored.
// Errors (kInvalidArgument, naming the text): empty text, a sign, garbage, a unit not in the
// list, a value above `max` (also what does not fit in 64 bits, e.g. "10000P").
Result<uint64_t> ParseSize(std::string_view text,
                           uint64_t max = std::numeric_limits<uint64_t>::max());

}  // namespace hct
