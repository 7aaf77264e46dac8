// RTN baselines for the measurements (include/hct/codec.h).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "hct/codec.h"

namespace hct {
namespace {

Result<std::vector<float>> Load(const TensorView& t, uint64_t* rows, uint64_t* cols) {
  View2D(t.shape, rows, cols);
  std::vector<float> x(*rows * *cols);
  HCT_RETURN_IF_ERROR(ToFloat(t.data, t.dtype, x));
  return x;
}

// Quantizes groups of `group` consecutive elements of each row with s = absmax / qmax and
// q = clamp(round(x / s), qmin, qmax); the scale is kept in float (its 16-bit rounding is
// ignored: it changes the error by < 0.1%).
BaselineResult Rtn(const std::vector<float>& x, uint64_t rows, uint64_t cols, uint64_t group,
                   int qmin, int qmax) {
  BaselineResult r;
  for (uint64_t i = 0; i < rows; ++i) {
    const float* row = x.data() + i * cols;
    for (uint64_t g = 0; g < cols; g += group) {
      const uint64_t e = std::min(cols, g + group);
      float amax = 0;
      for (uint64_t j = g; j < e; ++j) amax = std::max(amax, std::fabs(row[j]));
      const float s = amax / qmax;
      for (uint64_t j = g; j < e; ++j) {
        float q = s > 0 ? std::nearbyint(row[j] / s) : 0.0f;
        q = std::clamp(q, static_cast<float>(qmin), static_cast<float>(qmax));
        const double d = static_cast<double>(row[j]) - static_cast<double>(q * s);
        r.sum_sq_err += d * d;
        r.sum_sq_ref += static_cast<double>(row[j]) * row[j];
      }
    }
  }
  r.rel_rms_error = r.sum_sq_ref > 0 ? std::sqrt(r.sum_sq_err / r.sum_sq_ref) : 0.0;
  return r;
}

}  // namespace

Result<BaselineResult> RtnInt8PerChannel(const TensorView& t) {
  uint64_t rows, cols;
  HCT_ASSIGN_OR_RETURN(std::vector<float> x, Load(t, &rows, &cols));
  BaselineResult r = Rtn(x, rows, cols, cols, -127, 127);
  r.bits_per_weight = 8.0 + 16.0 / cols;
  return r;
}

Result<BaselineResult> RtnInt4Group(const TensorView& t, int group) {
  if (group < 1) return Status::InvalidArgument("group must be >= 1");
  uint64_t rows, cols;
  HCT_ASSIGN_OR_RETURN(std::vector<float> x, Load(t, &rows, &cols));
  BaselineResult r = Rtn(x, rows, cols, group, -8, 7);
  r.bits_per_weight = 4.0 + 16.0 / group;
  return r;
}

}  // namespace hct
