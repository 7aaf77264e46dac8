// zstd helpers with per-thread contexts (internal).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "hct/status.h"

namespace hct::detail {

// minMatch 7 (the largest): on dctq symbols and on the BF16 exponent plane it gave smaller
// output (3.40 vs 3.42 bits/symbol; lossless kdoc 1.471x vs 1.465x) and faster coding than the
// level-1 default (bench/bench_codec.cc, docs/hct-format.md §5). Frames stay plain zstd frames.
inline constexpr int kCodecMinMatch = 7;

struct ZstdSettings {
  int level = 1;
  int strategy = 0;       // 0 = the level's default, else ZSTD_strategy (1 = fast)
  int literal_mode = 0;   // 0 = auto, 1 = huffman, 2 = uncompressed (ZSTD_paramSwitch_e)
  int min_match = 0;      // 0 = default, else 3..7
};

// Appends one zstd frame of src to *out.
Status ZstdCompress(std::span<const std::byte> src, const ZstdSettings& s,
                    std::vector<std::byte>* out);
// Decompresses one frame that must fill dst exactly (Corruption otherwise).
Status ZstdDecompressExact(std::span<const std::byte> src, std::span<std::byte> dst);

}  // namespace hct::detail
