// File helpers shared by the model readers (hct::formats) and the converter (internal).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hct/dtype.h"
#include "hct/status.h"

namespace hct::detail {

// The whole file.
Result<std::string> ReadTextFile(const std::string& path);

// "model-00001-of-00004.safetensors" -> "model-00001-of-00004.hct" (any other name: + ".hct").
std::string HctNameFor(const std::string& shard_name);
// Inverse, for HCT files without recorded source: "x.hct" -> "x.safetensors".
std::string SafetensorsNameFor(const std::string& hct_name);

// Non-weight files of a folder (relative, sorted, recursive, hidden entries skipped), leaving
// out names for which skip() is true.
Result<std::vector<std::string>> ListOtherFiles(const std::string& dir,
                                                bool (*skip)(const std::string& rel));

// Bytes of n elements of dtype, or Corruption.
Result<uint64_t> BytesOf(DType dtype, uint64_t n, std::string_view what);

}  // namespace hct::detail
