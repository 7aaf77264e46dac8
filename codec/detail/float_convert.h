// Element <-> float conversions shared by the encoders and the CPU reference decoders.
// float -> BF16/F16 rounds to nearest even (what the GPU's __float2bfloat16_rn/__float2half_rn do).
#pragma once

#include <cstdint>
#include <cstring>

#include "codec/detail/bytes.h"  // Load16/Load32/Store16/Store32, used with these

namespace hct::detail {

inline float Bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // qNaN
  u += 0x7fffu + ((u >> 16) & 1u);  // carries into the exponent; overflow lands on Inf
  return static_cast<uint16_t>(u >> 16);
}

inline float F16ToFloat(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

// The compiler's float -> _Float16 conversion is IEEE round-to-nearest-even.
inline uint16_t FloatToF16(float f) {
  _Float16 v = static_cast<_Float16>(f);
  uint16_t h;
  std::memcpy(&h, &v, 2);
  return h;
}


}  // namespace hct::detail
