// Shared by the HCT fuzz targets: wraps index JSON into a whole HCT file whose checksums match,
// so that the JSON and the index validation get exercised (random bytes would almost never pass
// the index checksum).
#pragma once

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hct/container.h"

namespace hct::fuzz {

inline void PutLE(unsigned char* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

// A valid header, 4 data pages (chunk area 4096..20480) and a footer around `json`.
inline std::vector<std::byte> WrapIndex(const uint8_t* json, size_t n) {
  const size_t data = 4 * kHctAlignment;
  std::vector<std::byte> f(kHctHeaderSize + data + n + kHctFooterSize);
  auto* u = reinterpret_cast<unsigned char*>(f.data());
  std::memcpy(u, kHctMagic, 8);
  PutLE(u + 8, kHctMajorVersion, 2);
  for (size_t i = 0; i < data; ++i) u[kHctHeaderSize + i] = static_cast<unsigned char>(i * 7);
  const uint64_t index_off = kHctHeaderSize + data;
  if (n) std::memcpy(u + index_off, json, n);
  unsigned char* ft = u + index_off + n;
  PutLE(ft, index_off, 8);
  PutLE(ft + 8, n, 8);
  PutLE(ft + 16, XXH3_64bits(json, n), 8);
  PutLE(ft + 24, kHctMajorVersion, 2);
  PutLE(ft + 32, XXH3_64bits(ft, 32), 8);
  std::memcpy(ft + 40, kHctMagic, 8);
  return f;
}

}  // namespace hct::fuzz
