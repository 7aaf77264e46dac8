// Loads and stores of the codec payloads' fixed-width little-endian fields (internal). The
// payload formats are little-endian (docs/hct-format.md) and so is every host HCT builds for;
// memcpy keeps unaligned fields well-defined.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace hct::detail {

inline uint16_t Load16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t Load32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void Store16(std::byte* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void Store32(std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); }
// Appends v's 4 bytes to *o.
inline void Append32(std::vector<std::byte>* o, uint32_t v) {
  const size_t at = o->size();
  o->resize(at + 4);
  Store32(o->data() + at, v);
}

}  // namespace hct::detail
