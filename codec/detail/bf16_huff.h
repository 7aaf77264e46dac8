// "bf16-huff" chunk payloads (docs/hct-format.md §5.5): lossless BF16 whose exponent byte plane is
// coded with the "dctq-huff" canonical Huffman code (codec/detail/huff.h, decoded on the GPU by
// LaunchHuffDecode / LaunchHuffDecodeBatch) and whose sign + mantissa byte plane is stored raw.
//
// Payload (little-endian), n = elements of the chunk:
//   u32 n, u32 exp_offset (= Bf16HuffExpOffset(n)), u8 reserved[8] (zeros)
//   u8  rest[n]          at offset 16: byte 0 of rotl16(word, 1) = mantissa << 1 | sign
//   u8  pad[]            zeros up to exp_offset (a multiple of 16)
//   u8  exp[...]         to the end: the §5.4 payload of the n exponent bytes (byte 1 of rotl16)
// Everything about the layout follows from n and the payload size, so a GPU launcher needs no
// host-side parse; the CPU still checks the header (Bf16HuffParseHeader) before trusting it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "hct/codec.h"
#include "hct/status.h"

namespace hct::detail {

inline constexpr uint64_t kBf16HuffHeaderBytes = 16;
inline constexpr uint64_t kBf16HuffRestOffset = kBf16HuffHeaderBytes;
// Offset of the exponent plane's Huffman payload in a chunk of n elements.
inline constexpr uint64_t Bf16HuffExpOffset(uint64_t n) {
  return kBf16HuffHeaderBytes + (n + 15) / 16 * 16;
}

struct Bf16HuffLayout {
  uint32_t n = 0;           // elements
  uint32_t substream = 0;   // K of the exponent plane's Huffman code
  uint64_t exp_offset = 0;  // start of the Huffman payload
  uint64_t exp_bytes = 0;   // its size (to the end of the payload)
};
// Checks the 16-byte header, the padding and the embedded Huffman header (sizes, lengths).
Result<Bf16HuffLayout> Bf16HuffParseHeader(std::span<const std::byte> payload);

// rest[i] = byte 0, exp[i] = byte 1 of rotl16(bf16 word i, 1).
void Bf16SplitPlanes(const std::byte* bf16, uint64_t n, uint8_t* exp, uint8_t* rest);
// The inverse, bit-exact: the CPU reference of LaunchBf16Merge (kernels/bf16_merge.cu).
void Bf16MergePlanes(const uint8_t* exp, const uint8_t* rest, uint64_t n, std::byte* out);

// Appends the payload of `bf16` (2n bytes, n in 1..2^32-1) to *out.
Status Bf16HuffEncodeChunk(std::span<const std::byte> bf16, uint32_t substream,
                           std::vector<std::byte>* out);
// payload -> exactly out.size() / 2 BF16 words; `substream` is the tensor params' K (the payload
// must agree). Corruption for any inconsistency.
Status Bf16HuffDecodeChunk(std::span<const std::byte> payload, uint32_t substream,
                           std::span<std::byte> out);

}  // namespace hct::detail

namespace hct::detail {

// Tensor params of "bf16-huff": {"split":"exp","entropy":"huff","substream":K}.
nlohmann::json Bf16HuffParamsJson(uint32_t substream);
// Checks the params and the dtype (BF16 only); returns K.
Result<uint32_t> Bf16HuffParams(const nlohmann::json& params, DType dtype);

}  // namespace hct::detail
