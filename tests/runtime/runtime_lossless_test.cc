// Lossless BF16 ("bf16-huff") through the runtime on the host (the CPU decoder, CI), and the GPU
// path's group planning (runtime/detail/lossless_gpu.h), which needs no GPU: the same files as
// runtime_lossless_gpu_test.cc load bit-exact with the source; a flipped stored byte and a
// bitstream broken under a valid checksum are refused naming the tensor.
#include <gtest/gtest.h>

#include "hct/runtime.h"
#include "runtime/detail/file_reader.h"
#include "runtime/detail/lossless_gpu.h"
#include "runtime/runtime_hct_util.h"
#include "runtime/runtime_lossless_util.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

std::vector<std::byte> Bytes(const LoadedTensor& t) {
  auto* p = static_cast<const std::byte*>(t.data());
  return {p, p + t.bytes()};
}

RuntimeOptions HostOpts() {
  RuntimeOptions o = test::SmallRing(ODirectMode::kAuto, /*host=*/true);
  o.decode_threads = 3;
  return o;
}

TEST(LosslessHost, LoadsBitExact) {
  const std::string dir = test::TempDir("lossless_host");
  auto f = test::MakeLosslessFile(dir + "/model.hct", test::DefaultLosslessTensors());
  ASSERT_TRUE(f.ok);
  for (size_t i = 0; i < f.codecs.size(); ++i) ASSERT_EQ(f.codecs[i], "bf16-huff") << i;
  EXPECT_EQ(f.chunks[0], 5u);  // several chunks, the last one short
  EXPECT_EQ(f.chunks[1], 1u);  // one chunk shorter than the chunk size
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  auto rt = Runtime::Create(HostOpts());
  ASSERT_TRUE(rt.ok());
  ASSERT_EQ((*rt)->placement(), Placement::kHost);
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    auto t = (*rt)->Load(*cat->Find(f.tensors[i].name));
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(Bytes(*t), f.original[i]) << f.tensors[i].name;
  }
  auto all = (*rt)->LoadMany(cat->tensors());
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  for (const auto& t : *all) {
    size_t i = 0;
    while (f.tensors[i].name != t.spec().name) ++i;
    EXPECT_EQ(Bytes(t), f.original[i]) << t.spec().name;
  }
  EXPECT_EQ((*rt)->stats().hct_bf16_gpu_chunks, 0u);  // the host decodes on the CPU
}

// Resident on the host: the CPU decoder reads the mapping.
TEST(LosslessHost, ResidentLoadsBitExact) {
  const std::string dir = test::TempDir("lossless_host_resident");
  auto f = test::MakeLosslessFile(dir + "/model.hct", test::DefaultLosslessTensors());
  ASSERT_TRUE(f.ok);
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  RuntimeOptions o = HostOpts();
  o.resident_budget = 64 << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  for (int rep = 0; rep < 2; ++rep) {
    auto all = (*rt)->LoadMany(cat->tensors());
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    for (const auto& t : *all) {
      size_t i = 0;
      while (f.tensors[i].name != t.spec().name) ++i;
      EXPECT_EQ(Bytes(t), f.original[i]) << t.spec().name;
    }
  }
  EXPECT_EQ((*rt)->stats().loads_hct_resident, 2 * f.tensors.size())
      << (*rt)->stats().resident_fallback;
}

TEST(LosslessHost, FlippedStoredByteRefused) {
  const std::string dir = test::TempDir("lossless_host_flip");
  auto f = test::MakeLosslessFile(dir + "/model.hct", test::DefaultLosslessTensors());
  ASSERT_TRUE(f.ok);
  const std::string bad = f.tensors[0].name;
  test::FlipByte(f.path, test::ChunkByteOffset(f.path, bad, 2, 5000));
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  auto rt = Runtime::Create(HostOpts());
  ASSERT_TRUE(rt.ok());
  auto t = (*rt)->LoadMany(cat->tensors());
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(test::IsChecksumFailure(t.status(), f.path, bad));
  auto g = (*rt)->Load(*cat->Find(f.tensors[1].name));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(Bytes(*g), f.original[1]);
}

TEST(LosslessHost, BitstreamBrokenUnderValidChecksumRefused) {
  const std::string dir = test::TempDir("lossless_host_bits");
  auto f = test::MakeLosslessFile(dir + "/model.hct", test::DefaultLosslessTensors(), 256, 0);
  ASSERT_TRUE(f.ok);
  const std::string bad = f.tensors[0].name;
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  auto rt = Runtime::Create(HostOpts());
  ASSERT_TRUE(rt.ok());
  auto t = (*rt)->Load(*cat->Find(bad));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kCorruption) << t.status().ToString();
  EXPECT_NE(t.status().message().find("tensor '" + bad + "'"), std::string::npos)
      << t.status().ToString();
  EXPECT_NE(t.status().message().find("chunk 0"), std::string::npos) << t.status().ToString();
}

// Group planning: a group is the longest run of chunks whose layout fits the slot, the layout's
// payloads are 4096-aligned after both descriptor arrays, and nothing is planned off the GPU.
TEST(LosslessGpuPlan, GroupsFitTheSlot) {
  const std::string dir = test::TempDir("lossless_plan");
  auto f = test::MakeLosslessFile(dir + "/model.hct", test::DefaultLosslessTensors());
  ASSERT_TRUE(f.ok);
  auto file = HctFile::Open(f.path);
  ASSERT_TRUE(file.ok());
  const TensorEntry* e = file->Find(f.tensors[0].name);
  ASSERT_NE(e, nullptr);
  detail::HctRef ref;
  ref.entry = e;
  auto dec = ChunkDecoder::Create(e->codec, e->codec_params, e->dtype);
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  ref.decoder = *dec;
  TensorSpec spec;
  spec.dtype = DType::kBF16;
  detail::PlannedRead r;
  r.spec = &spec;
  r.hct = &ref;
  const auto& ch = e->chunks;
  ASSERT_EQ(ch.size(), 5u);
  EXPECT_EQ(detail::Bf16HuffGroupSize(r, 0, 64 << 20, /*gpu=*/false), 0u);
  EXPECT_EQ(detail::Bf16HuffGroupSize(r, 0, 64 << 20, true), 5u);
  EXPECT_EQ(detail::Bf16HuffGroupSize(r, 3, 64 << 20, true), 2u);
  const auto two = detail::Bf16HuffLayoutOf(ch, 0, 2);
  EXPECT_EQ(two.payload_begin, 4096u);
  EXPECT_EQ(two.copy_bytes, 4096 + detail::AlignUp(ch[0].stored_size) +
                                detail::AlignUp(ch[1].stored_size));
  EXPECT_EQ(two.bytes, two.copy_bytes + 2 * 8192);  // two 8192-element exponent planes
  // A slot of exactly two chunks' layout takes two; one byte less takes one; tiny: none.
  EXPECT_EQ(detail::Bf16HuffGroupSize(r, 0, two.bytes, true), 2u);
  EXPECT_EQ(detail::Bf16HuffGroupSize(r, 0, two.bytes - 1, true), 1u);
  EXPECT_EQ(detail::Bf16HuffGroupSize(r, 0, 4096, true), 0u);
  // Each group size is the largest whose layout fits (the planner's running sum = the layout).
  for (size_t m = 1; m <= 5; ++m) {
    const uint64_t b = detail::Bf16HuffLayoutOf(ch, 0, m).bytes;
    EXPECT_EQ(detail::Bf16HuffGroupSize(r, 0, b, true), m) << m;
    EXPECT_EQ(detail::Bf16HuffGroupSize(r, 0, b - 1, true), m - 1) << m;
  }
  spec.dtype = DType::kF16;  // a spec that disagrees with the codec's dtype: generic path
  EXPECT_EQ(detail::Bf16HuffGroupSize(r, 0, 64 << 20, true), 0u);
}

}  // namespace
}  // namespace hct
