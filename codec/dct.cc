// Tiled orthonormal DCT in matrix form (codec/detail/dct.h). Measured faster than FFTW's
// REDFT10/01 for 8/16/32-point tiles (bench/bench_codec.cc --dct-bench), and it is what the GPU
// kernel does too: the same basis, float32 accumulation.
#include "codec/detail/dct.h"

#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <numbers>
#include <vector>

// x86-64: an AVX2+FMA clone of the hot loops, picked at load time (results stay deterministic
// per machine; across machines they may differ in the last float bit, like any FMA use).
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HCT_DCT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HCT_DCT_CLONES
#endif

namespace hct::detail {
namespace {

struct Tables {
  std::array<std::vector<float>, kMaxTile + 1> c, ct;
  Tables() {
    for (int n = 1; n <= kMaxTile; ++n) {
      c[n].resize(n * n);
      ct[n].resize(n * n);
      for (int k = 0; k < n; ++k) {
        const double ck = k == 0 ? std::sqrt(1.0 / n) : std::sqrt(2.0 / n);
        for (int i = 0; i < n; ++i) {
          const float v =
              static_cast<float>(ck * std::cos(std::numbers::pi * (2 * i + 1) * k / (2.0 * n)));
          c[n][k * n + i] = v;
          ct[n][i * n + k] = v;
        }
      }
    }
  }
};

const Tables& GetTables() {
  static const Tables t;
  return t;
}

// out[a] = sum_b m[a][b] in[b] for one w-long segment; mt = transpose of m (row b contiguous).
// Written with 8-float vectors (GCC/Clang vector extensions): the auto-vectorizer otherwise
// vectorizes across tiles with shuffles and runs several times slower.
typedef float V8 __attribute__((vector_size(32)));

inline V8 LoadV8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <int W>
inline void SegmentFixed(float* __restrict x, const float* __restrict mt) {
  constexpr int kV = W / 8;
  V8 acc[kV];
  for (int v = 0; v < kV; ++v) acc[v] = x[0] * LoadV8(mt + 8 * v);
  for (int b = 1; b < W; ++b) {
    const float xb = x[b];
    for (int v = 0; v < kV; ++v) acc[v] += xb * LoadV8(mt + b * W + 8 * v);
  }
  std::memcpy(x, acc, sizeof(acc));
}

inline void Segment(float* __restrict x, const float* __restrict mt, int n) {
  float acc[kMaxTile] = {};
  for (int b = 0; b < n; ++b) {
    const float xv = x[b];
    const float* row = mt + b * n;
    for (int a = 0; a < n; ++a) acc[a] += xv * row[a];
  }
  std::memcpy(x, acc, sizeof(float) * n);
}

template <int W>
inline void HorizontalRow(float* row, uint64_t full_tiles, const float* mt) {
  for (uint64_t t = 0; t < full_tiles; ++t) SegmentFixed<W>(row + t * W, mt);
}

}  // namespace

const float* DctMatrix(int n) { return GetTables().c[n].data(); }
const float* DctMatrixT(int n) { return GetTables().ct[n].data(); }

HCT_DCT_CLONES
static void HorizontalPass(float* band, int h, uint64_t cols, int tile_c, bool inverse) {
  const Tables& tb = GetTables();
  // Forward row transform z = C x needs mt = C^T; inverse x = C^T z needs mt = C.
  const float* mt = inverse ? tb.c[tile_c].data() : tb.ct[tile_c].data();
  const uint64_t full = cols / tile_c;
  const int rest = static_cast<int>(cols - full * tile_c);
  const float* mt_rest = rest ? (inverse ? tb.c[rest].data() : tb.ct[rest].data()) : nullptr;
  for (int i = 0; i < h; ++i) {
    float* row = band + static_cast<uint64_t>(i) * cols;
    switch (tile_c) {
      case 8: HorizontalRow<8>(row, full, mt); break;
      case 16: HorizontalRow<16>(row, full, mt); break;
      case 32: HorizontalRow<32>(row, full, mt); break;
      default:
        for (uint64_t t = 0; t < full; ++t) Segment(row + t * tile_c, mt, tile_c);
    }
    if (rest) Segment(row + full * tile_c, mt_rest, rest);
  }
}

HCT_DCT_CLONES
static void VerticalPass(float* band, int h, uint64_t cols, bool inverse, float* scratch) {
  const Tables& tb = GetTables();
  const float* m = inverse ? tb.ct[h].data() : tb.c[h].data();
  // scratch[u][:] = sum_i m[u][i] band[i][:], vectorised along the row.
  for (int u = 0; u < h; ++u) {
    float* out = scratch + static_cast<uint64_t>(u) * cols;
    const float m0 = m[u * h];
    for (uint64_t j = 0; j < cols; ++j) out[j] = m0 * band[j];
    for (int i = 1; i < h; ++i) {
      const float mi = m[u * h + i];
      const float* in = band + static_cast<uint64_t>(i) * cols;
      for (uint64_t j = 0; j < cols; ++j) out[j] += mi * in[j];
    }
  }
  std::memcpy(band, scratch, sizeof(float) * h * cols);
}

void DctBand(float* band, int h, uint64_t cols, int tile_c, bool inverse, float* scratch) {
  if (!inverse) {
    HorizontalPass(band, h, cols, tile_c, false);
    if (h > 1) VerticalPass(band, h, cols, false, scratch);
  } else {
    if (h > 1) VerticalPass(band, h, cols, true, scratch);
    HorizontalPass(band, h, cols, tile_c, true);
  }
}

void DctTiled(float* x, uint64_t rows, uint64_t cols, int tile_r, int tile_c, bool inverse) {
  std::vector<float> scratch(static_cast<size_t>(tile_r) * cols);
  for (uint64_t r = 0; r < rows; r += tile_r) {
    const int h = static_cast<int>(std::min<uint64_t>(tile_r, rows - r));
    DctBand(x + r * cols, h, cols, tile_c, inverse, scratch.data());
  }
}

}  // namespace hct::detail
