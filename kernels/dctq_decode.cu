// Fused dequantize + tiled 2-D inverse DCT + conversion ("dctq-zstd", transform kDct), and the
// public LaunchDctqDecode dispatcher. Design and measurements: docs/kernels.md.
//
// Fast path (square tiles 8, 16, 32): a block of 256 threads owns one band of T rows x 256
// columns. Pass 1: thread j loads its column's T symbols (coalesced across the warp), runs the
// T-point inverse DCT down the column in registers and stores the T floats to a swizzled
// shared tile. Pass 2: thread (i, tj) reads row i of tile tj (float4 loads, conflict-free),
// runs the T-point inverse DCT along the row, scales, converts and writes T outputs with
// 16-byte streaming stores; a warp writes whole consecutive rows of output.
// Generic path (any tile up to 64 x 64, and the edge tiles of the fast path): one block per
// tile, basis computed in shared memory, two plain matrix products.
#include <algorithm>
#include <type_traits>

#include "kernels/detail/dct_math.h"
#include "kernels/detail/gpu_common.cuh"

namespace hct::detail {
namespace {

constexpr int kFastWidth = 256;  // columns (and threads) per fast-path block
constexpr int kGenericThreads = 128;

template <int T, class Sym, class Out>
__global__ void __launch_bounds__(kFastWidth)
    DctFastKernel(const Sym* __restrict__ sym, Out* __restrict__ out, uint64_t cols,
                  uint32_t cols_full, uint32_t col_blocks, float scale, bool vec) {
  __shared__ float4 tile_f4[T * kFastWidth / 4];
  float* tile_f = reinterpret_cast<float*>(tile_f4);
  const uint32_t band = blockIdx.x / col_blocks;
  const uint32_t cb = blockIdx.x - band * col_blocks;
  const int tid = threadIdx.x;
  const uint64_t band_row0 = uint64_t(band) * T;

  // Pass 1: inverse DCT down each column of the band.
  const uint32_t col = cb * kFastWidth + tid;
  if (col < cols_full) {
    const Sym* src = sym + band_row0 * cols + col;
    float c[T], y[T];
#pragma unroll
    for (int i = 0; i < T; ++i) c[i] = float(__ldcs(src + i * cols));
    IdctUnscaled<T>(c, y);
    const int phys = PhysF4<T>(tid >> 2) * 4 + (tid & 3);
#pragma unroll
    for (int i = 0; i < T; ++i) tile_f[i * kFastWidth + phys] = y[i];
  }
  __syncthreads();

  // Pass 2: inverse DCT along each tile row, then scale, convert and store.
  constexpr int kTilesPerRow = kFastWidth / T;
  const int tj = tid % kTilesPerRow;
  const int i = tid / kTilesPerRow;
  const uint32_t col0 = cb * kFastWidth + tj * T;
  if (col0 < cols_full) {
    float r[T], x[T];
#pragma unroll
    for (int m = 0; m < T / 4; ++m) {
      float4 v = tile_f4[i * (kFastWidth / 4) + PhysF4<T>(tj * (T / 4) + m)];
      r[4 * m] = v.x;
      r[4 * m + 1] = v.y;
      r[4 * m + 2] = v.z;
      r[4 * m + 3] = v.w;
    }
    IdctUnscaled<T>(r, x);
    StoreScaled<T>(out + (band_row0 + i) * cols + col0, x, scale, vec);
  }
}

// Orthonormal DCT-III basis entry a_k cos(pi (2i+1) k / 2n), in double, rounded once.
__device__ __forceinline__ float BasisEntry(int n, int i, int k) {
  const int p = ((2 * i + 1) * k) % (4 * n);
  const double a = k == 0 ? sqrt(1.0 / n) : sqrt(2.0 / n);
  return float(a * cospi(double(p) / double(2 * n)));
}

// One tile at a time (grid-stride over the tiles of the rectangle [tr0, tr0+ntr) x
// [tc0, tc0+ntc) of the chunk's tile grid). Shared memory: coefficients, the intermediate,
// the row basis and the transposed column basis.
template <class Sym, class Out>
__global__ void __launch_bounds__(kGenericThreads)
    DctGenericKernel(const Sym* __restrict__ sym, Out* __restrict__ out, uint64_t nrows,
                     uint64_t cols, int tile_r, int tile_c, uint64_t tr0, uint64_t tc0,
                     uint64_t ntr, uint64_t ntc, float step) {
  extern __shared__ float sm[];
  float* coef = sm;
  float* tmp = coef + tile_r * tile_c;
  float* br = tmp + tile_r * tile_c;  // br[i * nr + k]
  float* bct = br + tile_r * tile_r;  // bct[l * nc + j] = basis_nc(j, l)
  int have_nr = 0, have_nc = 0;
  const int tid = threadIdx.x;
  for (uint64_t t = blockIdx.x; t < ntr * ntc; t += gridDim.x) {
    const uint64_t r0 = (tr0 + t / ntc) * tile_r;
    const uint64_t c0 = (tc0 + t % ntc) * tile_c;
    const int nr = int(min(uint64_t(tile_r), nrows - r0));
    const int nc = int(min(uint64_t(tile_c), cols - c0));
    __syncthreads();  // the previous tile is done with every buffer
    if (nr != have_nr || nc != have_nc) {  // uniform across the block
      for (int idx = tid; idx < nr * nr; idx += kGenericThreads) {
        br[idx] = BasisEntry(nr, idx / nr, idx % nr);
      }
      for (int idx = tid; idx < nc * nc; idx += kGenericThreads) {
        bct[idx] = BasisEntry(nc, idx % nc, idx / nc);
      }
      have_nr = nr;
      have_nc = nc;
    }
    for (int idx = tid; idx < nr * nc; idx += kGenericThreads) {
      const int k = idx / nc, l = idx % nc;
      coef[idx] = float(sym[(r0 + k) * cols + c0 + l]) * step;
    }
    __syncthreads();
    for (int idx = tid; idx < nr * nc; idx += kGenericThreads) {
      const int i = idx / nc, l = idx % nc;
      float s = 0.0f;
      for (int k = 0; k < nr; ++k) s = fmaf(br[i * nr + k], coef[k * nc + l], s);
      tmp[idx] = s;
    }
    __syncthreads();
    for (int idx = tid; idx < nr * nc; idx += kGenericThreads) {
      const int i = idx / nc, j = idx % nc;
      float s = 0.0f;
      for (int l = 0; l < nc; ++l) s = fmaf(bct[l * nc + j], tmp[i * nc + l], s);
      out[(r0 + i) * cols + c0 + j] = ConvertRn<Out>(s);
    }
  }
}

template <class Sym, class Out>
Status LaunchGeneric(const DctqDecodeArgs& a, const Sym* sym, Out* out, uint64_t tr0,
                     uint64_t ntr, uint64_t tc0, uint64_t ntc, cudaStream_t stream) {
  if (ntr == 0 || ntc == 0) return Status::OK();
  const int tr = int(a.tile_rows), tc = int(a.tile_cols);
  const size_t smem = sizeof(float) * size_t(2 * tr * tc + tr * tr + tc * tc);
  if (smem > 48 * 1024) {
    HCT_CHECK(cuda, cudaFuncSetAttribute(DctGenericKernel<Sym, Out>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(smem)));
  }
  const uint64_t tiles = ntr * ntc;
  const unsigned grid = unsigned(std::min<uint64_t>(tiles, uint64_t(1) << 20));
  DctGenericKernel<Sym, Out><<<grid, kGenericThreads, smem, stream>>>(
      sym, out, a.row_end - a.row_begin, a.cols, tr, tc, tr0, tc0, ntr, ntc, a.step);
  HCT_CHECK(cuda, cudaGetLastError());
  return Status::OK();
}

template <int T, class Sym, class Out>
Status LaunchFast(const DctqDecodeArgs& a, const Sym* sym, Out* out, uint64_t bands,
                  cudaStream_t stream) {
  const uint64_t cols_full = a.cols / T * T;
  const uint32_t col_blocks = uint32_t((cols_full + kFastWidth - 1) / kFastWidth);
  const bool vec = Aligned16(out) && (a.cols * sizeof(Out)) % 16 == 0;
  const float scale = a.step * (2.0f / float(T));  // sqrt(2/T) per pass, and the step
  // Keep each launch's grid within 2^31 - 1 blocks.
  const uint64_t max_bands = ((uint64_t(1) << 31) - 1) / col_blocks;
  for (uint64_t b0 = 0; b0 < bands; b0 += max_bands) {
    const uint64_t nb = std::min(bands - b0, max_bands);
    DctFastKernel<T, Sym, Out><<<unsigned(nb * col_blocks), kFastWidth, 0, stream>>>(
        sym + b0 * T * a.cols, out + b0 * T * a.cols, a.cols, uint32_t(cols_full), col_blocks,
        scale, vec);
    HCT_CHECK(cuda, cudaGetLastError());
  }
  return Status::OK();
}

template <class Sym, class Out>
Status LaunchDctTyped(const DctqDecodeArgs& a, cudaStream_t stream) {
  const Sym* sym = static_cast<const Sym*>(a.symbols);
  Out* out = static_cast<Out*>(a.out) + a.row_begin * a.cols;
  const uint64_t nrows = a.row_end - a.row_begin;
  const uint64_t tr = a.tile_rows, tc = a.tile_cols;
  const uint64_t tile_grid_r = (nrows + tr - 1) / tr, tile_grid_c = (a.cols + tc - 1) / tc;
  const uint64_t full_bands = nrows / tr, full_tcols = a.cols / tc;
  const bool fast = tr == tc && (tr == 8 || tr == 16 || tr == 32) && full_bands > 0 &&
                    full_tcols > 0 && a.cols < (uint64_t(1) << 31);
  if (!fast) return LaunchGeneric(a, sym, out, 0, tile_grid_r, 0, tile_grid_c, stream);
  HCT_RETURN_IF_ERROR(tr == 8    ? LaunchFast<8>(a, sym, out, full_bands, stream)
                      : tr == 16 ? LaunchFast<16>(a, sym, out, full_bands, stream)
                                 : LaunchFast<32>(a, sym, out, full_bands, stream));
  // Edge tiles: the right strip of narrower tiles, then the last, shorter tile-row.
  HCT_RETURN_IF_ERROR(LaunchGeneric(a, sym, out, 0, full_bands, full_tcols,
                                    tile_grid_c - full_tcols, stream));
  return LaunchGeneric(a, sym, out, full_bands, tile_grid_r - full_bands, 0, tile_grid_c,
                       stream);
}

}  // namespace

Status LaunchDctTiles(const DctqDecodeArgs& a, cudaStream_t stream) {
  const bool i16 = a.symbol_type == DType::kI16;
  switch (a.out_type) {
    case DType::kBF16:
      return i16 ? LaunchDctTyped<int16_t, __nv_bfloat16>(a, stream)
                 : LaunchDctTyped<int8_t, __nv_bfloat16>(a, stream);
    case DType::kF16:
      return i16 ? LaunchDctTyped<int16_t, __half>(a, stream)
                 : LaunchDctTyped<int8_t, __half>(a, stream);
    default:
      return i16 ? LaunchDctTyped<int16_t, float>(a, stream)
                 : LaunchDctTyped<int8_t, float>(a, stream);
  }
}

}  // namespace hct::detail

namespace hct {

Status LaunchDctqDecode(const DctqDecodeArgs& a, GpuStream stream) {
  HCT_RETURN_IF_ERROR(ValidateDctqDecode(a));
  if (a.row_begin == a.row_end || a.cols == 0) return Status::OK();
  if (a.transform == GpuTransform::kNone) return detail::LaunchDequantIdentity(a, stream);
  return detail::LaunchDctTiles(a, stream);
}

}  // namespace hct
