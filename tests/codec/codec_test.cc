// Lossless codecs, decoder validation, conversions, policy and baselines.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <xxhash.h>

#include <nlohmann/json.hpp>

#include "codec/detail/float_convert.h"
#include "hct/codec.h"
#include "params_test_util.h"

namespace hct {
namespace {

using test::JsonOf;

std::vector<std::byte> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> b(n);
  for (auto& x : b) x = static_cast<std::byte>(rng() & 0xff);
  return b;
}

// Decodes every chunk with a fresh decoder and concatenates the outputs.
std::vector<std::byte> DecodeAll(const EncodedTensor& enc, DType dtype, uint64_t total_bytes) {
  auto dec = ChunkDecoder::Create(enc.codec, enc.params, dtype);
  EXPECT_TRUE(dec.ok()) << dec.status().ToString();
  std::vector<std::byte> out(total_bytes);
  for (const EncodedChunk& c : enc.chunks) {
    const uint64_t off = *DTypeBytes(dtype, c.elem_offset);
    const uint64_t len = *DTypeBytes(dtype, c.elem_count);
    Status st = dec->Decode(c.bytes, ChunkMeta(c), std::span(out).subspan(off, len));
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  return out;
}

void PutFloatSpecials(std::vector<std::byte>& b, DType d) {
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::denorm_min(), -0.0f, 1e-40f};
  for (size_t i = 0; i < std::size(specials); ++i) {
    if (d == DType::kF32) std::memcpy(&b[4 * i], &specials[i], 4);
    if (d == DType::kBF16) detail::Store16(&b[2 * i], detail::FloatToBf16(specials[i]));
    if (d == DType::kF16) detail::Store16(&b[2 * i], detail::FloatToF16(specials[i]));
  }
  if (d == DType::kF16) detail::Store16(&b[12], 0x0001);  // F16 denormal
  if (d == DType::kBF16) detail::Store16(&b[12], 0x7fc1);  // NaN with payload
}

TEST(CodecLossless, BitExactOnEveryDtype) {
  for (int di = 0; di < kNumDTypes; ++di) {
    const DType d = static_cast<DType>(di);
    for (uint64_t n : {8ull, 1000ull, 4096ull * 3 + 8}) {
      const uint64_t bytes = *DTypeBytes(d, n);
      std::vector<std::byte> data = RandomBytes(bytes, 17 + di);
      // Half of it compressible (small ints / ordinary floats) so both codecs get exercised.
      for (size_t i = bytes / 2; i < bytes; ++i)
        if (i % 4 != 0) data[i] = std::byte{0};
      PutFloatSpecials(data, d);
      EncodeOptions o;
      o.lossless_options.chunk_bytes = 1000;  // several chunks
      auto enc = EncodeTensor({data, d, {n}}, o);
      ASSERT_TRUE(enc.ok()) << DTypeName(d) << ": " << enc.status().ToString();
      EXPECT_EQ(enc->metrics.rel_rms_error, 0.0);
      uint64_t covered = 0;
      for (const EncodedChunk& c : enc->chunks) {
        EXPECT_EQ(c.elem_offset, covered);
        covered += c.elem_count;
        const uint64_t off = *DTypeBytes(d, c.elem_offset);
        EXPECT_EQ(c.decoded_xxh3, XXH3_64bits(data.data() + off, c.decoded_size));
      }
      EXPECT_EQ(covered, n);
      EXPECT_EQ(DecodeAll(*enc, d, bytes), data) << DTypeName(d) << " n=" << n;
    }
  }
}

TEST(CodecLossless, RandomBytesGoRawCompressibleGoBytesplit) {
  auto noise = RandomBytes(1 << 16, 3);
  auto enc = EncodeTensor({noise, DType::kU8, {1 << 16}}, {});
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->codec, "raw");
  EXPECT_EQ(enc->metrics.bits_per_weight, 8.0);

  // BF16 Gaussian weights: exponent-aligned planes beat plain byte planes.
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0, 0.02f);
  std::vector<std::byte> w(2 << 16);
  for (size_t i = 0; i < w.size() / 2; ++i) detail::Store16(&w[2 * i], detail::FloatToBf16(g(rng)));
  EncodeOptions o;
  o.lossless_options.entropy = Entropy::kZstd;  // bytesplit-zstd (bf16-huff is the default)
  auto exp = EncodeTensor({w, DType::kBF16, {256, 256}}, o);
  o.lossless_options.exponent_planes = false;
  auto plain = EncodeTensor({w, DType::kBF16, {256, 256}}, o);
  ASSERT_TRUE(exp.ok() && plain.ok());
  EXPECT_EQ(exp->codec, "bytesplit-zstd");
  EXPECT_EQ(JsonOf(exp->params)["split"], "exp");
  EXPECT_LT(exp->metrics.bits_per_weight, 12.0);
  EXPECT_LT(exp->metrics.bits_per_weight, plain->metrics.bits_per_weight);
  EXPECT_EQ(DecodeAll(*exp, DType::kBF16, w.size()), w);
  EXPECT_EQ(DecodeAll(*plain, DType::kBF16, w.size()), w);
}

TEST(CodecLossless, DeterministicAcrossThreadCounts) {
  std::vector<std::byte> data = RandomBytes(1 << 20, 9);
  for (size_t i = 0; i < data.size(); i += 2) data[i] = std::byte{0x3c};
  EncodeOptions o;
  o.lossless_options.chunk_bytes = 64 << 10;
  auto one = EncodeTensor({data, DType::kF16, {512, 1024}}, o);
  o.parallel = ThreadsParallelFor(4);
  auto four = EncodeTensor({data, DType::kF16, {512, 1024}}, o);
  ASSERT_TRUE(one.ok() && four.ok());
  ASSERT_EQ(one->chunks.size(), 16u);
  for (size_t i = 0; i < one->chunks.size(); ++i)
    EXPECT_EQ(one->chunks[i].bytes, four->chunks[i].bytes);
}

TEST(CodecLossless, CorruptChunksFailCleanly) {
  std::vector<std::byte> data(1 << 16);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>((i * 7) % 13);
  EncodeOptions zo;
  zo.lossless_options.entropy = Entropy::kZstd;  // bytesplit-zstd (bf16-huff is the default)
  auto enc = EncodeTensor({data, DType::kBF16, {1 << 15}}, zo);
  ASSERT_TRUE(enc.ok());
  ASSERT_EQ(enc->codec, "bytesplit-zstd");
  auto dec = ChunkDecoder::Create(enc->codec, enc->params, DType::kBF16);
  ASSERT_TRUE(dec.ok());
  const EncodedChunk& c = enc->chunks[0];
  std::vector<std::byte> out(c.decoded_size);

  // Flipped bytes inside a zstd frame: a zstd error or a checksum mismatch, never a crash.
  for (size_t pos = 8; pos < c.bytes.size(); pos += 3) {
    std::vector<std::byte> bad = c.bytes;
    bad[pos] ^= std::byte{0x5a};
    Status st = dec->Decode(bad, ChunkMeta(c), out);
    EXPECT_EQ(st.code(), Code::kCorruption) << pos << ": " << st.ToString();
  }
  std::vector<std::byte> cut(c.bytes.begin(), c.bytes.end() - 5);
  EXPECT_EQ(dec->Decode(cut, ChunkMeta(c), out).code(), Code::kCorruption);
  std::vector<std::byte> tiny(c.bytes.begin(), c.bytes.begin() + 3);
  EXPECT_EQ(dec->Decode(tiny, ChunkMeta(c), out).code(), Code::kCorruption);
  ChunkMeta wrong(c);
  wrong.decoded_xxh3 ^= 1;
  Status st = dec->Decode(c.bytes, wrong, out);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("decoded_xxh3 mismatch"), std::string::npos) << st.ToString();

  auto raw = ChunkDecoder::Create("raw", "{}", DType::kU8);
  ASSERT_TRUE(raw.ok());
  std::vector<std::byte> four(4), five(5);
  EXPECT_EQ(raw->Decode(five, ChunkMeta(4, 0, 0, 4), four).code(), Code::kCorruption);
}

TEST(CodecDecoder, RejectsUnknownCodecAndBadParams) {
  EXPECT_EQ(ChunkDecoder::Create("lz77", "{}", DType::kF32).status().code(), Code::kUnsupported);
  // Params that are not a JSON object (or not JSON): Corruption, as from a damaged index.
  EXPECT_EQ(ChunkDecoder::Create("raw", "[]", DType::kU8).status().code(), Code::kCorruption);
  EXPECT_EQ(ChunkDecoder::Create("raw", "{\"a\":", DType::kU8).status().code(),
            Code::kCorruption);
  EXPECT_EQ(ChunkDecoder::Create("bytesplit-zstd", R"({"word_bytes": 4, "rotate_bits": 1})",
                                 DType::kBF16)
                .status()
                .code(),
            Code::kCorruption);
  nlohmann::json p = {{"transform", "dct"}, {"tile_r", 16},  {"tile_c", 16},
                      {"step", 0.01},       {"symbol_bits", 8}, {"rows", 64},
                      {"cols", 64},         {"rows_per_chunk", 32}};
  EXPECT_TRUE(ChunkDecoder::Create("dctq-zstd", p.dump(), DType::kBF16).ok());
  EXPECT_EQ(ChunkDecoder::Create("dctq-zstd", p.dump(), DType::kI32).status().code(), Code::kCorruption);
  for (auto [key, bad] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"transform", "fft"}, {"tile_r", 0}, {"tile_c", 65}, {"step", -1.0},
           {"symbol_bits", 12}, {"rows_per_chunk", 24}, {"cols", "x"}}) {
    nlohmann::json q = p;
    q[key] = bad;
    EXPECT_EQ(ChunkDecoder::Create("dctq-zstd", q.dump(), DType::kBF16).status().code(),
              Code::kCorruption)
        << key;
  }
  p.erase("step");
  EXPECT_EQ(ChunkDecoder::Create("dctq-zstd", p.dump(), DType::kBF16).status().code(), Code::kCorruption);
}

TEST(CodecConvert, RoundToNearestEven) {
  using detail::FloatToBf16;
  using detail::FloatToF16;
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie -> even
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7f80);  // overflow -> Inf
  EXPECT_EQ(FloatToBf16(-2.0f), 0xc000);
  const uint16_t nan = FloatToBf16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(std::isnan(detail::Bf16ToFloat(nan)));
  EXPECT_EQ(FloatToF16(1.0f), 0x3c00);
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even
  EXPECT_EQ(FloatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);                           // rounds up to Inf
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -24)), 0x0001);              // smallest denormal
  EXPECT_EQ(detail::F16ToFloat(0x0001), std::ldexp(1.0f, -24));
}

TEST(CodecPolicy, LosslessClasses) {
  PolicyOptions o;
  const std::vector<uint64_t> mat{512, 512}, vec{512}, tiny{8, 8};
  EXPECT_TRUE(ChooseCodecClass("model.layers.0.mlp.up_proj.weight", DType::kBF16, mat, o).lossy);
  EXPECT_EQ(ChooseCodecClass("model.norm.weight", DType::kBF16, vec, o).reason, "1-D");
  EXPECT_EQ(ChooseCodecClass("x.input_layernorm.weight", DType::kBF16, mat, o).reason, "norm");
  EXPECT_EQ(ChooseCodecClass("conv.bias", DType::kF32, mat, o).reason, "bias");
  EXPECT_EQ(ChooseCodecClass("w", DType::kF32, tiny, o).reason, "small");
  EXPECT_EQ(ChooseCodecClass("w", DType::kI64, mat, o).reason, "dtype I64");
  EXPECT_EQ(ChooseCodecClass("w", DType::kF8_E4M3, mat, o).reason, "dtype F8_E4M3");
  o.keep = {"*.embed_tokens.*", "lm_head*"};
  EXPECT_EQ(ChooseCodecClass("model.embed_tokens.weight", DType::kBF16, mat, o).reason,
            "--keep '*.embed_tokens.*'");
  EXPECT_FALSE(ChooseCodecClass("lm_head.weight", DType::kBF16, mat, o).lossy);
  EXPECT_TRUE(ChooseCodecClass("model.layers.1.q_proj.weight", DType::kBF16, mat, o).lossy);
  o.lossless = true;
  EXPECT_EQ(ChooseCodecClass("model.layers.1.q_proj.weight", DType::kBF16, mat, o).reason,
            "--lossless");
}

TEST(CodecBaselines, RtnErrorsAndBits) {
  // Each group of 128: values k * 0.5 for k in -7..7 -> absmax 3.5, scale 0.5: exact in INT4.
  std::vector<float> x(2 * 256);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.5f * (static_cast<int>(i % 15) - 7);
  std::span<const std::byte> b(reinterpret_cast<const std::byte*>(x.data()), x.size() * 4);
  auto r4 = RtnInt4Group({b, DType::kF32, {2, 256}});
  ASSERT_TRUE(r4.ok());
  EXPECT_EQ(r4->rel_rms_error, 0.0);
  EXPECT_DOUBLE_EQ(r4->bits_per_weight, 4.125);
  // One value off the grid: 0.3 with scale 0.5 -> 0.5, error 0.2.
  x[1] = 0.3f;
  r4 = RtnInt4Group({b, DType::kF32, {2, 256}});
  double ref = 0;
  for (float v : x) ref += static_cast<double>(v) * v;
  EXPECT_NEAR(r4->rel_rms_error, std::sqrt(0.2 * 0.2 / ref), 1e-6);
  auto r8 = RtnInt8PerChannel({b, DType::kF32, {2, 256}});
  ASSERT_TRUE(r8.ok());
  EXPECT_DOUBLE_EQ(r8->bits_per_weight, 8.0 + 16.0 / 256);
  EXPECT_LT(r8->rel_rms_error, 0.01);
}

// Asymmetric RTN, numbers worked out by hand: one group of 128 holding -1.5 + 0.25 k
// (k = i mod 16) has min -1.5, max 2.25, scale 3.75 / 15 = 0.25: all exact in F16 and on the grid.
TEST(CodecBaselines, AsymmetricInt4ByHand) {
  std::vector<float> x(128);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -1.5f + 0.25f * static_cast<float>(i % 16);
  std::span<const std::byte> b(reinterpret_cast<const std::byte*>(x.data()), x.size() * 4);
  const RtnSpec asym4{4, 128, true};
  auto r = RtnGroup({b, DType::kF32, {1, 128}}, asym4);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rel_rms_error, 0.0);
  EXPECT_DOUBLE_EQ(r->bits_per_weight, 4.25);  // 4 + (16 + 16) / 128
  // 0.1 -> (0.1 + 1.5) / 0.25 = 6.4 -> q 6 -> -1.5 + 1.5 = 0: error 0.1 (min, max unchanged).
  x[5] = 0.1f;
  double ref = 0;
  for (float v : x) ref += static_cast<double>(v) * v;
  r = RtnGroup({b, DType::kF32, {1, 128}}, asym4);
  EXPECT_NEAR(r->rel_rms_error, 0.1 / std::sqrt(ref), 1e-7);
  // Symmetric INT4 on the same group: absmax 2.25, scale 2.25 / 7 -> F16 0.3215332 (exact:
  // 0.3214286); worse than asymmetric here since the values are not centred.
  auto s4 = RtnGroup({b, DType::kF32, {1, 128}}, {4, 128, false});
  EXPECT_GT(s4->rel_rms_error, r->rel_rms_error);
  EXPECT_DOUBLE_EQ(s4->bits_per_weight, 4.125);
}

// The F16 rounding of the scale is counted: one group {0, 1, 0.5}, INT3 asymmetric. Scale
// 1/7 = 0.142857 rounds to F16 0.142822265625 (1 + 146/1024) / 8, min 0.
// 1 -> 7.0017 -> q 7 -> 0.999755859375 (error 2^-12); 0.5 -> 3.50085 -> q 4 -> 0.5712890625
// (error 0.0712890625). A row of 3 has one group: 3 + 32 / 3 bits.
TEST(CodecBaselines, AsymmetricInt3ScaleRoundedToF16) {
  std::vector<float> x = {0.0f, 1.0f, 0.5f};
  std::span<const std::byte> b(reinterpret_cast<const std::byte*>(x.data()), x.size() * 4);
  auto r = RtnGroup({b, DType::kF32, {1, 3}}, {3, 128, true});
  ASSERT_TRUE(r.ok());
  const double see = 0.000244140625 * 0.000244140625 + 0.0712890625 * 0.0712890625;
  EXPECT_NEAR(r->sum_sq_err, see, 1e-12);
  EXPECT_DOUBLE_EQ(r->sum_sq_ref, 1.25);
  EXPECT_DOUBLE_EQ(r->bits_per_weight, 3.0 + 32.0 / 3.0);
}

// Symmetric INT3: qmin -4, qmax 3. Group {-3, 3, 1.4, 2.6}: scale 1; 1.4 -> 1 (error 0.4),
// 2.6 -> 3 (error 0.4). Two rows of 200: groups of 128 and 72, 2 scales per row.
TEST(CodecBaselines, SymmetricInt3AndPartialGroups) {
  std::vector<float> x = {-3.0f, 3.0f, 1.4f, 2.6f};
  std::span<const std::byte> b(reinterpret_cast<const std::byte*>(x.data()), x.size() * 4);
  auto r = RtnGroup({b, DType::kF32, {1, 4}}, {3, 128, false});
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->sum_sq_err, 2 * 0.4 * 0.4, 1e-6);  // 1.4f, 2.6f are not exact
  std::vector<float> y(400, 1.0f);
  std::span<const std::byte> yb(reinterpret_cast<const std::byte*>(y.data()), y.size() * 4);
  auto p = RtnGroup({yb, DType::kF32, {2, 200}}, {4, 128, true});
  ASSERT_TRUE(p.ok());
  EXPECT_DOUBLE_EQ(p->bits_per_weight, 4.0 + 2 * 32.0 / 200);
  EXPECT_EQ(p->rel_rms_error, 0.0);  // max == min: scale 0, every value is the min
  EXPECT_FALSE(RtnGroup({yb, DType::kF32, {2, 200}}, {9, 128, true}).ok());
}

}  // namespace
}  // namespace hct
