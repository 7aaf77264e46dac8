// Argument checks and host helpers of the "bf16-huff" GPU decode (include/hct/kernels.h);
// compiled with and without CUDA. Builds without CUDA also get launchers that say kUnsupported.
#include <string>

#include "codec/detail/bf16_huff.h"
#include "hct/kernels.h"

namespace hct {
namespace {

std::string U(uint64_t v) { return std::to_string(v); }

}  // namespace

Status ValidateBf16Merge(const Bf16MergeArgs& a) {
  if (a.count == 0) return Status::OK();
  if (!a.exponents || !a.rest || !a.out)
    return Status::InvalidArgument("bf16 merge: null exponents, rest or output pointer");
  if (reinterpret_cast<uintptr_t>(a.out) % 2)
    return Status::InvalidArgument("bf16 merge: output not 2-byte aligned");
  if (a.count > (uint64_t(1) << 60))
    return Status::OutOfRange("bf16 merge: " + U(a.count) + " elements too large");
  return Status::OK();
}

Status ValidateBf16MergeBatch(const Bf16MergeBatchArgs& a) {
  if (a.count == 0 || a.max_count == 0) return Status::OK();
  if (a.count > 65535) return Status::OutOfRange("bf16 merge batch: " + U(a.count) + " chunks");
  if (a.max_count > (uint64_t(1) << 60))
    return Status::OutOfRange("bf16 merge batch: " + U(a.max_count) + " elements in one chunk");
  if (!a.chunks) return Status::InvalidArgument("bf16 merge batch: null descriptor array");
  return Status::OK();
}

uint64_t Bf16HuffWorkspaceBytes(uint64_t elements) { return (elements + 15) / 16 * 16; }

Status DescribeBf16HuffChunk(const void* payload, uint64_t payload_bytes, uint64_t elements,
                             void* exponents, void* out, HuffChunk* huff, Bf16MergeChunk* merge) {
  const uint64_t exp_off = detail::Bf16HuffExpOffset(elements);
  if (elements == 0 || elements >= (uint64_t(1) << 32) || payload_bytes <= exp_off)
    return Status::Corruption("bf16-huff payload of " + U(payload_bytes) + " bytes cannot hold " +
                              U(elements) + " elements");
  const auto* p = static_cast<const std::byte*>(payload);
  *huff = HuffChunk{p + exp_off, payload_bytes - exp_off, elements, exponents};
  *merge = Bf16MergeChunk{exponents, p + detail::kBf16HuffRestOffset, elements, out};
  return Status::OK();
}

Status ValidateBf16HuffDecode(const Bf16HuffDecodeArgs& a) {
  if (a.elements == 0) return Status::OK();
  if (a.elements >= (uint64_t(1) << 32))
    return Status::OutOfRange("bf16-huff decode: " + U(a.elements) + " elements in one chunk");
  if (!a.payload || !a.workspace || !a.out)
    return Status::InvalidArgument("bf16-huff decode: null payload, workspace or output");
  if (reinterpret_cast<uintptr_t>(a.payload) % 4 || reinterpret_cast<uintptr_t>(a.out) % 2)
    return Status::InvalidArgument("bf16-huff decode: payload (4) or output (2) misaligned");
  if (a.workspace_bytes < Bf16HuffWorkspaceBytes(a.elements))
    return Status::InvalidArgument("bf16-huff decode: workspace of " + U(a.workspace_bytes) +
                                   " bytes, need " + U(Bf16HuffWorkspaceBytes(a.elements)));
  if (a.payload_bytes <= detail::Bf16HuffExpOffset(a.elements))
    return Status::OutOfRange("bf16-huff decode: payload of " + U(a.payload_bytes) +
                              " bytes too small for " + U(a.elements) + " elements");
  HuffDecodeArgs h;
  h.payload = a.payload;
  h.symbols = a.elements;
  h.substream = a.substream;
  h.out = a.workspace;
  return ValidateHuffDecode(h);
}

#ifndef HCT_WITH_CUDA
Status LaunchBf16Merge(const Bf16MergeArgs& a, GpuStream) {
  HCT_RETURN_IF_ERROR(ValidateBf16Merge(a));
  return Status::Unsupported("bf16 merge: built without CUDA");
}
Status LaunchBf16MergeBatch(const Bf16MergeBatchArgs& a, GpuStream) {
  HCT_RETURN_IF_ERROR(ValidateBf16MergeBatch(a));
  return Status::Unsupported("bf16 merge batch: built without CUDA");
}
Status LaunchBf16HuffDecode(const Bf16HuffDecodeArgs& a, GpuStream) {
  HCT_RETURN_IF_ERROR(ValidateBf16HuffDecode(a));
  return Status::Unsupported("bf16-huff decode: built without CUDA");
}
#endif

}  // namespace hct
