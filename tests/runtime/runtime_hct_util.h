// Helpers of the compressed-path tests: small HCT files made with the codec's EncodeTensor and
// HctWriter, and the CPU reference decoder's output to compare with.
#pragma once

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "hct/codec.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "hct/dtype.h"

namespace hct::test {

struct HctTensorDesc {
  std::string name;
  DType dtype;
  std::vector<uint64_t> shape;
  bool lossy = false;
  Transform transform = Transform::kDct;
  int tile = 16;
  bool random_bytes = false;  // incompressible bytes (stored "raw")
  Entropy entropy = Entropy::kHuffman;  // lossy: dctq-huff or dctq-zstd
};

struct HctTestFile {
  std::string path;
  std::vector<HctTensorDesc> descs;
  std::vector<std::vector<std::byte>> original;  // what was encoded
  std::vector<std::string> codecs;
};

inline uint64_t Elements(const std::vector<uint64_t>& shape) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

// Smooth-ish Gaussian data (so that the DCT has something to do) in `dtype`.
inline std::vector<std::byte> FloatData(DType dtype, uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 0.02f);
  std::vector<float> f(n);
  float prev = 0;
  for (auto& x : f) x = prev = 0.6f * prev + g(rng);
  std::vector<std::byte> out(*DTypeBytes(dtype, n));
  if (!FromFloat(f, dtype, out).ok()) out.clear();
  return out;
}

inline std::vector<std::byte> RandomBytes(uint64_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> b(n);
  for (auto& x : b) x = std::byte(rng());
  return b;
}

// Small integers (compressible, lossless).
inline std::vector<std::byte> IntData(DType dtype, uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> b(*DTypeBytes(dtype, n));
  const size_t w = b.size() / n;
  for (uint64_t i = 0; i < n; ++i) {
    int64_t v = int64_t(rng() % 200) - 100;
    std::memcpy(b.data() + i * w, &v, w);  // little-endian low bytes
  }
  return b;
}

// The mix the runtime must handle: lossy DCT (edge tiles, BF16/F16), lossy identity (F32, BF16),
// lossless float (bytesplit), lossless ints, raw; several chunks per tensor.
inline std::vector<HctTensorDesc> DefaultDescs() {
  std::vector<HctTensorDesc> d = {
      {"model.layers.0.self_attn.q_proj.weight", DType::kBF16, {70, 100}, true, Transform::kDct, 16},
      {"model.layers.0.mlp.up_proj.weight", DType::kF32, {48, 64}, true, Transform::kNone},
      {"model.layers.0.input_layernorm.weight", DType::kBF16, {256}, false},
      {"model.layers.1.mlp.down_proj.weight", DType::kF16, {40, 33}, true, Transform::kDct, 8},
      {"model.layers.1.self_attn.o_proj.weight", DType::kBF16, {64, 128}, true, Transform::kNone},
      {"model.layers.1.mlp.gate_proj.weight", DType::kBF16, {32, 96}, false},
      {"model.embed_tokens.idx", DType::kI32, {100, 7}, false},
      {"model.noise", DType::kU8, {3000}, false, Transform::kNone, 16, true},
  };
  d[1].entropy = d[3].entropy = Entropy::kZstd;  // both lossy entropy stages
  return d;
}

inline HctTestFile MakeHctFile(const std::string& path, std::vector<HctTensorDesc> descs,
                               uint32_t seed = 1, uint64_t chunk_symbols = 1500) {
  HctTestFile f;
  f.path = path;
  f.descs = std::move(descs);
  auto w = HctWriter::Create(path, /*overwrite=*/true);
  if (!w.ok()) return f;
  for (size_t i = 0; i < f.descs.size(); ++i) {
    const HctTensorDesc& d = f.descs[i];
    const uint64_t n = Elements(d.shape);
    std::vector<std::byte> data;
    if (d.random_bytes) data = RandomBytes(*DTypeBytes(d.dtype, n), seed + uint32_t(i));
    else if (d.dtype == DType::kBF16 || d.dtype == DType::kF16 || d.dtype == DType::kF32)
      data = FloatData(d.dtype, n, seed + uint32_t(i));
    else data = IntData(d.dtype, n, seed + uint32_t(i));
    EncodeOptions o;
    o.lossy = d.lossy;
    o.lossy_options.transform = d.transform;
    o.lossy_options.tile_r = o.lossy_options.tile_c = d.tile;
    o.lossy_options.max_error = 0.05;
    o.lossy_options.entropy = d.entropy;
    o.lossy_options.huff_substream = 256;  // several sub-streams per chunk
    o.lossy_options.chunk_symbols = chunk_symbols;  // several chunks per tensor
    o.lossless_options.chunk_bytes = 1024;
    auto enc = EncodeTensor({data, d.dtype, d.shape}, o);
    if (!enc.ok()) return f;
    if (!w->BeginTensor(d.name, d.dtype, d.shape, enc->codec, enc->params).ok()) return f;
    for (const EncodedChunk& c : enc->chunks)
      if (!w->AppendChunk(c.bytes, c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count)
               .ok())
        return f;
    if (!w->EndTensor().ok()) return f;
    f.original.push_back(std::move(data));
    f.codecs.push_back(enc->codec);
  }
  if (!w->Finish().ok()) f.codecs.clear();
  return f;
}

// The CPU reference decoder's output of every tensor of `path`, by name.
inline std::vector<std::byte> CpuDecoded(const std::string& path, const std::string& name) {
  auto f = HctFile::Open(path);
  if (!f.ok()) return {};
  const TensorEntry* e = f->Find(name);
  if (!e) return {};
  std::vector<std::byte> out(*DTypeBytes(e->dtype, e->num_elements));
  if (!DecodeTensor(*f, *e, out).ok()) return {};
  return out;
}

// File offset of byte `k` of chunk `c` of tensor `name` (for corrupting it).
inline uint64_t ChunkByteOffset(const std::string& path, const std::string& name, size_t c,
                                uint64_t k) {
  auto f = HctFile::Open(path);
  const TensorEntry* e = f.ok() ? f->Find(name) : nullptr;
  if (!e || c >= e->chunks.size()) return 0;
  return e->chunks[c].offset + std::min(k, e->chunks[c].stored_size - 1);
}

}  // namespace hct::test
