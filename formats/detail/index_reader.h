// The HCT index JSON reader (docs/hct-format.md section 2 and the validation of section 4),
// shared by HctFile's Open and Parse (internal).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hct/container.h"

namespace hct::detail {

// Reads the index text into `metadata`, `tensors` (file order) and `by_name`, checking each
// tensor (section 4, rules 5-9) as its object ends. Errors name the tensor and chunk but not the
// file. No JSON tree of the index is built: a tree of a 100k-tensor index cost most of an open.
Status ReadHctIndex(std::string_view text, uint64_t index_offset,
                    std::map<std::string, std::string>* metadata,
                    std::vector<TensorEntry>* tensors,
                    std::unordered_map<std::string, size_t>* by_name);

}  // namespace hct::detail
