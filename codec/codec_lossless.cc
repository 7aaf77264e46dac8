// Lossless codecs: "raw" and "bytesplit-zstd" (docs/hct-format.md §5).
#include <cstring>
#include <string>

#include <xxhash.h>

#include <nlohmann/json.hpp>

#include "codec/detail/bf16_huff.h"
#include "codec/detail/codec_internal.h"
#include "codec/detail/zstd_util.h"

namespace hct::detail {
namespace {

// How a dtype's bytes are cut into words and planes. Exponent-aligned split: rotating the word
// left by one bit moves the sign next to the low mantissa bits, so the most significant byte is
// the 8 exponent bits (BF16, F32) or the 5 exponent + 3 top mantissa bits (F16).
struct Split {
  int word_bytes = 1;
  int rotate_bits = 0;
};

Split SplitFor(DType d, bool exponent_planes) {
  const int bits = DTypeBits(d);
  Split s;
  s.word_bytes = bits >= 8 ? bits / 8 : 1;
  if (!exponent_planes) return s;
  switch (d) {
    case DType::kBF16:
    case DType::kF16: return {2, 1};
    case DType::kF32:
    case DType::kC64: return {4, 1};  // C64 = two F32 words
    default: return s;
  }
}

template <class W>
W Rotl(W v, int r) {
  constexpr int kBits = sizeof(W) * 8;
  return r == 0 ? v : static_cast<W>((v << r) | (v >> (kBits - r)));
}
template <class W>
W Rotr(W v, int r) {
  constexpr int kBits = sizeof(W) * 8;
  return r == 0 ? v : static_cast<W>((v >> r) | (v << (kBits - r)));
}

// planes[p * n + i] = byte (W-1-p) of rotl(word i).
template <class W>
void SplitWords(const std::byte* src, uint64_t n, int rot, std::byte* planes) {
  constexpr int kW = sizeof(W);
  for (uint64_t i = 0; i < n; ++i) {
    W w;
    std::memcpy(&w, src + i * kW, kW);
    w = Rotl<W>(w, rot);
    for (int p = 0; p < kW; ++p)
      planes[p * n + i] = static_cast<std::byte>((w >> (8 * (kW - 1 - p))) & 0xff);
  }
}

template <class W>
void JoinWords(const std::byte* planes, uint64_t n, int rot, std::byte* dst) {
  constexpr int kW = sizeof(W);
  for (uint64_t i = 0; i < n; ++i) {
    W w = 0;
    for (int p = 0; p < kW; ++p)
      w |= static_cast<W>(static_cast<W>(planes[p * n + i]) << (8 * (kW - 1 - p)));
    w = Rotr<W>(w, rot);
    std::memcpy(dst + i * kW, &w, kW);
  }
}

void SplitAny(int wb, const std::byte* src, uint64_t n, int rot, std::byte* planes) {
  switch (wb) {
    case 1: std::memcpy(planes, src, n); break;
    case 2: SplitWords<uint16_t>(src, n, rot, planes); break;
    case 4: SplitWords<uint32_t>(src, n, rot, planes); break;
    default: SplitWords<uint64_t>(src, n, rot, planes); break;
  }
}

void JoinAny(int wb, const std::byte* planes, uint64_t n, int rot, std::byte* dst) {
  switch (wb) {
    case 1: std::memcpy(dst, planes, n); break;
    case 2: JoinWords<uint16_t>(planes, n, rot, dst); break;
    case 4: JoinWords<uint32_t>(planes, n, rot, dst); break;
    default: JoinWords<uint64_t>(planes, n, rot, dst); break;
  }
}

constexpr uint32_t kRawPlane = 0x80000000u;

Status EncodeBytesplitChunk(std::span<const std::byte> src, Split s, int level,
                            std::vector<std::byte>* out) {
  const uint64_t n = src.size() / s.word_bytes;
  std::vector<std::byte> planes(src.size());
  SplitAny(s.word_bytes, src.data(), n, s.rotate_bits, planes.data());
  out->assign(4u * s.word_bytes, std::byte{0});
  ZstdSettings zs;
  zs.level = level;
  zs.min_match = kCodecMinMatch;
  for (int p = 0; p < s.word_bytes; ++p) {
    std::span<const std::byte> plane(planes.data() + p * n, n);
    const size_t before = out->size();
    HCT_RETURN_IF_ERROR(ZstdCompress(plane, zs, out));
    uint32_t size = static_cast<uint32_t>(out->size() - before);
    if (size >= n) {  // incompressible plane: store it as is
      out->resize(before);
      out->insert(out->end(), plane.begin(), plane.end());
      size = static_cast<uint32_t>(n) | kRawPlane;
    }
    std::memcpy(out->data() + 4 * p, &size, 4);
  }
  return Status::OK();
}

}  // namespace

uint64_t Xxh3(std::span<const std::byte> b) { return XXH3_64bits(b.data(), b.size()); }

Status BytesplitDecode(int word_bytes, int rotate_bits, std::span<const std::byte> stored,
                       std::span<std::byte> out) {
  const uint64_t wb = static_cast<uint64_t>(word_bytes);
  if (out.size() % wb != 0)
    return Status::Corruption("decoded size " + std::to_string(out.size()) +
                              " is not a multiple of the word size");
  const uint64_t n = out.size() / wb;
  if (stored.size() < 4 * wb) return Status::Corruption("bytesplit payload shorter than header");
  thread_local std::vector<std::byte> planes;
  planes.resize(out.size());
  uint64_t pos = 4 * wb;
  for (uint64_t p = 0; p < wb; ++p) {
    uint32_t h;
    std::memcpy(&h, stored.data() + 4 * p, 4);
    const uint64_t size = h & ~kRawPlane;
    if (size > stored.size() - pos)
      return Status::Corruption("bytesplit plane " + std::to_string(p) + " runs past the payload");
    std::span<const std::byte> src = stored.subspan(pos, size);
    std::span<std::byte> dst(planes.data() + p * n, n);
    if (h & kRawPlane) {
      if (size != n) return Status::Corruption("bytesplit raw plane has the wrong size");
      std::memcpy(dst.data(), src.data(), n);
    } else {
      Status st = ZstdDecompressExact(src, dst);
      if (!st.ok()) return st.WithContext("bytesplit plane " + std::to_string(p));
    }
    pos += size;
  }
  if (pos != stored.size()) return Status::Corruption("bytesplit payload has trailing bytes");
  JoinAny(word_bytes, planes.data(), n, rotate_bits, out.data());
  return Status::OK();
}

Result<EncodedTensor> EncodeLossless(const TensorView& t, const LosslessOptions& o,
                                     const ParallelFor& pf) {
  uint64_t elems = 1;
  for (uint64_t d : t.shape) elems *= d;
  const auto total_bytes = DTypeBytes(t.dtype, elems);
  if (!total_bytes || *total_bytes != t.data.size())
    return Status::InvalidArgument("tensor data has " + std::to_string(t.data.size()) +
                                   " bytes, shape and dtype say otherwise");
  const Split s = SplitFor(t.dtype, o.exponent_planes);
  const bool huff = o.entropy == Entropy::kHuffman && t.dtype == DType::kBF16;  // bf16-huff
  const uint64_t bits = DTypeBits(t.dtype);
  // Chunks hold a multiple of 8 elements, so sub-byte dtypes cut on whole bytes.
  uint64_t per_chunk = std::max<uint64_t>(8, o.chunk_bytes * 8 / bits / 8 * 8);
  const uint64_t nchunks = elems == 0 ? 0 : (elems + per_chunk - 1) / per_chunk;

  EncodedTensor enc;
  enc.chunks.resize(nchunks);
  std::vector<Status> status(nchunks);
  OrSerial(pf)(nchunks, [&](size_t c) {
    EncodedChunk& ch = enc.chunks[c];
    ch.elem_offset = c * per_chunk;
    ch.elem_count = std::min(per_chunk, elems - ch.elem_offset);
    const uint64_t off = ch.elem_offset * bits / 8, len = ch.elem_count * bits / 8;
    std::span<const std::byte> src = t.data.subspan(off, len);
    ch.decoded_size = len;
    ch.decoded_xxh3 = Xxh3(src);
    status[c] = huff ? Bf16HuffEncodeChunk(src, o.huff_substream, &ch.bytes)
                     : EncodeBytesplitChunk(src, s, o.zstd_level, &ch.bytes);
  });
  for (const Status& st : status) HCT_RETURN_IF_ERROR(st);

  uint64_t stored = 0;
  for (const EncodedChunk& ch : enc.chunks) stored += ch.bytes.size();
  if (stored * 100 >= *total_bytes * 99) {  // saves < 1%: not worth a decode step
    stored = 0;
    for (EncodedChunk& ch : enc.chunks) {
      const uint64_t off = ch.elem_offset * bits / 8;
      ch.bytes.assign(t.data.begin() + off, t.data.begin() + off + ch.decoded_size);
      stored += ch.bytes.size();
    }
    enc.codec = std::string(kCodecRaw);
    enc.params = "{}";
  } else if (huff) {
    enc.codec = std::string(kCodecBf16Huff);
    enc.params = Bf16HuffParamsJson(o.huff_substream).dump();
  } else {
    enc.codec = std::string(kCodecBytesplitZstd);
    enc.params = nlohmann::json{{"split", o.exponent_planes && s.rotate_bits ? "exp" : "bytes"},
                                {"word_bytes", s.word_bytes},
                                {"rotate_bits", s.rotate_bits}}
                     .dump();
  }
  ErrorAccumulator exact;  // lossless: error 0
  enc.metrics = exact.Finish(elems, stored);
  enc.metrics.cosine = 1;
  return enc;
}

}  // namespace hct::detail
