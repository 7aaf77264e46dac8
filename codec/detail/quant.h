// Uniform scalar quantization of transform coefficients (internal). Decoder: x_hat = q * step.
// Encoder: q = sign(y) * floor(|y| / step + 0.5 - dead_zone), and 0 where |y| < threshold
// (retention mode). Only the encoder knows dead_zone and threshold.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>

namespace hct::detail {

struct Quantizer {
  float step = 1;
  float inv_step = 1;
  float offset = 0.5f;  // 0.5 - dead_zone
  float threshold = 0;  // |y| < threshold -> 0
  int max_q = 127;      // clamp (symbol range)

  Quantizer() = default;
  Quantizer(double s, double dead_zone, double thresh, int maxq)
      : step(static_cast<float>(s)),
        inv_step(static_cast<float>(1.0 / s)),
        offset(static_cast<float>(0.5 - dead_zone)),
        threshold(static_cast<float>(thresh)),
        max_q(maxq) {}

  int Q(float y) const {
    const float a = std::fabs(y);
    if (a < threshold) return 0;
    int q = static_cast<int>(a * inv_step + offset);  // floor for a >= 0
    if (q > max_q) q = max_q;
    return y < 0 ? -q : q;
  }
};

// Sum of squared quantization errors of n coefficients (vectorized, fixed summation order, so
// deterministic; codec/quant.cc).
double QuantError(const float* y, uint64_t n, const Quantizer& qz);

// Sums for ErrorAccumulator: x.x, e.e, x.y, y.y and max |e| over n values (e = x - y).
void ErrorSums(const float* x, const float* y, uint64_t n, double sums[4], double* max_abs);

// out[i] = qz.Q(y[i]) (vectorized, same results; codec/quant.cc).
void QuantizeTo(const float* y, uint64_t n, const Quantizer& qz, int8_t* out);
void QuantizeTo(const float* y, uint64_t n, const Quantizer& qz, int16_t* out);

}  // namespace hct::detail
