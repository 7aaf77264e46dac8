// Lossless "bytesplit-zstd" decode on the GPU: re-interleaves byte planes into elements and
// undoes the encoder's bit rotation, bit-exact (integer operations only).
// Plane 0 holds the most significant byte (include/hct/kernels.h). Vector path (2- and 4-byte
// words, 16-byte aligned planes and output): a thread takes 16 bytes from each plane,
// interleaves them with byte permutes and writes 16 words. The kernels below take the planes
// least significant first (b0 = byte 0 of each word); the launcher maps plane order to that.
#include <algorithm>

#include "kernels/detail/gpu_common.cuh"
#include "kernels/detail/plane_merge.cuh"

namespace hct::detail {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    Merge2VecKernel(const uint4* __restrict__ b0p, const uint4* __restrict__ b1p,
                    uint4* __restrict__ out, uint64_t groups, uint32_t rot) {
  for (uint64_t g = uint64_t(blockIdx.x) * kThreads + threadIdx.x; g < groups;
       g += uint64_t(gridDim.x) * kThreads) {
    uint4 o0, o1;
    Interleave2x16(__ldcs(b0p + g), __ldcs(b1p + g), rot, &o0, &o1);
    __stcs(out + 2 * g, o0);
    __stcs(out + 2 * g + 1, o1);
  }
}

__global__ void __launch_bounds__(kThreads)
    Merge4VecKernel(const uint4* __restrict__ b0p, const uint4* __restrict__ b1p,
                    const uint4* __restrict__ b2p, const uint4* __restrict__ b3p,
                    uint4* __restrict__ out, uint64_t groups, uint32_t rot) {
  for (uint64_t g = uint64_t(blockIdx.x) * kThreads + threadIdx.x; g < groups;
       g += uint64_t(gridDim.x) * kThreads) {
    const uint4 a = __ldcs(b0p + g), b = __ldcs(b1p + g), c = __ldcs(b2p + g),
               d = __ldcs(b3p + g);
    const uint32_t b0[4] = {a.x, a.y, a.z, a.w}, b1[4] = {b.x, b.y, b.z, b.w};
    const uint32_t b2[4] = {c.x, c.y, c.z, c.w}, b3[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      // Byte j of each plane -> word 4k + j.
      const uint32_t x01l = __byte_perm(b0[k], b1[k], 0x5140);  // p0b0 p1b0 p0b1 p1b1
      const uint32_t x23l = __byte_perm(b2[k], b3[k], 0x5140);
      const uint32_t x01h = __byte_perm(b0[k], b1[k], 0x7362);  // p0b2 p1b2 p0b3 p1b3
      const uint32_t x23h = __byte_perm(b2[k], b3[k], 0x7362);
      uint4 e;
      e.x = __byte_perm(x01l, x23l, 0x5410);
      e.y = __byte_perm(x01l, x23l, 0x7632);
      e.z = __byte_perm(x01h, x23h, 0x5410);
      e.w = __byte_perm(x01h, x23h, 0x7632);
      e.x = __funnelshift_r(e.x, e.x, rot);
      e.y = __funnelshift_r(e.y, e.y, rot);
      e.z = __funnelshift_r(e.z, e.z, rot);
      e.w = __funnelshift_r(e.w, e.w, rot);
      __stcs(out + 4 * g + k, e);
    }
  }
}

// Any element size, one element per thread; also the tails of the vector path.
__global__ void __launch_bounds__(kThreads)
    MergeScalarKernel(const uint8_t* __restrict__ planes, uint64_t plane_stride,
                      uint8_t* __restrict__ out, uint64_t first, uint64_t n, uint32_t bytes,
                      uint32_t rot) {
  for (uint64_t i = uint64_t(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += uint64_t(gridDim.x) * kThreads) {
    const uint64_t e = first + i;
    uint64_t w = 0;
    for (uint32_t p = 0; p < bytes; ++p) {
      w |= uint64_t(planes[p * plane_stride + e]) << (8 * (bytes - 1 - p));
    }
    const uint32_t bits = 8 * bytes;
    if (rot != 0) {
      const uint64_t mask = bits == 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
      w = ((w >> rot) | (w << (bits - rot))) & mask;
    }
    for (uint32_t p = 0; p < bytes; ++p) out[e * bytes + p] = uint8_t(w >> (8 * p));
  }
}

unsigned GridFor(uint64_t work_items) {
  return unsigned(std::max<uint64_t>(
      1, std::min<uint64_t>((work_items + kThreads - 1) / kThreads, uint64_t(1) << 20)));
}

}  // namespace
}  // namespace hct::detail

namespace hct {

Status LaunchBytePlaneMerge(const BytePlaneMergeArgs& a, GpuStream stream) {
  using detail::kThreads;
  HCT_RETURN_IF_ERROR(ValidateBytePlaneMerge(a));
  if (a.count == 0) return Status::OK();
  const auto* planes = static_cast<const uint8_t*>(a.planes);
  auto* out = static_cast<uint8_t*>(a.out);
  const bool aligned = detail::Aligned16(planes) && a.plane_stride % 16 == 0 &&
                       detail::Aligned16(out);
  uint64_t done = 0;
  if (aligned && a.count >= 16 && (a.word_bytes == 2 || a.word_bytes == 4)) {
    const uint64_t groups = a.count / 16;
    const auto* p = reinterpret_cast<const uint4*>(planes);
    const uint64_t s = a.plane_stride / 16;
    if (a.word_bytes == 2) {
      detail::Merge2VecKernel<<<detail::GridFor(groups), kThreads, 0, stream>>>(
          p + s, p, reinterpret_cast<uint4*>(out), groups, a.rotate_bits);
    } else {
      detail::Merge4VecKernel<<<detail::GridFor(groups), kThreads, 0, stream>>>(
          p + 3 * s, p + 2 * s, p + s, p, reinterpret_cast<uint4*>(out), groups, a.rotate_bits);
    }
    HCT_CHECK(cuda, cudaGetLastError());
    done = groups * 16;
  }
  if (done < a.count) {
    detail::MergeScalarKernel<<<detail::GridFor(a.count - done), kThreads, 0, stream>>>(
        planes, a.plane_stride, out, done, a.count - done, a.word_bytes, a.rotate_bits);
    HCT_CHECK(cuda, cudaGetLastError());
  }
  return Status::OK();
}

}  // namespace hct
