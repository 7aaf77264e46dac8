// kernels/detail/plane_merge.cuh: the 2-byte-word interleave shared by the byte-plane merges
// (kernels/byteplane_merge.cu for bytesplit-zstd, kernels/bf16_merge.cu for bf16-huff).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace hct::detail {

// Rotates each 16-bit half of w right by r (0 <= r < 16).
__device__ __forceinline__ uint32_t RotR16x2(uint32_t w, uint32_t r) {
  if (r == 0) return w;
  const uint32_t lo_mask = (0xffffu >> r) * 0x10001u;
  return ((w >> r) & lo_mask) | ((w << (16 - r)) & ~lo_mask);
}

// 16 low bytes + 16 high bytes -> 16 words rotate_right16(hi << 8 | lo, rot), in two uint4.
__device__ __forceinline__ void Interleave2x16(const uint4& a, const uint4& b, uint32_t rot,
                                               uint4* o0, uint4* o1) {
  const uint32_t lo[4] = {a.x, a.y, a.z, a.w}, hi[4] = {b.x, b.y, b.z, b.w};
  uint32_t w[8];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    w[2 * k] = RotR16x2(__byte_perm(lo[k], hi[k], 0x5140), rot);
    w[2 * k + 1] = RotR16x2(__byte_perm(lo[k], hi[k], 0x7362), rot);
  }
  *o0 = make_uint4(w[0], w[1], w[2], w[3]);
  *o1 = make_uint4(w[4], w[5], w[6], w[7]);
}

}  // namespace hct::detail
