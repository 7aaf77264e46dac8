// Test data shared by the codec and kernel tests: quantized symbols shaped like real ones.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace hct::test {

// Laplacian-like int8 symbols, as quantized DCT coefficients and weights give.
inline std::vector<int8_t> Peaked(size_t n, uint32_t seed, double scale = 1.5) {
  std::mt19937 rng(seed);
  std::exponential_distribution<double> e(1.0 / scale);
  std::bernoulli_distribution sign(0.5);
  std::vector<int8_t> s(n);
  for (auto& v : s) {
    const int m = std::min(127, int(std::floor(e(rng) + 0.5)));
    v = int8_t(sign(rng) ? -m : m);
  }
  return s;
}

}  // namespace hct::test
