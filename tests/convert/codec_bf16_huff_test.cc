// "bf16-huff" (docs/hct-format.md §5.5): bit-exact round trips on random and real BF16 weights,
// the plane split checked against the BF16 bit fields directly, every kind of corrupt payload
// refused with Corruption (never a crash), the golden and must-fail files in tests/data/hct.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bf16_test_util.h"
#include "codec/codec_weights.h"
#include "codec/detail/bf16_huff.h"
#include "codec/detail/huff.h"
#include "hct/codec.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "params_test_util.h"

namespace hct {
namespace {

using test::JsonOf;

using Bytes = std::vector<std::byte>;

using test::GaussianBf16;

Bytes UniformBits(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(2 * n);
  for (auto& x : b) x = std::byte(rng() & 0xff);
  return b;
}

// Order-0 entropy in bits of the BF16 exponent fields (bits 7..14), from the definition.
double ExponentEntropy(const Bytes& b) {
  std::vector<double> f(256, 0);
  const size_t n = b.size() / 2;
  for (size_t i = 0; i < n; ++i) f[(uint8_t(b[2 * i]) >> 7 | uint8_t(b[2 * i + 1]) << 1) & 0xff]++;
  double h = 0;
  for (double c : f)
    if (c) h -= c / double(n) * std::log2(c / double(n));
  return h;
}

EncodeOptions HuffOptions(uint64_t chunk_bytes = 4u << 20, uint32_t k = 2048) {
  EncodeOptions o;
  o.lossless_options.entropy = Entropy::kHuffman;
  o.lossless_options.chunk_bytes = chunk_bytes;
  o.lossless_options.huff_substream = k;
  o.parallel = ThreadsParallelFor(2);
  return o;
}

Result<Bytes> DecodeAll(const EncodedTensor& enc, DType dtype, size_t bytes) {
  HCT_ASSIGN_OR_RETURN(ChunkDecoder dec, ChunkDecoder::Create(enc.codec, enc.params, dtype));
  Bytes out(bytes);
  for (const EncodedChunk& c : enc.chunks) {
    const uint64_t off = *DTypeBytes(dtype, c.elem_offset);
    HCT_RETURN_IF_ERROR(dec.Decode(c.bytes, ChunkMeta(c),
                                   std::span(out).subspan(off, *DTypeBytes(dtype, c.elem_count))));
  }
  return out;
}

TEST(Bf16Huff, PlanesAreTheBf16BitFields) {
  const Bytes b = UniformBits(4099, 7);
  const size_t n = b.size() / 2;
  std::vector<uint8_t> exp(n), rest(n);
  detail::Bf16SplitPlanes(b.data(), n, exp.data(), rest.data());
  for (size_t i = 0; i < n; ++i) {
    const uint16_t w = uint16_t(uint8_t(b[2 * i]) | uint8_t(b[2 * i + 1]) << 8);
    ASSERT_EQ(exp[i], (w >> 7) & 0xff) << i;                        // the 8 exponent bits
    ASSERT_EQ(rest[i], uint8_t((w & 0x7f) << 1 | (w >> 15))) << i;  // mantissa, then sign
  }
  Bytes back(b.size());
  detail::Bf16MergePlanes(exp.data(), rest.data(), n, back.data());
  EXPECT_EQ(back, b);
}

TEST(Bf16Huff, RandomWeightsRoundTripBitExact) {
  // Sizes around the 16-byte padding and the sub-stream boundaries, several chunks.
  for (size_t n : {1u, 15u, 16u, 17u, 2047u, 2048u, 2049u, 100000u, 1000003u}) {
    SCOPED_TRACE(n);
    const Bytes b = GaussianBf16(n, uint32_t(n));
    auto enc = EncodeTensor({b, DType::kBF16, {n}}, HuffOptions(256 << 10));
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    if (n >= 2047) {
      ASSERT_EQ(enc->codec, kCodecBf16Huff);
      EXPECT_EQ(JsonOf(enc->params)["substream"], 2048);
      // 8 raw bits + the exponent plane's order-0 entropy + Huffman redundancy (< 0.1 bit
      // here) + per-chunk headers (16 + 136 + 2 per sub-stream + padding bytes).
      const double h = ExponentEntropy(b);
      const double chunks = double(enc->chunks.size());
      const double header_bits = (chunks * (16 + 15 + 136 + 3) + 2.0 * (n / 2048 + chunks)) * 8;
      EXPECT_LT(enc->metrics.bits_per_weight, 8 + h + 0.1 + header_bits / double(n));
      EXPECT_GT(enc->metrics.bits_per_weight, 8 + h);  // Huffman cannot beat the entropy
    }
    auto back = DecodeAll(*enc, DType::kBF16, b.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, b);
  }
}

TEST(Bf16Huff, ChunkRoundTripOnAnyBitsAndConstants) {
  // Every exponent value, NaN and Inf patterns included: the chunk coder must be exact even
  // where the tensor encoder would keep the raw bytes instead.
  for (uint32_t k : {32u, 2048u, 4096u}) {
    for (const Bytes& b :
         {UniformBits(70001, k), Bytes(2 * 5000, std::byte{0x3f}), Bytes(2 * 33, std::byte{0})}) {
      Bytes p;
      ASSERT_TRUE(detail::Bf16HuffEncodeChunk(b, k, &p).ok());
      EXPECT_EQ(p.size() % 4, 0u);
      Bytes out(b.size());
      Status st = detail::Bf16HuffDecodeChunk(p, k, out);
      ASSERT_TRUE(st.ok()) << st.ToString();
      EXPECT_EQ(out, b);
    }
  }
}

TEST(Bf16Huff, IncompressibleTensorStaysRaw) {
  const Bytes b = UniformBits(1 << 16, 3);
  auto enc = EncodeTensor({b, DType::kBF16, {256, 256}}, HuffOptions());
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->codec, kCodecRaw);
}

TEST(Bf16Huff, OnlyBf16UsesIt) {
  const Bytes b = GaussianBf16(1 << 15, 5);
  auto f16 = EncodeTensor({b, DType::kF16, {1u << 15}}, HuffOptions());
  ASSERT_TRUE(f16.ok());
  EXPECT_EQ(f16->codec, kCodecBytesplitZstd);
  EncodeOptions zstd = HuffOptions();
  zstd.lossless_options.entropy = Entropy::kZstd;
  auto z = EncodeTensor({b, DType::kBF16, {1u << 15}}, zstd);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->codec, kCodecBytesplitZstd);
}

TEST(Bf16Huff, ParamsAreChecked) {
  const nlohmann::json good = {{"substream", 2048}, {"split", "exp"}, {"entropy", "huff"}};
  EXPECT_TRUE(ChunkDecoder::Create(kCodecBf16Huff, good.dump(), DType::kBF16).ok());
  EXPECT_EQ(ChunkDecoder::Create(kCodecBf16Huff, good.dump(), DType::kF16).status().code(),
            Code::kCorruption);
  for (const nlohmann::json& bad :
       {nlohmann::json::object(), nlohmann::json{{"substream", 33}},
        nlohmann::json{{"substream", 0}}, nlohmann::json{{"substream", 8192}},
        nlohmann::json{{"substream", -32}}, nlohmann::json{{"substream", "2048"}},
        nlohmann::json{{"substream", 2048.5}}}) {
    auto d = ChunkDecoder::Create(kCodecBf16Huff, bad.dump(), DType::kBF16);
    EXPECT_EQ(d.status().code(), Code::kCorruption) << bad.dump();
  }
}

// One encoded chunk of Gaussian weights, for the corruption tests.
struct OneChunk {
  Bytes src, payload;
  ChunkMeta meta;
  ChunkDecoder dec;
};
OneChunk MakeChunk(size_t n = 5000) {
  OneChunk c;
  c.src = GaussianBf16(n, 11);
  auto enc = EncodeTensor({c.src, DType::kBF16, {n}}, HuffOptions(1 << 20, 256));
  EXPECT_TRUE(enc.ok());
  EXPECT_EQ(enc->codec, kCodecBf16Huff);
  c.payload = enc->chunks[0].bytes;
  c.meta = ChunkMeta(enc->chunks[0]);
  c.dec = *ChunkDecoder::Create(enc->codec, enc->params, DType::kBF16);
  return c;
}

void ExpectCorrupt(const OneChunk& c, const Bytes& p, const std::string& what) {
  Bytes out(c.src.size());
  Status st = c.dec.Decode(p, c.meta, out);
  EXPECT_EQ(st.code(), Code::kCorruption) << what << ": " << st.ToString();
}

TEST(Bf16Huff, CorruptPayloadsAreRefused) {
  const OneChunk c = MakeChunk();
  const uint64_t n = c.src.size() / 2;
  auto with = [&](size_t at, uint32_t v) {
    Bytes p = c.payload;
    std::memcpy(&p[at], &v, 4);
    return p;
  };
  ExpectCorrupt(c, with(0, uint32_t(n + 1)), "element count");
  ExpectCorrupt(c, with(0, 0), "zero elements");
  ExpectCorrupt(c, with(4, uint32_t(detail::Bf16HuffExpOffset(n) + 16)), "exponent offset");
  ExpectCorrupt(c, with(8, 1), "reserved bytes");
  ExpectCorrupt(c, with(16 + 100, 0x01020304), "rest plane bytes (decoded checksum)");
  for (size_t cut :
       {size_t(0), size_t(10), size_t(16 + n), c.payload.size() - 4, c.payload.size() - 1}) {
    ExpectCorrupt(c, Bytes(c.payload.begin(), c.payload.begin() + cut), "truncated");
  }
  Bytes longer = c.payload;
  longer.resize(longer.size() + 4);
  ExpectCorrupt(c, longer, "trailing bytes");
  // Sub-stream size of the payload differs from the params'.
  auto other = ChunkDecoder::Create(kCodecBf16Huff, R"({"substream": 2048})", DType::kBF16);
  Bytes out(c.src.size());
  EXPECT_EQ(other->Decode(c.payload, c.meta, out).code(), Code::kCorruption);
  // Wrong element count in the chunk metadata.
  ChunkMeta m = c.meta;
  m.decoded_size -= 2, m.elem_count -= 1;
  Bytes shorter(m.decoded_size);
  EXPECT_EQ(c.dec.Decode(c.payload, m, shorter).code(), Code::kCorruption);
}

TEST(Bf16Huff, EveryFlippedByteIsCaught) {
  const OneChunk c = MakeChunk(600);
  Bytes out(c.src.size());
  for (size_t i = 0; i < c.payload.size(); ++i) {
    Bytes p = c.payload;
    p[i] ^= std::byte{0x10};
    Status st = c.dec.Decode(p, c.meta, out);
    ASSERT_EQ(st.code(), Code::kCorruption) << "byte " << i << ": " << st.ToString();
  }
}

std::string WeightsDir() {
  if (const char* e = std::getenv("HCT_WEIGHTS_DIR")) return e;
  return HCT_SOURCE_DIR "/../shared/weights";
}

TEST(Bf16Huff, RealBf16WeightsRoundTripAndBeatBytesplit) {
  const auto files = testing::SafetensorsFiles(WeightsDir() + "/kdoc-lm-25m");
  if (files.empty()) GTEST_SKIP() << "no kdoc-lm-25m under " << WeightsDir();
  uint64_t orig = 0, huff = 0, zstd = 0;
  EncodeOptions zo = HuffOptions();
  zo.lossless_options.entropy = Entropy::kZstd;
  for (const std::string& f : files) {
    auto file = testing::LoadSafetensors(f);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    for (const auto& t : file->tensors) {
      ASSERT_EQ(t.dtype, DType::kBF16) << t.name;
      auto enc = EncodeTensor(t.view(), HuffOptions());
      ASSERT_TRUE(enc.ok()) << t.name << ": " << enc.status().ToString();
      auto z = EncodeTensor(t.view(), zo);
      ASSERT_TRUE(z.ok());
      orig += t.data.size(), huff += enc->metrics.stored_bytes, zstd += z->metrics.stored_bytes;
      auto back = DecodeAll(*enc, t.dtype, t.data.size());
      ASSERT_TRUE(back.ok()) << t.name << ": " << back.status().ToString();
      ASSERT_TRUE(std::equal(back->begin(), back->end(), t.data.begin(), t.data.end())) << t.name;
    }
  }
  const double ratio = double(orig) / double(huff);
  RecordProperty("ratio", std::to_string(ratio));
  EXPECT_GT(ratio, 1.45);
  EXPECT_LT(huff, zstd) << "bf16-huff " << huff << " bytes, bytesplit-zstd " << zstd;
}

// ---- Golden and must-fail files (tests/data/hct/bf16_huff*.hct) ------------------------------
// HCT_REGEN_TESTDATA=1 rewrites them; otherwise the committed bytes must equal the generator's.

std::string DataDir() { return std::string(HCT_TEST_DATA_DIR) + "/hct"; }

// The golden tensor: BF16 [40, 64] with values from a formula (exact in BF16).
constexpr size_t kGoldenN = 40 * 64;
uint16_t GoldenWord(size_t i) {
  const float f = float(int(i * 37 % 101) - 50) * std::ldexp(1.0f, -int(i % 7) - 6);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t(u >> 16);  // |value| has at most 7 significant bits: exact
}
Bytes GoldenBytes() {
  Bytes b(2 * kGoldenN);
  for (size_t i = 0; i < kGoldenN; ++i) {
    const uint16_t w = GoldenWord(i);
    std::memcpy(&b[2 * i], &w, 2);
  }
  return b;
}

// Writes tensor "w" from `enc` (optionally with edited params/dtype/first payload) to `path`.
Status WriteGolden(const std::string& path, const EncodedTensor& enc, DType dtype,
                   const std::string& params, const Bytes* first_payload) {
  std::filesystem::remove(path);
  HCT_ASSIGN_OR_RETURN(HctWriter w, HctWriter::Create(path, /*overwrite=*/true));
  HCT_RETURN_IF_ERROR(w.SetMetadata("converter", "hct-test"));
  HCT_RETURN_IF_ERROR(w.BeginTensor("w", dtype, {40, 64}, enc.codec, params));
  for (size_t i = 0; i < enc.chunks.size(); ++i) {
    const EncodedChunk& c = enc.chunks[i];
    const Bytes& bytes = (i == 0 && first_payload) ? *first_payload : c.bytes;
    HCT_RETURN_IF_ERROR(
        w.AppendChunk(bytes, c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count));
  }
  HCT_RETURN_IF_ERROR(w.EndTensor());
  return w.Finish();
}

Bytes ReadFileBytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> v((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes b(v.size());
  if (!v.empty()) std::memcpy(b.data(), v.data(), v.size());
  return b;
}

// Generates `file` in a temporary folder and compares it with (or, regenerating, copies it to)
// the committed one; returns the committed path.
std::string CheckGolden(const std::string& file, DType dtype, const nlohmann::json* params,
                        const Bytes* first_payload, EncodedTensor* enc_out = nullptr) {
  auto enc = EncodeTensor({GoldenBytes(), DType::kBF16, {40, 64}}, HuffOptions(4096, 256));
  EXPECT_TRUE(enc.ok());
  EXPECT_EQ(enc->codec, kCodecBf16Huff);
  EXPECT_EQ(enc->chunks.size(), 2u);
  const std::string tmp = ::testing::TempDir() + "/" + file;
  Status st = WriteGolden(tmp, *enc, dtype, params ? params->dump() : enc->params, first_payload);
  EXPECT_TRUE(st.ok()) << st.ToString();
  const std::string committed = DataDir() + "/" + file;
  if (std::getenv("HCT_REGEN_TESTDATA"))
    std::filesystem::copy_file(tmp, committed, std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(ReadFileBytes(committed), ReadFileBytes(tmp))
      << committed << " differs from the generator's output (format change? see README.md)";
  if (enc_out) *enc_out = *enc;
  return committed;
}

TEST(Bf16HuffData, GoldenFileDecodesToTheFormula) {
  EncodedTensor enc;
  const std::string path = CheckGolden("bf16_huff.hct", DType::kBF16, nullptr, nullptr, &enc);
  auto f = HctFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const TensorEntry* t = f->Find("w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->codec, "bf16-huff");
  EXPECT_EQ(JsonOf(t->codec_params)["substream"], 256);
  ASSERT_EQ(t->chunks.size(), 2u);
  Bytes out(2 * kGoldenN);
  Status st = DecodeTensor(*f, *t, out);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(out, GoldenBytes());
  // The layout by hand (§5.5): header, then the rest plane = mantissa << 1 | sign of each word.
  auto chunk = f->ReadChunk(*t, 0);
  ASSERT_TRUE(chunk.ok());
  const Bytes& p = *chunk;
  uint32_t n, off;
  std::memcpy(&n, p.data(), 4);
  std::memcpy(&off, p.data() + 4, 4);
  EXPECT_EQ(n, 2048u);
  EXPECT_EQ(off, 16u + 2048u);
  for (size_t i = 0; i < n; ++i) {
    const uint16_t w = GoldenWord(i);
    ASSERT_EQ(uint8_t(p[16 + i]), uint8_t((w & 0x7f) << 1 | w >> 15)) << i;
  }
  uint32_t huff_n;
  std::memcpy(&huff_n, p.data() + off, 4);
  EXPECT_EQ(huff_n, 2048u);  // the exponent plane's §5.4 header
}

TEST(Bf16HuffData, MustFailFiles) {
  auto enc = EncodeTensor({GoldenBytes(), DType::kBF16, {40, 64}}, HuffOptions(4096, 256));
  ASSERT_TRUE(enc.ok());
  const Bytes& p0 = enc->chunks[0].bytes;
  Bytes bad_offset = p0, bad_length = p0;
  const uint32_t off = uint32_t(detail::Bf16HuffExpOffset(2048) + 16);
  std::memcpy(bad_offset.data() + 4, &off, 4);
  bad_length[detail::Bf16HuffExpOffset(2048) + 8] = std::byte{0xff};  // code length 15
  const nlohmann::json bad_k = {{"split", "exp"}, {"entropy", "huff"}, {"substream", 33}};
  struct Case {
    std::string file;
    DType dtype;
    const nlohmann::json* params;
    const Bytes* payload;
    std::string fragment;
  };
  const Case cases[] = {
      {"bf16_huff_bad_offset.hct", DType::kBF16, nullptr, &bad_offset, "exponent offset"},
      {"bf16_huff_bad_code.hct", DType::kBF16, nullptr, &bad_length, "code length 15"},
      {"bf16_huff_bad_substream.hct", DType::kBF16, &bad_k, nullptr, "substream 33"},
      {"bf16_huff_f16.hct", DType::kF16, nullptr, nullptr, "bf16-huff with dtype F16"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    const std::string path = CheckGolden(c.file, c.dtype, c.params, c.payload);
    auto f = HctFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();  // the container is sound
    ASSERT_TRUE(f->VerifyData().ok());             // stored checksums match
    Bytes out(2 * kGoldenN);
    Status st = DecodeTensor(*f, *f->Find("w"), out);
    EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find(c.fragment), std::string::npos) << st.ToString();
  }
}

}  // namespace
}  // namespace hct
