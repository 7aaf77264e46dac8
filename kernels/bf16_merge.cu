// "bf16-huff" decode on the GPU (include/hct/kernels.h, docs/hct-format.md §5.5): the exponent
// plane comes out of the Huffman kernel (kernels/huff_decode.cu) into scratch, then this merge
// interleaves it with the payload's raw sign + mantissa plane into BF16 words, bit-exact.
// Vector path (exponents, rest and out 16-byte aligned): a thread reads 16 bytes of each plane
// and writes 32 bytes of output; everything else one element per thread. CPU reference:
// hct::detail::Bf16MergePlanes (codec/codec_bf16_huff.cc).
#include <algorithm>

#include "codec/detail/bf16_huff.h"
#include "kernels/detail/gpu_common.cuh"
#include "kernels/detail/plane_merge.cuh"

namespace hct::detail {
namespace {

constexpr int kThreads = 256;
constexpr uint32_t kMaxBlocksPerChunk = 256;  // grid-stride beyond this

// Merges chunk c with `nthreads` threads, this one being `t`.
__device__ __forceinline__ void MergeChunk(const Bf16MergeChunk& c, uint64_t t, uint64_t nthreads) {
  const auto* e = static_cast<const uint8_t*>(c.exponents);
  const auto* r = static_cast<const uint8_t*>(c.rest);
  auto* o = static_cast<uint16_t*>(c.out);
  const bool vec = ((reinterpret_cast<uintptr_t>(e) | reinterpret_cast<uintptr_t>(r) |
                     reinterpret_cast<uintptr_t>(o)) &
                    15) == 0;
  const uint64_t groups = vec ? c.count / 16 : 0;
  for (uint64_t g = t; g < groups; g += nthreads) {
    uint4 o0, o1;
    Interleave2x16(__ldcs(reinterpret_cast<const uint4*>(r) + g),
                   __ldcs(reinterpret_cast<const uint4*>(e) + g), 1, &o0, &o1);
    __stcs(reinterpret_cast<uint4*>(o) + 2 * g, o0);
    __stcs(reinterpret_cast<uint4*>(o) + 2 * g + 1, o1);
  }
  for (uint64_t i = groups * 16 + t; i < c.count; i += nthreads) {
    const uint32_t w = uint32_t(e[i]) << 8 | r[i];
    o[i] = uint16_t((w >> 1) | (w << 15));
  }
}

__global__ void __launch_bounds__(kThreads) Bf16MergeKernel(Bf16MergeChunk c) {
  MergeChunk(c, uint64_t(blockIdx.x) * kThreads + threadIdx.x, uint64_t(gridDim.x) * kThreads);
}

__global__ void __launch_bounds__(kThreads)
    Bf16MergeBatchKernel(const Bf16MergeChunk* __restrict__ chunks, uint64_t max_count,
                         uint32_t* error) {
  const Bf16MergeChunk c = chunks[blockIdx.y];
  if (c.count == 0) return;
  if (c.count > max_count || !c.exponents || !c.rest || !c.out ||
      reinterpret_cast<uintptr_t>(c.out) % 2) {
    if (threadIdx.x == 0 && blockIdx.x == 0 && error) atomicOr(error, kHuffErrorHeader);
    return;
  }
  MergeChunk(c, uint64_t(blockIdx.x) * kThreads + threadIdx.x, uint64_t(gridDim.x) * kThreads);
}

// Blocks for `count` elements: one 16-element group (or element) per thread, capped.
uint32_t BlocksFor(uint64_t count) {
  const uint64_t items = (count + 15) / 16;
  return uint32_t(std::clamp<uint64_t>((items + kThreads - 1) / kThreads, 1, kMaxBlocksPerChunk));
}

}  // namespace
}  // namespace hct::detail

namespace hct {

Status LaunchBf16Merge(const Bf16MergeArgs& a, GpuStream stream) {
  HCT_RETURN_IF_ERROR(ValidateBf16Merge(a));
  if (a.count == 0) return Status::OK();
  const Bf16MergeChunk c{a.exponents, a.rest, a.count, a.out};
  detail::Bf16MergeKernel<<<detail::BlocksFor(a.count), detail::kThreads, 0, stream>>>(c);
  HCT_CHECK(cuda, cudaGetLastError());
  return Status::OK();
}

Status LaunchBf16MergeBatch(const Bf16MergeBatchArgs& a, GpuStream stream) {
  HCT_RETURN_IF_ERROR(ValidateBf16MergeBatch(a));
  if (a.count == 0 || a.max_count == 0) return Status::OK();
  const dim3 grid(detail::BlocksFor(a.max_count), a.count);
  detail::Bf16MergeBatchKernel<<<grid, detail::kThreads, 0, stream>>>(a.chunks, a.max_count,
                                                                      a.error);
  HCT_CHECK(cuda, cudaGetLastError());
  return Status::OK();
}

Status LaunchBf16HuffDecode(const Bf16HuffDecodeArgs& a, GpuStream stream) {
  HCT_RETURN_IF_ERROR(ValidateBf16HuffDecode(a));
  if (a.elements == 0) return Status::OK();
  HuffChunk h;
  Bf16MergeChunk m;
  HCT_RETURN_IF_ERROR(
      DescribeBf16HuffChunk(a.payload, a.payload_bytes, a.elements, a.workspace, a.out, &h, &m));
  HuffDecodeArgs ha;
  ha.payload = h.payload;
  ha.payload_bytes = h.payload_bytes;
  ha.symbols = h.symbols;
  ha.substream = a.substream;
  ha.out = h.out;
  ha.error = a.error;
  HCT_RETURN_IF_ERROR(LaunchHuffDecode(ha, stream));
  return LaunchBf16Merge({m.exponents, m.rest, m.count, m.out}, stream);
}

}  // namespace hct
