// kernels/detail/gpu_common.cuh: device helpers shared by the decode kernels (CUDA only).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "hct/detail/check_cuda.h"
#include "hct/kernels.h"

namespace hct::detail {

// Output element types, and float -> Out with round-to-nearest-even.
template <class Out>
__device__ __forceinline__ Out ConvertRn(float v);
template <>
__device__ __forceinline__ float ConvertRn<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 ConvertRn<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half ConvertRn<__half>(float v) {
  return __float2half_rn(v);
}

// Two floats -> two packed 16-bit values (a in the low half), one F2FP instruction.
template <class Out>
__device__ __forceinline__ uint32_t Pack2Rn(float a, float b);
template <>
__device__ __forceinline__ uint32_t Pack2Rn<__nv_bfloat16>(float a, float b) {
  __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  uint32_t u;
  memcpy(&u, &h, 4);
  return u;
}
template <>
__device__ __forceinline__ uint32_t Pack2Rn<__half>(float a, float b) {
  __half2 h = __floats2half2_rn(a, b);
  uint32_t u;
  memcpy(&u, &h, 4);
  return u;
}

// Writes N consecutive values (N a multiple of 8) of v * scale to dst. `vec`: dst is 16-byte
// aligned, so whole 16-byte streaming stores are used.
template <int N, class Out>
__device__ __forceinline__ void StoreScaled(Out* dst, const float* v, float scale, bool vec) {
  static_assert(N % 8 == 0);
  if (vec) {
    if constexpr (sizeof(Out) == 4) {
#pragma unroll
      for (int k = 0; k < N; k += 4) {
        __stcs(reinterpret_cast<float4*>(dst + k),
               make_float4(v[k] * scale, v[k + 1] * scale, v[k + 2] * scale, v[k + 3] * scale));
      }
    } else {
#pragma unroll
      for (int k = 0; k < N; k += 8) {
        uint4 w;
        w.x = Pack2Rn<Out>(v[k] * scale, v[k + 1] * scale);
        w.y = Pack2Rn<Out>(v[k + 2] * scale, v[k + 3] * scale);
        w.z = Pack2Rn<Out>(v[k + 4] * scale, v[k + 5] * scale);
        w.w = Pack2Rn<Out>(v[k + 6] * scale, v[k + 7] * scale);
        __stcs(reinterpret_cast<uint4*>(dst + k), w);
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) dst[k] = ConvertRn<Out>(v[k] * scale);
  }
}

inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Per-kernel launchers behind LaunchDctqDecode (arguments already validated, non-empty).
Status LaunchDctTiles(const DctqDecodeArgs& a, cudaStream_t stream);
Status LaunchDequantIdentity(const DctqDecodeArgs& a, cudaStream_t stream);

}  // namespace hct::detail
