// zstd helpers with per-thread contexts (internal).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "hct/status.h"

namespace hct::detail {

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
