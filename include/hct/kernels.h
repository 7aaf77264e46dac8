// hct/kernels.h: GPU decode kernels for the HCT codecs (see docs/kernels.md).
//
// Every launcher enqueues work on `stream` and returns at once: it allocates nothing, copies
// nothing to the host and does not synchronize. A non-OK Status means the arguments were
// rejected (kInvalidArgument / kUnsupported, nothing launched) or the launch failed
// (kInternal, from cudaGetLastError). Errors raised later by the kernel itself surface at the
// caller's next synchronization, as for any CUDA kernel.
//
// No CUDA header is included here: GpuStream is the same type as cudaStream_t.
// In builds without CUDA (HCT_WITH_CUDA off) the launchers return kUnsupported.
#pragma once

#include <cstdint>

#include "hct/dtype.h"
#include "hct/status.h"

struct CUstream_st;

namespace hct {

// Identical to cudaStream_t; nullptr is the legacy default stream.
using GpuStream = CUstream_st*;

// The lossy codec's transform ("dctq-zstd" symbols).
enum class GpuTransform : uint8_t {
  kNone,  // out = q * step
  kDct,   // out = per-tile 2-D inverse orthonormal DCT (DCT-III) of q * step
};

// Decodes quantized symbols of one chunk (or of several consecutive chunks) of a "dctq-zstd"
// tensor into its place in the output tensor, in one pass over memory:
//   c = q * step;  x = IDCT2(c) per tile (transform kDct);  out = RNE(x) in out_type.
// The tensor is viewed 2-D, rows x cols, row-major. Tile (ti, tj) covers rows
// [ti*tile_rows, min((ti+1)*tile_rows, rows)) and the matching columns; edge tiles use the
// orthonormal DCT of their own, smaller size.
struct DctqDecodeArgs {
  // Device pointer: the symbols q of rows [row_begin, row_end), all columns, row-major,
  // little-endian, one per element. Needs only element alignment (aligned input is faster).
  const void* symbols = nullptr;
  DType symbol_type = DType::kI8;  // kI8 or kI16
  float step = 1.0f;               // one quantization step per tensor
  uint64_t rows = 0, cols = 0;     // the whole tensor
  // The rows decoded by this call: a band of whole tile-rows. row_begin must be a multiple of
  // tile_rows; row_end a multiple of tile_rows or equal to rows (kNone: any rows).
  uint64_t row_begin = 0, row_end = 0;
  GpuTransform transform = GpuTransform::kDct;
  uint32_t tile_rows = 16, tile_cols = 16;  // 1..64 each; ignored for kNone
  DType out_type = DType::kBF16;            // kBF16, kF16 or kF32
  // Device pointer to the WHOLE output tensor (rows x cols of out_type); only rows
  // [row_begin, row_end) are written. Element alignment is required; 16-byte alignment and
  // rows of whole 16-byte units are faster.
  void* out = nullptr;
};

// Checks `a` without touching the GPU (also available in builds without CUDA).
Status ValidateDctqDecode(const DctqDecodeArgs& a);
// Bytes of device symbols that LaunchDctqDecode reads for `a` (rows [row_begin, row_end), all
// columns, symbol_type each): the workspace to allocate for them. 0 for an empty band.
uint64_t QueryDctqDecodeSymbolBytes(const DctqDecodeArgs& a);
// Validates and enqueues the decode on `stream`.
Status LaunchDctqDecode(const DctqDecodeArgs& a, GpuStream stream);

// Re-interleaves the byte planes of "bytesplit-zstd" into words, bit-exact (the inverse of the
// codec's split, codec/codec_lossless.cc; its params give word_bytes and rotate_bits):
//   w = sum_p planes[p * plane_stride + i] << (8 * (word_bytes - 1 - p))
//       (plane 0 = most significant byte, the exponent byte after the rotation)
//   word i = rotate_right(w, rotate_bits)   (word_bytes * 8 bits wide), stored little-endian.
// A chunk's decoded planes are contiguous: plane_stride = count.
struct BytePlaneMergeArgs {
  const void* planes = nullptr;  // device: word_bytes planes, plane p at planes + p*plane_stride
  uint64_t plane_stride = 0;     // bytes from one plane to the next (>= count)
  uint64_t count = 0;            // words (elements; C64 split as F32 words counts 2 per element)
  uint32_t word_bytes = 2;       // 1, 2, 4 or 8
  uint32_t rotate_bits = 0;      // 0 .. word_bytes*8-1
  void* out = nullptr;           // device: count * word_bytes bytes
};

Status ValidateBytePlaneMerge(const BytePlaneMergeArgs& a);

// Decodes one "dctq-huff" chunk payload (canonical length-limited Huffman code in independent,
// interleaved sub-streams, docs/hct-format.md §5.4) into its int8 symbols, one GPU thread per
// sub-stream (a warp writes 32 adjacent symbols per step); then
// LaunchDctqDecode turns the symbols into weights. Every read is bounded by payload_bytes and
// every write by `symbols`, whatever the payload holds. Corrupt input leaves the output
// undefined and ORs kHuffError* bits into *error (when non-null; the caller zeroes it and reads
// it after synchronizing). Callers that cannot wait for that check the header on the CPU first
// (hct::detail::HuffParseHeader) and verify the payload's stored checksum.
inline constexpr uint32_t kHuffErrorHeader = 1;  // header, sizes or payload size inconsistent
inline constexpr uint32_t kHuffErrorCode = 2;    // a bit pattern that is no code
inline constexpr uint32_t kHuffErrorStream = 4;  // a sub-stream's bits do not match its size
struct HuffDecodeArgs {
  const void* payload = nullptr;  // device, 4-byte aligned
  uint64_t payload_bytes = 0;
  uint64_t symbols = 0;    // the chunk's symbol count (its decoded_size), < 2^32
  uint32_t substream = 0;  // symbols per sub-stream (the tensor params' "substream")
  void* out = nullptr;     // device: `symbols` int8 (any alignment)
  uint32_t* error = nullptr;
};

Status ValidateHuffDecode(const HuffDecodeArgs& a);
Status LaunchHuffDecode(const HuffDecodeArgs& a, GpuStream stream);

// Many "dctq-huff" chunks (same sub-stream size) in ONE launch: the grid covers every
// sub-stream of every chunk (blockIdx.y = chunk), which a single chunk's 4-8 blocks cannot do.
// `chunks` is a DEVICE array of `count` descriptors (the host cannot check them: the kernel does,
// and a bad descriptor — symbols above max_symbols or >= 2^32, null or misaligned pointers —
// ORs kHuffErrorHeader into *error). Each chunk is decoded exactly as LaunchHuffDecode would,
// its reads bounded by its own payload_bytes, its writes by its own symbols.
struct HuffChunk {
  const void* payload = nullptr;  // device, 4-byte aligned
  uint64_t payload_bytes = 0;
  uint64_t symbols = 0;  // decoded_size, <= max_symbols
  void* out = nullptr;   // device: `symbols` int8
};
struct HuffBatchArgs {
  const HuffChunk* chunks = nullptr;  // device, `count` entries
  uint32_t count = 0;                 // <= 65535
  uint32_t substream = 0;             // as HuffDecodeArgs::substream
  uint64_t max_symbols = 0;           // >= every chunk's symbols, < 2^32 (sizes the grid)
  uint32_t* error = nullptr;
};
Status ValidateHuffDecodeBatch(const HuffBatchArgs& a);
// The workspace of one LaunchHuffDecodeBatch over chunks k = 0..count-1 (payload_bytes[k],
// symbols[k] each), in one device allocation (and the same offsets in a host staging copy of
// it): the `count` HuffChunk descriptors at offset 0, chunk k's payload at payload_offset(k) (a
// multiple of payload_align, itself a multiple of 4; 4096 lets O_DIRECT reads land in place),
// then every chunk's symbols back to back in chunk order from symbols_begin -- the band that one
// LaunchDctqDecode reads when the chunks are consecutive rows. Callers size buffers from this
// query instead of assembling the layout themselves.
struct HuffBatchWorkspace {
  uint64_t payload_begin = 0;  // offset of the first payload
  uint64_t symbols_begin = 0;  // offset of the first chunk's symbols
  uint64_t bytes = 0;          // the whole workspace
};
HuffBatchWorkspace QueryHuffDecodeBatchWorkspace(const uint64_t* payload_bytes,
                                                 const uint64_t* symbols, uint32_t count,
                                                 uint64_t payload_align);
Status LaunchHuffDecodeBatch(const HuffBatchArgs& a, GpuStream stream);
Status LaunchBytePlaneMerge(const BytePlaneMergeArgs& a, GpuStream stream);

// ---- "bf16-huff": lossless BF16 (docs/hct-format.md §5.5, docs/kernels.md) -------------------
// A chunk's payload holds the sign + mantissa byte plane raw and the exponent byte plane in the
// "dctq-huff" Huffman code. Decoding is LaunchHuffDecode (or ...Batch) of the exponent plane into
// a scratch buffer, then LaunchBf16Merge (or ...Batch), which interleaves the two planes:
//   r = exponents[i] << 8 | rest[i];  out[i] = rotate_right16(r, 1)   (integer ops, bit-exact).
// CPU reference: hct::detail::Bf16MergePlanes / Bf16HuffDecodeChunk (codec/detail/bf16_huff.h).
struct Bf16MergeArgs {
  const void* exponents = nullptr;  // device: count bytes (the decoded exponent plane)
  const void* rest = nullptr;       // device: count bytes (the payload's raw plane)
  uint64_t count = 0;               // BF16 elements
  void* out = nullptr;              // device: count BF16 (2-byte aligned; 16-byte is faster)
};
Status ValidateBf16Merge(const Bf16MergeArgs& a);
Status LaunchBf16Merge(const Bf16MergeArgs& a, GpuStream stream);

// Many chunks in one launch (blockIdx.y = chunk). `chunks` is a DEVICE array; a descriptor with
// a count above max_count or null pointers ORs kHuffErrorHeader into *error and writes nothing.
struct Bf16MergeChunk {
  const void* exponents = nullptr;
  const void* rest = nullptr;
  uint64_t count = 0;
  void* out = nullptr;
};
struct Bf16MergeBatchArgs {
  const Bf16MergeChunk* chunks = nullptr;  // device, `count` entries
  uint32_t count = 0;                      // <= 65535
  uint64_t max_count = 0;                  // >= every chunk's count (sizes the grid)
  uint32_t* error = nullptr;
};
Status ValidateBf16MergeBatch(const Bf16MergeBatchArgs& a);
Status LaunchBf16MergeBatch(const Bf16MergeBatchArgs& a, GpuStream stream);

// Device scratch LaunchBf16HuffDecode needs for a chunk of `elements` (the exponent plane).
uint64_t Bf16HuffWorkspaceBytes(uint64_t elements);

// One whole "bf16-huff" chunk payload -> `elements` BF16 words: two launches on `stream`.
// The payload layout follows from elements and payload_bytes, so nothing is read on the host;
// a payload whose header disagrees is caught by the Huffman header check on the GPU (*error).
// Callers that cannot wait for *error check the header on the CPU first
// (hct::detail::Bf16HuffParseHeader) and verify the stored checksum, as for dctq-huff.
struct Bf16HuffDecodeArgs {
  const void* payload = nullptr;  // device, 4-byte aligned (16-byte aligned is faster)
  uint64_t payload_bytes = 0;
  uint64_t elements = 0;          // the chunk's elem_count, < 2^32
  uint32_t substream = 0;         // the tensor params' "substream"
  void* workspace = nullptr;      // device, >= Bf16HuffWorkspaceBytes(elements), 16-byte aligned
  uint64_t workspace_bytes = 0;
  void* out = nullptr;            // device: elements BF16
  uint32_t* error = nullptr;      // kHuffError* bits (zeroed by the caller)
};
Status ValidateBf16HuffDecode(const Bf16HuffDecodeArgs& a);
Status LaunchBf16HuffDecode(const Bf16HuffDecodeArgs& a, GpuStream stream);

// Host-only helper for batched loads: the two descriptors of one chunk whose payload is (or will
// be) at device address `payload`, exponent scratch at `exponents`
// (Bf16HuffWorkspaceBytes(elements) bytes) and destination `out`. Fails (kCorruption) when the
// payload is too small for its element count.
Status DescribeBf16HuffChunk(const void* payload, uint64_t payload_bytes, uint64_t elements,
                             void* exponents, void* out, HuffChunk* huff, Bf16MergeChunk* merge);

}  // namespace hct
