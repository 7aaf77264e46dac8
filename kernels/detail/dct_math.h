// kernels/detail/dct_math.h: the inverse-DCT arithmetic shared by the GPU kernels and their CPU
// unit tests (host+device functions; plain C++ when not compiled by nvcc).
//
// Fast path: the N-point inverse DCT by even/odd recursion (the "partial butterfly"):
//   V_N(c)[i]       = V_{N/2}(c_even)[i] + O[i]
//   V_N(c)[N-1-i]   = V_{N/2}(c_even)[i] - O[i],  O[i] = sum_m c[2m+1] cos(pi(2i+1)(2m+1)/2N)
//   V_1(c)[0]       = c[0] / sqrt(2)
// where V_N is the DCT-III without its sqrt(2/N) factor, so the orthonormal inverse is
// x = sqrt(2/N) * V_N(c). Cost: (N/2)^2 + (N/4)^2 + ... FMAs for N points (N=32: 341 instead of
// 1024 for the plain matrix product). The factors sqrt(2/N) of both passes and the
// quantization step are applied once, at the end.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define HCT_HD __host__ __device__ __forceinline__
#else
#define HCT_HD inline
#endif

namespace hct::detail {

// cos(pi * num / den) in double, evaluable at compile time (no constexpr std::cos in C++20).
constexpr double CosPiRatio(int64_t num, int64_t den) {
  constexpr double kPi = 3.14159265358979323846264338327950288;
  int64_t p = num % (2 * den);
  if (p < 0) p += 2 * den;
  if (p > den) p = 2 * den - p;  // cos(pi t) = cos(pi (2 - t))
  double sign = 1.0;
  if (2 * p > den) {  // cos(pi t) = -cos(pi (1 - t))
    p = den - p;
    sign = -1.0;
  }
  // Now t = p/den in [0, 1/2]; use sin(pi/2 - x) past pi/4 to keep the series argument small.
  bool use_sin = 4 * p > den;
  double x = use_sin ? kPi * double(den - 2 * p) / double(2 * den) : kPi * double(p) / double(den);
  double x2 = x * x, term = use_sin ? x : 1.0, sum = term;
  for (int k = 1; k < 14; ++k) {
    int a = use_sin ? 2 * k : 2 * k - 1, b = use_sin ? 2 * k + 1 : 2 * k;
    term *= -x2 / double(a * b);
    sum += term;
  }
  return sign * sum;
}

// Odd-part matrices for N = 2, 4, ..., 64: Odd_N[i][m] = cos(pi (2i+1)(2m+1) / (2N)),
// i, m < N/2, stored row-major at OddOffset(N).
constexpr int OddOffset(int n) {
  int off = 0;
  for (int k = 2; k < n; k *= 2) off += (k / 2) * (k / 2);
  return off;
}
inline constexpr int kOddTableSize = OddOffset(128);

struct OddTables {
  float v[kOddTableSize];
};

constexpr OddTables MakeOddTables() {
  OddTables t{};
  for (int n = 2; n <= 64; n *= 2) {
    for (int i = 0; i < n / 2; ++i) {
      for (int m = 0; m < n / 2; ++m) {
        t.v[OddOffset(n) + i * (n / 2) + m] =
            static_cast<float>(CosPiRatio(int64_t(2 * i + 1) * (2 * m + 1), 2 * n));
      }
    }
  }
  return t;
}

inline constexpr OddTables kOddTablesHost = MakeOddTables();
#if defined(__CUDACC__)
// Each .cu gets its own copy (no separable compilation); with the loops fully unrolled every
// access has a constant index and becomes a constant-bank operand of an FFMA.
static __constant__ OddTables kOddTablesDev = MakeOddTables();
#endif

HCT_HD float OddCos(int idx) {
#if defined(__CUDA_ARCH__)
  return kOddTablesDev.v[idx];
#else
  return kOddTablesHost.v[idx];
#endif
}

inline constexpr float kInvSqrt2 = 0.70710678118654752440f;

// x = V_N(c) (see above). N a power of two, 1..64.
template <int N>
HCT_HD void IdctUnscaled(const float* c, float* x) {
  if constexpr (N == 1) {
    x[0] = c[0] * kInvSqrt2;
  } else {
    constexpr int H = N / 2;
    float ce[H], e[H];
#pragma unroll
    for (int m = 0; m < H; ++m) ce[m] = c[2 * m];
    IdctUnscaled<H>(ce, e);
#pragma unroll
    for (int i = 0; i < H; ++i) {
      float o = 0.0f;
#pragma unroll
      for (int m = 0; m < H; ++m) o = fmaf(c[2 * m + 1], OddCos(OddOffset(N) + i * H + m), o);
      x[i] = e[i] + o;
      x[N - 1 - i] = e[i] - o;
    }
  }
}

// The swizzle of the fast kernel's shared-memory rows, at float4 granularity: float4 g of a row
// (in tile tj = g / (T/4)) is stored at PhysF4<T>(g). Pass 1 writes a warp's 32 consecutive
// floats (8 aligned float4s, permuted among themselves: conflict-free); pass 2 has 8 threads
// of consecutive tiles read float4 m of their tile, which this spreads over the 8 bank groups.
template <int T>
HCT_HD int PhysF4(int g) {
  constexpr int kPerTile = T / 4;
  constexpr int kMask = (kPerTile < 8 ? kPerTile : 8) - 1;
  constexpr int kShift = kPerTile >= 8 ? 0 : (kPerTile == 4 ? 1 : 2);
  int tj = g / kPerTile;
  return g ^ ((tj >> kShift) & kMask);
}

}  // namespace hct::detail
