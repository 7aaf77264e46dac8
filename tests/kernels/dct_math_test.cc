// CPU tests of the kernels' shared arithmetic (kernels/detail/dct_math.h) and of the launchers'
// argument checks. The GPU kernels themselves are tested in decode_gpu_test.cc.
#include "kernels/detail/dct_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <set>
#include <vector>

#include "hct/kernels.h"

namespace hct {
namespace {

TEST(DctMath, CosPiRatioMatchesLibm) {
  for (int den = 1; den <= 256; den = den * 2 + 1) {
    for (int num = -3 * den; num <= 5 * den; ++num) {
      const double want = std::cos(std::numbers::pi * num / den);
      EXPECT_NEAR(detail::CosPiRatio(num, den), want, 2e-15) << num << "/" << den;
    }
  }
}

// Orthonormal DCT-III in double, straight from the definition.
std::vector<double> IdctDirect(const std::vector<double>& c) {
  const int n = int(c.size());
  std::vector<double> x(n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < n; ++k) {
      const double a = k == 0 ? std::sqrt(1.0 / n) : std::sqrt(2.0 / n);
      x[i] += a * c[k] * std::cos(std::numbers::pi * (2 * i + 1) * k / (2.0 * n));
    }
  }
  return x;
}

template <int N>
void CheckButterfly(std::mt19937& rng) {
  std::uniform_int_distribution<int> q(-127, 127);
  for (int trial = 0; trial < 50; ++trial) {
    float c[N], x[N];
    std::vector<double> cd(N);
    for (int k = 0; k < N; ++k) cd[k] = c[k] = float(q(rng));
    if (trial == 0) {  // a single coefficient: one basis vector
      for (int k = 0; k < N; ++k) cd[k] = c[k] = (k == N / 2) ? 1.0f : 0.0f;
    }
    detail::IdctUnscaled<N>(c, x);
    const std::vector<double> want = IdctDirect(cd);
    double err = 0, ref = 0;
    for (int i = 0; i < N; ++i) {
      const double got = std::sqrt(2.0 / N) * x[i];
      err = std::max(err, std::fabs(got - want[i]));
      ref = std::max(ref, std::fabs(want[i]));
    }
    EXPECT_LE(err, 1e-6 * ref) << "N=" << N << " trial " << trial;
  }
}

TEST(DctMath, ButterflyIdctEqualsDefinition) {
  std::mt19937 rng(7);
  CheckButterfly<1>(rng);
  CheckButterfly<2>(rng);
  CheckButterfly<4>(rng);
  CheckButterfly<8>(rng);
  CheckButterfly<16>(rng);
  CheckButterfly<32>(rng);
  CheckButterfly<64>(rng);
}

// The shared-memory swizzle: a permutation of each row; pass 1 (32 consecutive floats per
// warp) and pass 2 (8 threads of consecutive tiles, float4 m each) hit distinct banks.
template <int T>
void CheckSwizzle() {
  constexpr int kWidthF4 = 64;  // 256 floats per row, as in the fast kernel
  std::set<int> seen;
  for (int g = 0; g < kWidthF4; ++g) seen.insert(detail::PhysF4<T>(g));
  EXPECT_EQ(seen.size(), size_t(kWidthF4));
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), kWidthF4 - 1);
  for (int w = 0; w < 256; w += 32) {  // pass 1: 32 threads, one float each
    std::set<int> banks;
    for (int t = w; t < w + 32; ++t) banks.insert((detail::PhysF4<T>(t / 4) * 4 + t % 4) % 32);
    EXPECT_EQ(banks.size(), 32u) << "T=" << T << " warp at " << w;
  }
  constexpr int kTilesPerRow = 256 / T;
  for (int m = 0; m < T / 4; ++m) {  // pass 2: quarter-warps of 8 consecutive tiles
    for (int t0 = 0; t0 < kTilesPerRow; t0 += 8) {
      std::set<int> groups;
      for (int tj = t0; tj < t0 + 8; ++tj) groups.insert(detail::PhysF4<T>(tj * (T / 4) + m) % 8);
      EXPECT_EQ(groups.size(), 8u) << "T=" << T << " m=" << m << " tiles from " << t0;
    }
  }
}

TEST(DctMath, SwizzleIsConflictFree) {
  CheckSwizzle<8>();
  CheckSwizzle<16>();
  CheckSwizzle<32>();
}

DctqDecodeArgs GoodArgs() {
  alignas(16) static int8_t sym[16], out[16];
  DctqDecodeArgs a;
  a.symbols = sym;
  a.out = out;
  a.rows = 100;
  a.cols = 50;
  a.row_begin = 32;
  a.row_end = 100;  // the tensor's end need not be a tile multiple
  a.tile_rows = a.tile_cols = 16;
  a.step = 0.5f;
  return a;
}

TEST(KernelArgs, DctqDecodeChecks) {
  EXPECT_TRUE(ValidateDctqDecode(GoodArgs()).ok());
  DctqDecodeArgs a = GoodArgs();
  a.row_begin = 8;  // not a tile-row start
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kInvalidArgument);
  a = GoodArgs();
  a.row_end = 90;  // neither a tile multiple nor the end
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kInvalidArgument);
  a.transform = GpuTransform::kNone;  // any rows for the identity transform
  EXPECT_TRUE(ValidateDctqDecode(a).ok());
  a = GoodArgs();
  a.row_end = 101;
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kOutOfRange);
  a = GoodArgs();
  a.tile_cols = 65;
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kUnsupported);
  a.tile_cols = 0;
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kUnsupported);
  a = GoodArgs();
  a.symbol_type = DType::kI32;
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kUnsupported);
  a = GoodArgs();
  a.out_type = DType::kF64;
  Status s = ValidateDctqDecode(a);
  EXPECT_EQ(s.code(), Code::kUnsupported);
  EXPECT_NE(s.message().find("F64"), std::string::npos) << s.ToString();
  a = GoodArgs();
  a.out = nullptr;
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kInvalidArgument);
  a.row_begin = a.row_end;  // nothing to do: null pointers are fine
  EXPECT_TRUE(ValidateDctqDecode(a).ok());
  a = GoodArgs();
  alignas(4) static uint8_t words[8];
  a.out = words + 2;  // F32 output at a 2-byte boundary
  a.out_type = DType::kF32;
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kInvalidArgument);
  a.out_type = DType::kBF16;
  EXPECT_TRUE(ValidateDctqDecode(a).ok());
  a.symbols = words + 1;
  a.symbol_type = DType::kI16;
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kInvalidArgument);
  a = GoodArgs();
  a.step = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kInvalidArgument);
  a = GoodArgs();
  a.rows = uint64_t(1) << 40;
  a.cols = uint64_t(1) << 30;
  EXPECT_EQ(ValidateDctqDecode(a).code(), Code::kOutOfRange);
}

TEST(KernelArgs, BytePlaneMergeChecks) {
  static uint8_t buf[64];
  BytePlaneMergeArgs a;
  a.planes = buf;
  a.out = buf;
  a.count = 16;
  a.plane_stride = 16;
  a.word_bytes = 2;
  a.rotate_bits = 1;
  EXPECT_TRUE(ValidateBytePlaneMerge(a).ok());
  a.word_bytes = 3;
  EXPECT_EQ(ValidateBytePlaneMerge(a).code(), Code::kUnsupported);
  a.word_bytes = 2;
  a.rotate_bits = 16;
  EXPECT_EQ(ValidateBytePlaneMerge(a).code(), Code::kInvalidArgument);
  a.rotate_bits = 0;
  a.plane_stride = 15;
  EXPECT_EQ(ValidateBytePlaneMerge(a).code(), Code::kInvalidArgument);
}

#ifndef HCT_WITH_CUDA
TEST(KernelArgs, LaunchWithoutCudaIsUnsupported) {
  EXPECT_EQ(LaunchDctqDecode(GoodArgs(), nullptr).code(), Code::kUnsupported);
}
#endif

}  // namespace
}  // namespace hct
