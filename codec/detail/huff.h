// Canonical, length-limited Huffman coding of int8 symbols in independent sub-streams: the
// "dctq-huff" chunk payload (docs/hct-format.md §5, "dctq-huff"), shared by the encoder, the CPU
// reference decoder and (layout constants) the GPU kernel's host-side checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "hct/status.h"

namespace hct::detail {

inline constexpr int kHuffMaxLen = 11;            // one 2048-entry table lookup per symbol
inline constexpr uint32_t kHuffDefaultSubstream = 2048;  // symbols per sub-stream
inline constexpr uint32_t kHuffMaxSubstream = 4096;      // 4096 * 11 bits fit a u16 bit count
inline constexpr size_t kHuffHeaderBytes = 8 + 128;      // n, K, 256 nibble lengths

// Code lengths (0 = unused, else 1..max_len) for a histogram: optimal Huffman lengths, then
// limited to max_len with a Kraft-sum repair. A single used symbol gets length 1.
std::vector<uint8_t> HuffCodeLengths(std::span<const uint64_t> freq, int max_len);

// Symbols in sub-stream k of a chunk of n symbols in S = ceil(n / K) sub-streams: sub-stream k
// holds symbols k, k + S, k + 2S, ... (interleaved), so the first n mod S hold one more.
inline uint32_t HuffSubstreamCount(uint32_t n, uint32_t nstreams, uint32_t k) {
  return n / nstreams + (k < n % nstreams ? 1u : 0u);
}

// Appends the payload of `symbols` (S = ceil(n / substream) interleaved sub-streams; substream
// is a multiple of 32 in 32..kHuffMaxSubstream) to *out.
Status HuffEncode(std::span<const int8_t> symbols, uint32_t substream, std::vector<std::byte>* out);

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
Result<HuffHeader> HuffParseHeader(std::span<const std::byte> payload);

// CPU reference decoder: payload -> exactly out.size() symbols (Corruption otherwise).
Status HuffDecode(std::span<const std::byte> payload, std::span<int8_t> out);

}  // namespace hct::detail
