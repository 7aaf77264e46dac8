// "bf16-huff" payloads (codec/detail/bf16_huff.h, docs/hct-format.md §5.5): exponent plane in
// the "dctq-huff" Huffman code (codec/huff.cc), sign + mantissa plane raw.
#include <algorithm>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "codec/detail/bf16_huff.h"
#include "codec/detail/bytes.h"
#include "codec/detail/huff.h"

namespace hct::detail {

void Bf16SplitPlanes(const std::byte* bf16, uint64_t n, uint8_t* exp, uint8_t* rest) {
  for (uint64_t i = 0; i < n; ++i) {
    uint16_t w;
    std::memcpy(&w, bf16 + 2 * i, 2);
    const uint16_t r = uint16_t(w << 1 | w >> 15);
    rest[i] = uint8_t(r);
    exp[i] = uint8_t(r >> 8);
  }
}

void Bf16MergePlanes(const uint8_t* exp, const uint8_t* rest, uint64_t n, std::byte* out) {
  for (uint64_t i = 0; i < n; ++i) {
    const uint16_t r = uint16_t(exp[i] << 8 | rest[i]);
    const uint16_t w = uint16_t(r >> 1 | r << 15);
    std::memcpy(out + 2 * i, &w, 2);
  }
}

Status Bf16HuffEncodeChunk(std::span<const std::byte> bf16, uint32_t substream,
                           std::vector<std::byte>* out) {
  if (bf16.size() % 2 || bf16.empty() || bf16.size() / 2 > UINT32_MAX)
    return Status::InvalidArgument("bf16-huff chunk must hold 1..2^32-1 BF16 words");
  const uint64_t n = bf16.size() / 2;
  const uint64_t exp_off = Bf16HuffExpOffset(n);
  const size_t base = out->size();
  out->resize(base + exp_off, std::byte{0});
  std::byte* p = out->data() + base;
  const uint32_t head[2] = {uint32_t(n), uint32_t(exp_off)};
  std::memcpy(p, head, 8);
  std::vector<uint8_t> exp(n);
  Bf16SplitPlanes(bf16.data(), n, exp.data(), reinterpret_cast<uint8_t*>(p + kBf16HuffRestOffset));
  return HuffEncode({reinterpret_cast<const int8_t*>(exp.data()), n}, substream, out);
}

Result<Bf16HuffLayout> Bf16HuffParseHeader(std::span<const std::byte> p) {
  if (p.size() < kBf16HuffHeaderBytes)
    return Status::Corruption("bf16-huff payload shorter than its header");
  Bf16HuffLayout L;
  L.n = Load32(p.data());
  L.exp_offset = Load32(p.data() + 4);
  if (L.n == 0 || L.exp_offset != Bf16HuffExpOffset(L.n))
    return Status::Corruption("bf16-huff header: element count " + std::to_string(L.n) +
                              " and exponent offset " + std::to_string(L.exp_offset) + " disagree");
  if (L.exp_offset >= p.size())
    return Status::Corruption("bf16-huff payload truncated (" + std::to_string(p.size()) +
                              " bytes, the exponent plane starts at " +
                              std::to_string(L.exp_offset) + ")");
  for (uint64_t i = 8; i < kBf16HuffHeaderBytes; ++i)
    if (p[i] != std::byte{0}) return Status::Corruption("bf16-huff header: reserved bytes set");
  for (uint64_t i = kBf16HuffRestOffset + L.n; i < L.exp_offset; ++i)
    if (p[i] != std::byte{0}) return Status::Corruption("bf16-huff padding is not zero");
  L.exp_bytes = p.size() - L.exp_offset;
  Result<HuffHeader> h = HuffParseHeader(p.subspan(L.exp_offset));
  if (!h.ok()) return h.status().WithContext("bf16-huff exponent plane");
  if (h->n != L.n)
    return Status::Corruption("bf16-huff exponent plane holds " + std::to_string(h->n) +
                              " symbols, the header says " + std::to_string(L.n));
  // The Huffman header's own padding (before the 4-aligned bitstream) must be zero too.
  for (uint64_t i = h->sizes_offset + 2 * uint64_t(h->nstreams); i < h->bits_offset; ++i)
    if (p[L.exp_offset + i] != std::byte{0})
      return Status::Corruption("bf16-huff exponent plane: padding is not zero");
  // So are the bits after the last code: every stored bit has one meaning.
  if (const uint32_t tail = uint32_t(h->total_bits % 32); tail != 0) {
    const uint32_t last = Load32(p.data() + p.size() - 4);
    if (last & (0xffffffffu >> tail))
      return Status::Corruption("bf16-huff exponent plane: bits after the last code are set");
  }
  L.substream = h->substream;
  return L;
}

Status Bf16HuffDecodeChunk(std::span<const std::byte> payload, uint32_t substream,
                           std::span<std::byte> out) {
  HCT_ASSIGN_OR_RETURN(Bf16HuffLayout L, Bf16HuffParseHeader(payload));
  if (uint64_t(L.n) * 2 != out.size())
    return Status::Corruption("bf16-huff payload holds " + std::to_string(L.n) +
                              " elements, the chunk " + std::to_string(out.size() / 2));
  if (L.substream != substream)
    return Status::Corruption("bf16-huff sub-stream size " + std::to_string(L.substream) +
                              " differs from the tensor's " + std::to_string(substream));
  thread_local std::vector<int8_t> exp;
  exp.resize(L.n);
  Status st = HuffDecode(payload.subspan(L.exp_offset), exp);
  if (!st.ok()) return st.WithContext("bf16-huff exponent plane");
  Bf16MergePlanes(reinterpret_cast<const uint8_t*>(exp.data()),
                  reinterpret_cast<const uint8_t*>(payload.data() + kBf16HuffRestOffset), L.n,
                  out.data());
  return Status::OK();
}

nlohmann::json Bf16HuffParamsJson(uint32_t substream) {
  return {{"split", "exp"}, {"entropy", "huff"}, {"substream", substream}};
}

Result<uint32_t> Bf16HuffParams(const nlohmann::json& params, DType dtype) {
  if (dtype != DType::kBF16)
    return Status::Corruption("bf16-huff with dtype " + std::string(DTypeName(dtype)));
  auto it = params.find("substream");
  if (it == params.end() || !it->is_number_integer())
    return Status::Corruption("bf16-huff params: 'substream' missing or not an integer");
  const int64_t k = it->is_number_unsigned()
                        ? int64_t(std::min<uint64_t>(it->get<uint64_t>(), 1u << 20))
                        : it->get<int64_t>();
  if (k < 32 || k > kHuffMaxSubstream || k % 32)
    return Status::Corruption("bf16-huff params: substream " + std::to_string(k) +
                              " (want a multiple of 32 in 32..4096)");
  return uint32_t(k);
}

}  // namespace hct::detail
