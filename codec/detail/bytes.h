// Little-endian loads and stores of the codec payloads' fixed-width fields (internal). The
// payload formats are little-endian (docs/hct-format.md) and so is every host HCT builds for;
// memcpy keeps unaligned fields well-defined.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace hct::detail {

inline uint16_t LoadU16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t LoadU32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
// Appends v's 4 bytes to *o.
inline void PutU32(std::vector<std::byte>* o, uint32_t v) {
  const size_t at = o->size();
  o->resize(at + 4);
  std::memcpy(o->data() + at, &v, 4);
}

}  // namespace hct::detail
