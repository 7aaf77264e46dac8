// Argument checks for the GPU decode launchers; compiled with and without CUDA so that the
// rules are testable anywhere. Builds without CUDA also get launchers that say kUnsupported.
#include <cmath>
#include <string>

#include "hct/kernels.h"

namespace hct {
namespace {

std::string U(uint64_t v) { return std::to_string(v); }

}  // namespace

Status ValidateDctqDecode(const DctqDecodeArgs& a) {
  if (a.symbol_type != DType::kI8 && a.symbol_type != DType::kI16) {
    return Status::Unsupported("dctq decode: symbol type " +
                               std::string(DTypeName(a.symbol_type)) + " (want I8 or I16)");
  }
  if (a.out_type != DType::kBF16 && a.out_type != DType::kF16 && a.out_type != DType::kF32) {
    return Status::Unsupported("dctq decode: output type " + std::string(DTypeName(a.out_type)) +
                               " (want BF16, F16 or F32)");
  }
  if (a.transform != GpuTransform::kNone && a.transform != GpuTransform::kDct) {
    return Status::InvalidArgument("dctq decode: unknown transform " +
                                   std::to_string(int(a.transform)));
  }
  if (a.row_begin > a.row_end || a.row_end > a.rows) {
    return Status::OutOfRange("dctq decode: rows [" + U(a.row_begin) + ", " + U(a.row_end) +
                              ") outside a tensor of " + U(a.rows) + " rows");
  }
  // Element offsets are computed in 64 bits; refuse shapes whose byte size would wrap.
  if (a.cols != 0 && a.rows > (uint64_t(1) << 62) / 4 / a.cols) {
    return Status::OutOfRange("dctq decode: shape " + U(a.rows) + " x " + U(a.cols) +
                              " too large");
  }
  if (a.row_begin == a.row_end || a.cols == 0) return Status::OK();  // nothing to write
  if (a.symbols == nullptr || a.out == nullptr) {
    return Status::InvalidArgument("dctq decode: null symbols or output pointer");
  }
  const uintptr_t sym_size = a.symbol_type == DType::kI16 ? 2 : 1;
  const uintptr_t out_size = a.out_type == DType::kF32 ? 4 : 2;
  if (reinterpret_cast<uintptr_t>(a.symbols) % sym_size ||
      reinterpret_cast<uintptr_t>(a.out) % out_size) {
    return Status::InvalidArgument("dctq decode: symbols or output not aligned to their element");
  }
  if (a.transform == GpuTransform::kDct) {
    if (a.tile_rows < 1 || a.tile_rows > 64 || a.tile_cols < 1 || a.tile_cols > 64) {
      return Status::Unsupported("dctq decode: tile " + U(a.tile_rows) + " x " + U(a.tile_cols) +
                                 " (each side must be 1..64)");
    }
    if (a.row_begin % a.tile_rows != 0 ||
        (a.row_end != a.rows && a.row_end % a.tile_rows != 0)) {
      return Status::InvalidArgument("dctq decode: rows [" + U(a.row_begin) + ", " +
                                     U(a.row_end) + ") are not whole tile-rows of " +
                                     U(a.tile_rows));
    }
  }
  if (!std::isfinite(a.step)) {
    return Status::InvalidArgument("dctq decode: step is not finite");
  }
  return Status::OK();
}

Status ValidateBytePlaneMerge(const BytePlaneMergeArgs& a) {
  if (a.word_bytes != 1 && a.word_bytes != 2 && a.word_bytes != 4 && a.word_bytes != 8) {
    return Status::Unsupported("byte-plane merge: word size " + U(a.word_bytes) +
                               " (want 1, 2, 4 or 8)");
  }
  if (a.rotate_bits >= a.word_bytes * 8) {
    return Status::InvalidArgument("byte-plane merge: rotation " + U(a.rotate_bits) +
                                   " >= word width " + U(a.word_bytes * 8));
  }
  if (a.count == 0) return Status::OK();
  if (a.planes == nullptr || a.out == nullptr) {
    return Status::InvalidArgument("byte-plane merge: null planes or output pointer");
  }
  if (a.plane_stride < a.count) {
    return Status::InvalidArgument("byte-plane merge: plane stride " + U(a.plane_stride) +
                                   " < element count " + U(a.count));
  }
  if (a.count > (uint64_t(1) << 60) / a.word_bytes ||
      a.plane_stride > (uint64_t(1) << 60) / a.word_bytes) {
    return Status::OutOfRange("byte-plane merge: " + U(a.count) + " elements too large");
  }
  return Status::OK();
}

Status ValidateHuffDecode(const HuffDecodeArgs& a) {
  if (a.symbols == 0) return Status::OK();  // nothing to write
  if (a.symbols >= (uint64_t(1) << 32))
    return Status::OutOfRange("huffman decode: " + U(a.symbols) + " symbols in one chunk");
  if (a.substream < 32 || a.substream > 4096 || a.substream % 32)
    return Status::InvalidArgument("huffman decode: sub-stream size " + U(a.substream) +
                                   " (want a multiple of 32 in 32..4096)");
  if (a.payload == nullptr || a.out == nullptr)
    return Status::InvalidArgument("huffman decode: null payload or output pointer");
  if (reinterpret_cast<uintptr_t>(a.payload) % 4)
    return Status::InvalidArgument("huffman decode: payload must be 4-byte aligned");
  return Status::OK();
}

Status ValidateHuffDecodeBatch(const HuffBatchArgs& a) {
  if (a.count == 0 || a.max_symbols == 0) return Status::OK();
  if (a.count > 65535)
    return Status::OutOfRange("huffman batch: " + U(a.count) + " chunks in one launch");
  if (a.max_symbols >= (uint64_t(1) << 32))
    return Status::OutOfRange("huffman batch: " + U(a.max_symbols) + " symbols in one chunk");
  if (a.substream < 32 || a.substream > 4096 || a.substream % 32)
    return Status::InvalidArgument("huffman batch: sub-stream size " + U(a.substream) +
                                   " (want a multiple of 32 in 32..4096)");
  if (a.chunks == nullptr) return Status::InvalidArgument("huffman batch: null descriptor array");
  return Status::OK();
}

#ifndef HCT_WITH_CUDA
Status LaunchHuffDecodeBatch(const HuffBatchArgs& a, GpuStream) {
  HCT_RETURN_IF_ERROR(ValidateHuffDecodeBatch(a));
  return Status::Unsupported("huffman batch decode: built without CUDA");
}
Status LaunchHuffDecode(const HuffDecodeArgs& a, GpuStream) {
  HCT_RETURN_IF_ERROR(ValidateHuffDecode(a));
  return Status::Unsupported("huffman decode: built without CUDA");
}
Status LaunchDctqDecode(const DctqDecodeArgs& a, GpuStream) {
  HCT_RETURN_IF_ERROR(ValidateDctqDecode(a));
  return Status::Unsupported("dctq decode: built without CUDA");
}
Status LaunchBytePlaneMerge(const BytePlaneMergeArgs& a, GpuStream) {
  HCT_RETURN_IF_ERROR(ValidateBytePlaneMerge(a));
  return Status::Unsupported("byte-plane merge: built without CUDA");
}
#endif

uint64_t QueryDctqDecodeSymbolBytes(const DctqDecodeArgs& a) {
  if (a.row_end <= a.row_begin) return 0;
  const uint64_t per = a.symbol_type == DType::kI16 ? 2 : 1;
  return (a.row_end - a.row_begin) * a.cols * per;
}

HuffBatchWorkspace QueryHuffDecodeBatchWorkspace(const uint64_t* payload_bytes,
                                                 const uint64_t* symbols, uint32_t count,
                                                 uint64_t payload_align) {
  const uint64_t al = payload_align < 4 ? 4 : payload_align;
  auto up = [al](uint64_t x) { return (x + al - 1) / al * al; };
  HuffBatchWorkspace w;
  w.payload_begin = up(uint64_t(count) * sizeof(HuffChunk));
  uint64_t p = w.payload_begin, syms = 0;
  for (uint32_t k = 0; k < count; ++k) {
    p += up(payload_bytes[k]);
    syms += symbols[k];
  }
  w.symbols_begin = p;
  w.bytes = p + syms;
  return w;
}

}  // namespace hct
