// Identity-transform decode ("dctq-zstd", transform kNone): out = RNE(float(q) * step).
// The rows of a chunk are contiguous, so this is an elementwise pass over
// (row_end - row_begin) * cols elements: 8 per thread with vector loads and 16-byte streaming
// stores when both sides are aligned, one per thread otherwise.
#include <algorithm>

#include "kernels/detail/gpu_common.cuh"

namespace hct::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 8;

template <class Sym>
__device__ __forceinline__ void Load8(const Sym* p, float* v) {
  if constexpr (sizeof(Sym) == 1) {
    const uint2 w = __ldcs(reinterpret_cast<const uint2*>(p));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[k] = float(int8_t(w.x >> (8 * k)));
      v[4 + k] = float(int8_t(w.y >> (8 * k)));
    }
  } else {
    const uint4 w = __ldcs(reinterpret_cast<const uint4*>(p));
    const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[2 * k] = float(int16_t(u[k] & 0xffff));
      v[2 * k + 1] = float(int16_t(u[k] >> 16));
    }
  }
}

template <class Sym, class Out>
__global__ void __launch_bounds__(kThreads)
    DequantVecKernel(const Sym* __restrict__ sym, Out* __restrict__ out, uint64_t groups,
                     float step) {
  for (uint64_t g = uint64_t(blockIdx.x) * kThreads + threadIdx.x; g < groups;
       g += uint64_t(gridDim.x) * kThreads) {
    float v[kPerThread];
    Load8(sym + g * kPerThread, v);
    // The scale is applied inside StoreScaled: one multiply per element, as the CPU decoder.
    StoreScaled<kPerThread>(out + g * kPerThread, v, step, true);
  }
}

template <class Sym, class Out>
__global__ void __launch_bounds__(kThreads)
    DequantScalarKernel(const Sym* __restrict__ sym, Out* __restrict__ out, uint64_t n,
                        float step) {
  for (uint64_t e = uint64_t(blockIdx.x) * kThreads + threadIdx.x; e < n;
       e += uint64_t(gridDim.x) * kThreads) {
    out[e] = ConvertRn<Out>(float(sym[e]) * step);
  }
}

unsigned GridFor(uint64_t work_items) {
  return unsigned(std::max<uint64_t>(
      1, std::min<uint64_t>((work_items + kThreads - 1) / kThreads, uint64_t(1) << 20)));
}

template <class Sym, class Out>
Status LaunchTyped(const DctqDecodeArgs& a, cudaStream_t stream) {
  const Sym* sym = static_cast<const Sym*>(a.symbols);
  Out* out = static_cast<Out*>(a.out) + a.row_begin * a.cols;
  const uint64_t n = (a.row_end - a.row_begin) * a.cols;
  const bool vec = Aligned16(out) &&
                   (reinterpret_cast<uintptr_t>(sym) % (kPerThread * sizeof(Sym))) == 0;
  const uint64_t groups = vec ? n / kPerThread : 0;
  if (groups > 0) {
    DequantVecKernel<Sym, Out><<<GridFor(groups), kThreads, 0, stream>>>(sym, out, groups,
                                                                          a.step);
    HCT_CHECK(cuda, cudaGetLastError());
  }
  const uint64_t done = groups * kPerThread;
  if (done < n) {
    DequantScalarKernel<Sym, Out><<<GridFor(n - done), kThreads, 0, stream>>>(
        sym + done, out + done, n - done, a.step);
    HCT_CHECK(cuda, cudaGetLastError());
  }
  return Status::OK();
}

}  // namespace

Status LaunchDequantIdentity(const DctqDecodeArgs& a, cudaStream_t stream) {
  const bool i16 = a.symbol_type == DType::kI16;
  switch (a.out_type) {
    case DType::kBF16:
      return i16 ? LaunchTyped<int16_t, __nv_bfloat16>(a, stream)
                 : LaunchTyped<int8_t, __nv_bfloat16>(a, stream);
    case DType::kF16:
      return i16 ? LaunchTyped<int16_t, __half>(a, stream)
                 : LaunchTyped<int8_t, __half>(a, stream);
    default:
      return i16 ? LaunchTyped<int16_t, float>(a, stream) : LaunchTyped<int8_t, float>(a, stream);
  }
}

}  // namespace hct::detail
