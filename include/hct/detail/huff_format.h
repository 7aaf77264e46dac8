// The "dctq-huff" chunk payload layout (docs/hct-format.md §5, "dctq-huff"), shared by the codec
// (encoder, CPU reference decoder), the GPU kernel (kernels/huff_decode.cu) and the runtime's
// host-side checks before a batched GPU decode. Installed; internal (namespace detail).
//
// Payload: u32 n (symbols), u32 K (symbols per sub-stream), 256 code lengths as 4-bit nibbles
// (kHuffHeaderBytes in all), then one u16 bit size per sub-stream, then the 4-aligned
// bitstream words. Code lengths are at most kHuffMaxLen (one 2^kHuffMaxLen-entry table lookup
// per symbol).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "hct/status.h"

namespace hct::detail {

inline constexpr int kHuffMaxLen = 11;                   // one 2048-entry table lookup per symbol
inline constexpr uint32_t kHuffDefaultSubstream = 2048;  // symbols per sub-stream
inline constexpr uint32_t kHuffMaxSubstream = 4096;      // 4096 * 11 bits fit a u16 bit count
inline constexpr size_t kHuffHeaderBytes = 8 + 128;      // n, K, 256 nibble lengths

// Symbols in sub-stream k of a chunk of n symbols in S = ceil(n / K) sub-streams: sub-stream k
// holds symbols k, k + S, k + 2S, ... (interleaved), so the first n mod S hold one more.
constexpr uint32_t HuffSubstreamCount(uint32_t n, uint32_t nstreams, uint32_t k) {
  return n / nstreams + (k < n % nstreams ? 1u : 0u);
}

// "dctq-huffx" (docs/hct-format.md §5.6): int16 symbols in the same payload layout. Byte symbol
// b < 2 * kHuffxDirect + 1 is the value b - kHuffxDirect; b = kHuffxPosClass + c (c <
// kHuffxClasses) is a magnitude class (negative: kHuffxNegClass + c) followed, right after its
// code in the same sub-stream, by HuffxExtraBits(c) raw bits (MSB first) of m - HuffxClassBase(c);
// the remaining byte values are unused (length 0).
inline constexpr int kHuffxDirect = 95;
inline constexpr int kHuffxClasses = 22;
inline constexpr int kHuffxPosClass = 2 * kHuffxDirect + 1;          // 191
inline constexpr int kHuffxNegClass = kHuffxPosClass + kHuffxClasses;  // 213
inline constexpr int kHuffxMaxExtra = 13;
inline constexpr uint32_t kHuffxMaxSubstream = 2048;  // 2048 * (11 + 13) bits fit a u16
constexpr int HuffxExtraBits(int c) { return c / 2 + 3; }
constexpr uint32_t HuffxClassBase(int c) {
  uint32_t b = kHuffxDirect + 1;
  for (int j = 0; j < c; ++j) b += 1u << HuffxExtraBits(j);
  return b;
}
static_assert(HuffxExtraBits(kHuffxClasses - 1) == kHuffxMaxExtra);
static_assert(HuffxClassBase(kHuffxClasses) > 32768, "the classes cover every int16 magnitude");

// Parsed, validated header of a payload (bounds checked against its size).
struct HuffHeader {
  uint32_t n = 0;             // symbols
  uint32_t substream = 0;     // K
  uint32_t nstreams = 0;
  uint8_t lengths[256] = {};  // by symbol byte value (uint8_t(int8 symbol))
  size_t sizes_offset = 0;    // u16 bit sizes, one per sub-stream
  size_t bits_offset = 0;     // 4-aligned start of the bitstream words
  uint64_t total_bits = 0;    // sum of the sub-stream sizes
};
// Implemented in hct::codec (codec/huff.cc).
Result<HuffHeader> HuffParseHeader(std::span<const std::byte> payload);
// The same for a "dctq-huffx" payload (sub-stream sizes up to count * (11 + 13) bits, K <= 2048,
// unused byte values must have length 0).
Result<HuffHeader> HuffxParseHeader(std::span<const std::byte> payload);

}  // namespace hct::detail
