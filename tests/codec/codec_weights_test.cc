// Codecs on the real shared weights (skipped where ../shared/weights is absent).
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/codec/codec_weights.h"
#include "hct/codec.h"

namespace hct {
namespace {

std::string WeightsDir() {
  if (const char* e = std::getenv("HCT_WEIGHTS_DIR")) return e;
  return HCT_SOURCE_DIR "/../shared/weights";
}

std::vector<std::byte> DecodeAll(const EncodedTensor& enc, const testing::StTensor& t) {
  auto dec = ChunkDecoder::Create(enc.codec, enc.params, t.dtype);
  EXPECT_TRUE(dec.ok()) << dec.status().ToString();
  std::vector<std::byte> out(t.data.size());
  ParallelFor pf = ThreadsParallelFor(2);
  std::vector<Status> st(enc.chunks.size());
  pf(enc.chunks.size(), [&](size_t i) {
    const EncodedChunk& c = enc.chunks[i];
    const uint64_t off = *DTypeBytes(t.dtype, c.elem_offset);
    const uint64_t len = *DTypeBytes(t.dtype, c.elem_count);
    st[i] = dec->Decode(c.bytes, ChunkMeta(c), std::span(out).subspan(off, len));
  });
  for (const Status& s : st) EXPECT_TRUE(s.ok()) << t.name << ": " << s.ToString();
  return out;
}

TEST(CodecWeights, LosslessBitExactOnAllSharedWeights) {
  const auto files = testing::SafetensorsFiles(WeightsDir());
  if (files.empty()) GTEST_SKIP() << "no weights under " << WeightsDir();
  EncodeOptions o;
  o.parallel = ThreadsParallelFor(2);
  for (const std::string& f : files) {
    auto file = testing::LoadSafetensors(f);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    uint64_t orig = 0, stored = 0;
    for (const auto& t : file->tensors) {
      auto enc = EncodeTensor(t.view(), o);
      ASSERT_TRUE(enc.ok()) << t.name << ": " << enc.status().ToString();
      orig += t.data.size(), stored += enc->metrics.stored_bytes;
      const std::vector<std::byte> back = DecodeAll(*enc, t);
      ASSERT_TRUE(std::equal(back.begin(), back.end(), t.data.begin(), t.data.end()))
          << f << ": " << t.name;
    }
    EXPECT_LE(stored, orig) << f;
    if (f.find("kdoc-lm-25m") != std::string::npos)  // BF16: exponent planes pay off
      EXPECT_GT(static_cast<double>(orig) / stored, 1.45) << f;
  }
}

TEST(CodecWeights, LossyOnKdocMeetsTargetsAndReportsTruthfully) {
  auto file = testing::LoadSafetensors(WeightsDir() + "/kdoc-lm-25m/model-00004-of-00004.safetensors");
  if (!file.ok()) GTEST_SKIP() << file.status().ToString();
  EncodeOptions o;
  o.lossy = true;
  o.parallel = ThreadsParallelFor(2);
  int lossy = 0;
  double bits = 0, elems = 0;
  for (const auto& t : file->tensors) {
    if (!ChooseCodecClass(t.name, t.dtype, t.shape, {}).lossy) continue;
    auto int4 = RtnInt4Group(t.view());
    ASSERT_TRUE(int4.ok());
    o.lossy_options.max_error = int4->rel_rms_error;
    auto enc = EncodeTensor(t.view(), o);
    ASSERT_TRUE(enc.ok()) << t.name << ": " << enc.status().ToString();
    ASSERT_TRUE(IsDctqCodec(enc->codec)) << t.name;
    EXPECT_LE(enc->metrics.rel_rms_error, int4->rel_rms_error * 1.01) << t.name;
    EXPECT_GE(enc->metrics.rel_rms_error, int4->rel_rms_error * 0.95) << t.name;
    auto q = MeasureQuality(t.data, DecodeAll(*enc, t), t.dtype);
    ASSERT_TRUE(q.ok());
    EXPECT_NEAR(q->rel_rms_error, enc->metrics.rel_rms_error, 1e-6) << t.name;
    bits += enc->metrics.stored_bytes * 8.0, elems += t.elements();
    ++lossy;
  }
  EXPECT_GT(lossy, 5);
  // Measured 3.40 over the model; INT4-g128 at the same error costs 4.125.
  EXPECT_LT(bits / elems, 3.5);
}

}  // namespace
}  // namespace hct
