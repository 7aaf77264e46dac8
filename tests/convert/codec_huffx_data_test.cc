// dctq-huffx golden and must-fail files (tests/data/hct/README.md, docs/hct-format.md §5.6):
// the committed files must equal what the encoder writes for a fixed input (a format change is
// noticed), the golden one decodes to the input's exact values, and each must-fail one is
// refused by the codec layer with its documented error (the container itself is sound).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "codec/detail/huff.h"
#include "hct/codec.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "params_test_util.h"

namespace hct {
namespace {

using Bytes = std::vector<std::byte>;
using test::JsonOf;

constexpr size_t kRows = 40, kCols = 64, kN = kRows * kCols;

// q_i = (i*37 mod 101 - 50) * 2^(i mod 9): |q| <= 12800, so every direct symbol and escape
// classes 0..~16 occur; at most 7 significant bits, so q_i * 2^-10 is exact in BF16 and the
// step-2^-10 quantizer without transform gives back q_i exactly.
int QWord(size_t i) { return (int(i * 37 % 101) - 50) * (1 << (i % 9)); }
float Value(size_t i) { return std::ldexp(float(QWord(i)), -10); }
Bytes InputBf16() {
  Bytes b(2 * kN);
  for (size_t i = 0; i < kN; ++i) {
    float f = Value(i);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint16_t w = uint16_t(u >> 16);
    std::memcpy(&b[2 * i], &w, 2);
  }
  return b;
}

Result<EncodedTensor> EncodeGolden() {
  EncodeOptions o;
  o.lossy = true;
  o.lossy_options.mode = RateMode::kStep;
  o.lossy_options.step = std::ldexp(1.0, -10);
  o.lossy_options.transform = Transform::kNone;
  o.lossy_options.entropy = Entropy::kHuffman;
  o.lossy_options.chunk_symbols = 2048;  // 32 rows, then 8
  o.lossy_options.huff_substream = 256;
  o.parallel = ThreadsParallelFor(2);
  return EncodeTensor({InputBf16(), DType::kBF16, {kRows, kCols}}, o);
}

std::string DataDir() { return std::string(HCT_TEST_DATA_DIR) + "/hct"; }

Bytes ReadFileBytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> v((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes b(v.size());
  if (!v.empty()) std::memcpy(b.data(), v.data(), v.size());
  return b;
}

Status WriteFile(const std::string& path, const EncodedTensor& enc, const std::string& params,
                 const Bytes* first_payload) {
  std::filesystem::remove(path);
  HCT_ASSIGN_OR_RETURN(HctWriter w, HctWriter::Create(path, /*overwrite=*/true));
  HCT_RETURN_IF_ERROR(w.SetMetadata("converter", "hct-test"));
  HCT_RETURN_IF_ERROR(w.BeginTensor("w", DType::kBF16, {kRows, kCols}, enc.codec, params));
  for (size_t i = 0; i < enc.chunks.size(); ++i) {
    const EncodedChunk& c = enc.chunks[i];
    const Bytes& bytes = (i == 0 && first_payload) ? *first_payload : c.bytes;
    HCT_RETURN_IF_ERROR(
        w.AppendChunk(bytes, c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count));
  }
  HCT_RETURN_IF_ERROR(w.EndTensor());
  return w.Finish();
}

// Generates `file` in a temporary folder and compares it with (HCT_REGEN_TESTDATA: copies it to)
// the committed one; returns the committed path.
std::string CheckFile(const std::string& file, const EncodedTensor& enc,
                      const nlohmann::json* params, const Bytes* first_payload) {
  const std::string tmp = ::testing::TempDir() + "/" + file;
  Status st = WriteFile(tmp, enc, params ? params->dump() : enc.params, first_payload);
  EXPECT_TRUE(st.ok()) << st.ToString();
  const std::string committed = DataDir() + "/" + file;
  if (std::getenv("HCT_REGEN_TESTDATA"))
    std::filesystem::copy_file(tmp, committed, std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(ReadFileBytes(committed), ReadFileBytes(tmp))
      << committed << " differs from the generator's output (format change? see README.md)";
  return committed;
}

TEST(HuffxData, GoldenFileDecodesToTheFormula) {
  auto enc = EncodeGolden();
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  ASSERT_EQ(enc->codec, kCodecDctqHuffx);
  ASSERT_EQ(enc->chunks.size(), 2u);
  const std::string path = CheckFile("dctq_huffx.hct", *enc, nullptr, nullptr);
  auto f = HctFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const TensorEntry* t = f->Find("w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->codec, "dctq-huffx");
  const nlohmann::json p = JsonOf(t->codec_params);
  EXPECT_EQ(p["symbol_bits"], 16);
  EXPECT_EQ(p["substream"], 256);
  EXPECT_EQ(p["transform"], "none");
  Bytes out(2 * kN);
  Status st = DecodeTensor(*f, *t, out);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(out, InputBf16());
  // The layout by hand (§5.6): u32 n, u32 K, 256 nibble lengths; byte values past the 22
  // negative classes (235..255) have length 0; the first symbol of sub-stream 0 is q_0 = -50,
  // a direct symbol (byte 45).
  auto chunk = f->ReadChunk(*t, 0);
  ASSERT_TRUE(chunk.ok());
  const Bytes& c = *chunk;
  uint32_t n, k;
  std::memcpy(&n, c.data(), 4);
  std::memcpy(&k, c.data() + 4, 4);
  EXPECT_EQ(n, 2048u);
  EXPECT_EQ(k, 256u);
  for (int s = detail::kHuffxNegClass + detail::kHuffxClasses; s < 256; ++s) {
    const uint8_t b = uint8_t(c[8 + s / 2]);
    EXPECT_EQ((s & 1) ? b >> 4 : b & 15, 0) << s;
  }
  std::vector<int16_t> sym(n);
  ASSERT_TRUE(detail::HuffxDecode(c, sym).ok());
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(sym[i], QWord(i)) << i;
}

TEST(HuffxData, MustFailFiles) {
  auto enc = EncodeGolden();
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  const Bytes& p0 = enc->chunks[0].bytes;
  Bytes unused_len = p0;
  unused_len[8 + 240 / 2] = std::byte(uint8_t(unused_len[8 + 240 / 2]) | 0x05);  // byte 240
  nlohmann::json sb8 = JsonOf(enc->params), k4096 = JsonOf(enc->params);
  sb8["symbol_bits"] = 8;
  k4096["substream"] = 4096;  // fine for dctq-huff, over dctq-huffx's 2048
  struct Case {
    std::string file;
    const nlohmann::json* params;
    const Bytes* payload;
    std::string fragment;
  };
  const Case cases[] = {
      {"dctq_huffx_unused_code.hct", nullptr, &unused_len, "code length for unused symbol 240"},
      {"dctq_huffx_symbol_bits_8.hct", &sb8, nullptr, "dctq-huffx params out of range"},
      {"dctq_huffx_substream_4096.hct", &k4096, nullptr, "dctq-huffx params out of range"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    const std::string path = CheckFile(c.file, *enc, c.params, c.payload);
    auto f = HctFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();  // the container is sound
    ASSERT_TRUE(f->VerifyData().ok());             // stored checksums match
    Bytes out(2 * kN);
    Status st = DecodeTensor(*f, *f->Find("w"), out);
    EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find(c.fragment), std::string::npos) << st.ToString();
  }
}

}  // namespace
}  // namespace hct
