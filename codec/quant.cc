// RTN baselines for the measurements (include/hct/codec.h).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "codec/detail/quant.h"
#include "hct/codec.h"

// x86-64: AVX2 clones of the hot loops, chosen at load time.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HCT_QUANT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HCT_QUANT_CLONES
#endif

namespace hct {
namespace detail {

// Blocks of kBlock values: per-element results into a small buffer (a plain loop the compiler
// vectorizes), then summed in 8 float lanes and flushed to double per block.
constexpr uint64_t kBlock = 512;

HCT_QUANT_CLONES
double QuantError(const float* y, uint64_t n, const Quantizer& qz) {
  const float inv = qz.inv_step, off = qz.offset, step = qz.step, thr = qz.threshold;
  const float qmax = static_cast<float>(qz.max_q);
  float buf[kBlock];
  double total = 0;
  for (uint64_t i = 0; i < n; i += kBlock) {
    const int m = static_cast<int>(std::min<uint64_t>(kBlock, n - i));
    const float* yb = y + i;
    for (int k = 0; k < m; ++k) {
      const float a = std::fabs(yb[k]);
      const float t = std::min(a * inv + off, qmax);
      float q = static_cast<float>(static_cast<int>(t));
      q = a < thr ? 0.0f : q;
      const float d = a - q * step;
      buf[k] = d * d;
    }
    float lane[8] = {};
    int k = 0;
    for (; k + 8 <= m; k += 8)
      for (int l = 0; l < 8; ++l) lane[l] += buf[k + l];
    for (; k < m; ++k) lane[0] += buf[k];
    double block = 0;
    for (int l = 0; l < 8; ++l) block += lane[l];
    total += block;
  }
  return total;
}

// min(float, max_q) before the conversion equals Quantizer::Q's clamp after it (floor is
// monotone and max_q an integer); the select form lets the compiler vectorize.
template <class S>
static inline void QuantizeBody(const float* y, uint64_t n, const Quantizer& qz, S* out) {
  const float inv = qz.inv_step, off = qz.offset, thr = qz.threshold;
  const float qmax = static_cast<float>(qz.max_q);
  for (uint64_t i = 0; i < n; ++i) {
    const float a = std::fabs(y[i]);
    const float t = std::min(a * inv + off, qmax);
    int q = static_cast<int>(t);
    q = a < thr ? 0 : q;
    out[i] = static_cast<S>(y[i] < 0 ? -q : q);
  }
}

HCT_QUANT_CLONES
void QuantizeTo(const float* y, uint64_t n, const Quantizer& qz, int8_t* out) {
  QuantizeBody(y, n, qz, out);
}

HCT_QUANT_CLONES
void QuantizeTo(const float* y, uint64_t n, const Quantizer& qz, int16_t* out) {
  QuantizeBody(y, n, qz, out);
}

HCT_QUANT_CLONES
void ErrorSums(const float* x, const float* y, uint64_t n, double sums[4], double* max_abs) {
  float mx = static_cast<float>(*max_abs);
  for (uint64_t i = 0; i < n; i += kBlock) {
    const int m = static_cast<int>(std::min<uint64_t>(kBlock, n - i));
    const float* xb = x + i;
    const float* yb = y + i;
    float a[8] = {}, b[8] = {}, c[8] = {}, d[8] = {}, e[8] = {};
    int k = 0;
    for (; k + 8 <= m; k += 8)
      for (int l = 0; l < 8; ++l) {
        const float xi = xb[k + l], yi = yb[k + l], er = xi - yi;
        a[l] += xi * xi, b[l] += er * er, c[l] += xi * yi, d[l] += yi * yi;
        e[l] = std::max(e[l], std::fabs(er));
      }
    for (; k < m; ++k) {
      const float xi = xb[k], yi = yb[k], er = xi - yi;
      a[0] += xi * xi, b[0] += er * er, c[0] += xi * yi, d[0] += yi * yi;
      e[0] = std::max(e[0], std::fabs(er));
    }
    double s[4] = {};
    for (int l = 0; l < 8; ++l) {
      s[0] += a[l], s[1] += b[l], s[2] += c[l], s[3] += d[l];
      mx = std::max(mx, e[l]);
    }
    for (int j = 0; j < 4; ++j) sums[j] += s[j];
  }
  *max_abs = mx;
}

}  // namespace detail
namespace {

Result<std::vector<float>> Load(const TensorView& t, uint64_t* rows, uint64_t* cols) {
  View2D(t.shape, rows, cols);
  std::vector<float> x(*rows * *cols);
  HCT_RETURN_IF_ERROR(ToFloat(t.data, t.dtype, x));
  return x;
}

float ToF16(float v) {
  std::byte b[2];
  float out = 0;
  (void)FromFloat({&v, 1}, DType::kF16, b);
  (void)ToFloat(b, DType::kF16, {&out, 1});
  return out;
}

// Quantizes groups of `group` consecutive elements of each row. Symmetric: s = absmax / qmax,
// q = clamp(round(x / s), qmin, qmax), x' = q s. Asymmetric: s = (max - min) / qmax,
// q = clamp(round((x - min) / s), 0, qmax), x' = min + q s. Scale and min are rounded to F16,
// as they are stored.
BaselineResult Rtn(const std::vector<float>& x, uint64_t rows, uint64_t cols, uint64_t group,
                   const RtnSpec& spec) {
  BaselineResult r;
  const float qmax = static_cast<float>(spec.asymmetric ? (1 << spec.bits) - 1
                                                        : (1 << (spec.bits - 1)) - 1);
  const float qmin = spec.asymmetric ? 0.0f : (spec.bits == 8 ? -qmax : -qmax - 1);
  for (uint64_t i = 0; i < rows; ++i) {
    const float* row = x.data() + i * cols;
    for (uint64_t g = 0; g < cols; g += group) {
      const uint64_t e = std::min(cols, g + group);
      float lo = row[g], hi = row[g], amax = 0;
      for (uint64_t j = g; j < e; ++j)
        lo = std::min(lo, row[j]), hi = std::max(hi, row[j]), amax = std::max(amax, std::fabs(row[j]));
      const float m = spec.asymmetric ? ToF16(lo) : 0.0f;
      const float s = ToF16(spec.asymmetric ? (hi - lo) / qmax : amax / qmax);
      for (uint64_t j = g; j < e; ++j) {
        float q = s > 0 ? std::nearbyint((row[j] - m) / s) : 0.0f;
        q = std::clamp(q, qmin, qmax);
        const double d = static_cast<double>(row[j]) - (static_cast<double>(m) + q * s);
        r.sum_sq_err += d * d;
        r.sum_sq_ref += static_cast<double>(row[j]) * row[j];
      }
    }
  }
  r.rel_rms_error = r.sum_sq_ref > 0 ? std::sqrt(r.sum_sq_err / r.sum_sq_ref) : 0.0;
  // Per row: ceil(cols / group) groups, 16 bits of scale each, 16 more of min if asymmetric.
  const double groups = static_cast<double>((cols + group - 1) / group);
  r.bits_per_weight = spec.bits + (spec.asymmetric ? 32.0 : 16.0) * groups / cols;
  return r;
}

}  // namespace

Result<BaselineResult> RtnGroup(const TensorView& t, const RtnSpec& spec) {
  if (spec.group < 0) return Status::InvalidArgument("group must be >= 0");
  if (spec.bits < 2 || spec.bits > 8) return Status::InvalidArgument("bits must be in 2..8");
  uint64_t rows, cols;
  HCT_ASSIGN_OR_RETURN(std::vector<float> x, Load(t, &rows, &cols));
  return Rtn(x, rows, cols, spec.group == 0 ? cols : spec.group, spec);
}

Result<BaselineResult> RtnInt8PerChannel(const TensorView& t) {
  return RtnGroup(t, {.bits = 8, .group = 0, .asymmetric = false});
}

Result<BaselineResult> RtnInt4Group(const TensorView& t, int group) {
  if (group < 1) return Status::InvalidArgument("group must be >= 1");
  return RtnGroup(t, {.bits = 4, .group = group, .asymmetric = false});
}

}  // namespace hct
