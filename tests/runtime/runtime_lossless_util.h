// Helpers of the lossless BF16 ("bf16-huff") load tests: HCT files of random BF16 tensors of odd
// sizes encoded losslessly with bf16-huff (several chunks, a single short chunk), and a file
// whose chunk keeps a valid stored checksum over a broken exponent bitstream (what only the
// decoders, not the checksum, can catch).
#pragma once

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/detail/bf16_huff.h"
#include "codec/detail/huff.h"
#include "hct/codec.h"
#include "hct/container.h"
#include "hct/dtype.h"

namespace hct::test {

struct LosslessTensor {
  std::string name;
  std::vector<uint64_t> shape;
  uint64_t chunk_bytes;  // the encoder's target original bytes per chunk
};

struct LosslessFile {
  std::string path;
  std::vector<LosslessTensor> tensors;
  std::vector<std::vector<std::byte>> original;  // BF16 bytes as encoded
  std::vector<std::string> codecs;
  std::vector<size_t> chunks;
  bool ok = false;
};

// Random BF16 weights: Gaussian with a per-tensor scale, rounded to nearest even, with a few
// zeros, negative zeros, subnormals and large values so every exponent class appears.
inline std::vector<std::byte> RandomBf16(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 0.01f * float(1 + seed % 7));
  std::vector<std::byte> out(2 * n);
  for (uint64_t i = 0; i < n; ++i) {
    float f = g(rng);
    const uint32_t r = rng() % 1000;
    if (r == 0) f = 0.f;
    else if (r == 1) f = -0.f;
    else if (r == 2) f = 1e-39f;  // subnormal in BF16 too
    else if (r == 3) f = 3e5f;
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint16_t w = uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
    std::memcpy(out.data() + 2 * i, &w, 2);
  }
  return out;
}

// The default mix: several chunks with a short last one (odd sizes), a tensor of one short
// chunk, one whose chunks end 8 elements past a 16-element group (the kernels' scalar tails).
inline std::vector<LosslessTensor> DefaultLosslessTensors() {
  return {
      {"model.layers.0.mlp.up_proj.weight", {1000, 37}, 16384},  // 5 chunks, last 4232 elems
      {"model.layers.0.self_attn.k_proj.weight", {3001}, 16384},  // 1 chunk, shorter than that
      {"model.layers.1.mlp.down_proj.weight", {129, 255}, 12304},  // 6152: 8 past 16-groups
      {"model.layers.1.self_attn.o_proj.weight", {64, 2048}, 65536},  // 4 full chunks
  };
}

// `zero_bits_of`: a tensor index whose chunk 0 gets its exponent bitstream zeroed before it is
// written, the stored checksum computed over the broken bytes (HctWriter hashes what it gets).
inline LosslessFile MakeLosslessFile(const std::string& path, std::vector<LosslessTensor> ts,
                                     uint32_t substream = 256, int zero_bits_of = -1) {
  LosslessFile f;
  f.path = path;
  f.tensors = std::move(ts);
  auto w = HctWriter::Create(path, /*overwrite=*/true);
  if (!w.ok()) return f;
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    const LosslessTensor& t = f.tensors[i];
    uint64_t n = 1;
    for (uint64_t d : t.shape) n *= d;
    std::vector<std::byte> data = RandomBf16(n, uint32_t(11 + i));
    EncodeOptions o;
    o.lossy = false;
    o.lossless_options.entropy = Entropy::kHuffman;
    o.lossless_options.huff_substream = substream;
    o.lossless_options.chunk_bytes = t.chunk_bytes;
    auto enc = EncodeTensor({data, DType::kBF16, t.shape}, o);
    if (!enc.ok()) return f;
    if (int(i) == zero_bits_of) {
      std::vector<std::byte>& b = enc->chunks[0].bytes;
      auto L = detail::Bf16HuffParseHeader(b);
      if (!L.ok()) return f;
      auto h = detail::HuffParseHeader(std::span<const std::byte>(b).subspan(L->exp_offset));
      if (!h.ok()) return f;
      std::memset(b.data() + L->exp_offset + h->bits_offset, 0,
                  b.size() - L->exp_offset - h->bits_offset);
    }
    if (!w->BeginTensor(t.name, DType::kBF16, t.shape, enc->codec, enc->params).ok()) return f;
    for (const EncodedChunk& c : enc->chunks)
      if (!w->AppendChunk(c.bytes, c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count)
               .ok())
        return f;
    if (!w->EndTensor().ok()) return f;
    f.original.push_back(std::move(data));
    f.codecs.push_back(enc->codec);
    f.chunks.push_back(enc->chunks.size());
  }
  f.ok = w->Finish().ok();
  return f;
}

}  // namespace hct::test
