// Byte-level pieces of the HCT container shared by its reader and writer (internal).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "hct/container.h"

namespace hct::detail {

// Header: magic[8] | major u16 | minor u16 | flags u32 | zeros up to 4096.
inline constexpr size_t kHctHeaderUsed = 16;
// Footer: index_offset u64 | index_length u64 | index_xxh3 u64 | major u16 | minor u16 |
// reserved u32 | footer_xxh3 u64 (of the 32 bytes before it) | magic[8].
struct HctFooter {
  uint64_t index_offset = 0;
  uint64_t index_length = 0;
  uint64_t index_xxh3 = 0;
  uint16_t major = 0;
  uint16_t minor = 0;
  uint32_t reserved = 0;
  uint64_t footer_xxh3 = 0;
};

inline void PutLE(unsigned char* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
inline uint64_t GetLE(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// 16 lowercase hex digits, as checksums appear in the index.
std::string Hex64(uint64_t v);
bool ParseHex64(std::string_view s, uint64_t* out);

void EncodeHeader(HctVersion v, uint32_t flags, unsigned char out[kHctHeaderUsed]);
void EncodeFooter(HctFooter f, unsigned char out[kHctFooterSize]);  // fills footer_xxh3
HctFooter DecodeFooter(const unsigned char in[kHctFooterSize]);
uint64_t FooterChecksum(const unsigned char in[kHctFooterSize]);

// Semantic checks of one tensor entry against a chunk area [kHctHeaderSize, data_end): shape
// product, element ranges, alignment, bounds, sizes, raw-codec consistency, tensor checksum.
// Shared so the writer can never emit what the reader refuses. Errors carry no context.
Status ValidateTensor(const TensorEntry& t, uint64_t data_end);

// Index JSON of a tensor, as the writer emits it (t.codec_params must be the text of a JSON
// object: the writer and the reader only ever store such text).
nlohmann::json TensorToJson(const TensorEntry& t);

}  // namespace hct::detail
