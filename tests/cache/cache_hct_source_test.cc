// Warm from HCT sources: tensors decoded through the codec library.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "cache_test_util.h"
#include "hct/cache.h"
#include "hct/codec.h"
#include "hct/container.h"

namespace hct {
namespace {

using namespace hct::testing;

Status WriteEncoded(HctWriter& w, const std::string& name, const std::vector<float>& v,
                    bool lossy) {
  TensorView tv{{reinterpret_cast<const std::byte*>(v.data()), v.size() * 4}, DType::kF32,
                {v.size() / 64, 64}};
  EncodeOptions eo;
  eo.lossy = lossy;
  eo.lossless_options.chunk_bytes = 16 * 1024;  // several chunks
  HCT_ASSIGN_OR_RETURN(EncodedTensor enc, EncodeTensor(tv, eo));
  HCT_RETURN_IF_ERROR(w.BeginTensor(name, DType::kF32, tv.shape, enc.codec, enc.params));
  for (const auto& c : enc.chunks)
    HCT_RETURN_IF_ERROR(w.AppendChunk(c.bytes, c.decoded_size, c.decoded_xxh3, c.elem_offset,
                                      c.elem_count));
  return w.EndTensor();
}

TEST(CacheHctSource, LosslessAndLossyTensorsAreDecoded) {
  TempDir t;
  std::vector<float> a(64 * 256), b(64 * 256);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = std::sin(0.01f * i);
    b[i] = std::cos(0.003f * i) * 0.5f;
  }
  std::string path = t / "m.hct";
  {
    auto w = HctWriter::Create(path, false);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE(WriteEncoded(*w, "model.layers.0.mlp.weight", a, false).ok());
    Status s = WriteEncoded(*w, "model.layers.1.mlp.weight", b, true);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(w->Finish().ok());
  }
  auto c = Cache::Open(t / "cache");
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Warm(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensors_written, 2u);
  auto la = (*c)->LookupTensor("model.layers.0.mlp.weight");
  ASSERT_TRUE(la.ok());
  auto got = ReadRange(la->path, la->offset, la->length);
  ASSERT_EQ(got.size(), a.size() * 4);
  EXPECT_EQ(std::memcmp(got.data(), a.data(), got.size()), 0);  // lossless: exact
  auto lb = (*c)->LookupTensor("model.layers.1.mlp.weight");
  ASSERT_TRUE(lb.ok());
  auto gb = ReadRange(lb->path, lb->offset, lb->length);
  ASSERT_EQ(gb.size(), b.size() * 4);
  // Lossy: close to the original, not garbage.
  double err = 0, ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    float x;
    std::memcpy(&x, gb.data() + 4 * i, 4);
    err += (x - b[i]) * (x - b[i]);
    ref += b[i] * b[i];
  }
  EXPECT_LT(std::sqrt(err / ref), 0.2);
  EXPECT_TRUE((*c)->Verify({.mode = VerifyMode::kDeep})->ok());
  auto models = (*c)->ListModels();
  EXPECT_EQ((*models)[0].source_kind, "hct");
}

}  // namespace
}  // namespace hct
