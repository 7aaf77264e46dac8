// Shared by the bf16-huff tests (CPU and GPU): BF16 words of Gaussian weights.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace hct::test {

// n BF16 words (little-endian) of N(0, scale^2) floats, truncated: realistic exponents.
inline std::vector<std::byte> GaussianBf16(size_t n, uint32_t seed, float scale = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<std::byte> b(2 * n);
  for (size_t i = 0; i < n; ++i) {
    const float f = nd(rng);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint16_t w = uint16_t(u >> 16);
    std::memcpy(&b[2 * i], &w, 2);
  }
  return b;
}

}  // namespace hct::test
