// Canonical, length-limited Huffman coding of int8 symbols in independent sub-streams: the
// "dctq-huff" chunk payload (docs/hct-format.md §5, "dctq-huff"), shared by the encoder, the CPU
// reference decoder and (layout constants) the GPU kernel's host-side checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "hct/detail/huff_format.h"  // layout constants, HuffHeader, HuffParseHeader
#include "hct/status.h"

namespace hct::detail {

// Code lengths (0 = unused, else 1..max_len) for a histogram: optimal Huffman lengths, then
// limited to max_len with a Kraft-sum repair. A single used symbol gets length 1.
std::vector<uint8_t> HuffCodeLengths(std::span<const uint64_t> freq, int max_len);

// Histogram of int8 symbols by byte value (uint8_t(symbol)).
void HuffHistogram(std::span<const int8_t> symbols, uint64_t freq[256]);

// Exact size of the payload HuffEncode writes for n symbols with histogram `freq` (the code
// depends only on the histogram), without coding them: the rate search's cost of a step.
uint64_t HuffPayloadBytes(const uint64_t freq[256], uint64_t n, uint32_t substream);

// Appends the payload of `symbols` (S = ceil(n / substream) interleaved sub-streams; substream
// is a multiple of 32 in 32..kHuffMaxSubstream) to *out.
Status HuffEncode(std::span<const int8_t> symbols, uint32_t substream, std::vector<std::byte>* out);
// The same with the symbols' histogram already counted (HuffHistogram).
Status HuffEncode(std::span<const int8_t> symbols, const uint64_t freq[256], uint32_t substream,
                  std::vector<std::byte>* out);

// CPU reference decoder: payload -> exactly out.size() symbols (Corruption otherwise).
Status HuffDecode(std::span<const std::byte> payload, std::span<int8_t> out);

// "dctq-huffx": int16 symbols (|q| <= 32767) as byte symbols plus raw extra bits
// (hct/detail/huff_format.h). Histogram of the byte symbols; exact payload size (extra bits
// included); encoder (substream a multiple of 32 in 32..kHuffxMaxSubstream); CPU reference decoder.
void HuffxHistogram(std::span<const int16_t> symbols, uint64_t freq[256]);
uint64_t HuffxPayloadBytes(const uint64_t freq[256], uint64_t n, uint32_t substream);
Status HuffxEncode(std::span<const int16_t> symbols, uint32_t substream,
                   std::vector<std::byte>* out);
Status HuffxDecode(std::span<const std::byte> payload, std::span<int16_t> out);

}  // namespace hct::detail
