// Lossless BF16 ("bf16-huff") on the runtime's GPU compressed path (runtime/detail/lossless_gpu.h,
// issue 12 item 3): random BF16 tensors of odd sizes encoded with bf16-huff load bit-exact with
// the source, through GPU groups (several chunks per slot), groups cut by small slots and chunks
// too big for a slot (the CPU decoder's fallback); a flipped stored byte and a bitstream broken
// under a valid checksum are both refused naming the tensor, nothing handed out.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "hct/runtime.h"
#include "runtime/runtime_lossless_util.h"
#include "runtime/runtime_hct_util.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

std::vector<std::byte> ToHost(const LoadedTensor& t) {
  std::vector<std::byte> h(t.bytes());
  EXPECT_TRUE(t.Wait().ok());
  EXPECT_EQ(cudaMemcpy(h.data(), t.data(), h.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// 0: 1 MiB slots (every tensor in one or two groups), 1: 64 KiB slots (groups of a few chunks;
// the 64 KiB chunks of the last tensor fit no slot: CPU decode), 2: the shared 8 KiB ring (no
// chunk fits: everything on the CPU decoder, the reference of the other two).
RuntimeOptions Opts(int mode) {
  RuntimeOptions o = test::SmallRing(ODirectMode::kAuto, false);
  o.decode_threads = 3;
  o.streams = 3;
  if (mode == 0) o.hct_slot_bytes = 1 << 20, o.hct_staging_bytes = 4 << 20;
  if (mode == 1) o.hct_slot_bytes = 64 << 10, o.hct_staging_bytes = 3 * (64 << 10);
  return o;
}

class LosslessGpu : public ::testing::TestWithParam<int> {};

TEST_P(LosslessGpu, LoadsBitExact) {
  REQUIRE_GPU();
  const std::string dir = test::TempDir("lossless_gpu_" + std::to_string(GetParam()));
  auto f = test::MakeLosslessFile(dir + "/model.hct", test::DefaultLosslessTensors());
  ASSERT_TRUE(f.ok);
  for (size_t i = 0; i < f.codecs.size(); ++i) ASSERT_EQ(f.codecs[i], "bf16-huff") << i;
  EXPECT_EQ(f.chunks[0], 5u);
  EXPECT_EQ(f.chunks[1], 1u);
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  auto rt = Runtime::Create(Opts(GetParam()));
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  ASSERT_EQ((*rt)->placement(), Placement::kDevice);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  uint64_t chunks = 0;
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    auto t = (*rt)->Load(*cat->Find(f.tensors[i].name), s);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(ToHost(*t), f.original[i]) << f.tensors[i].name;
    chunks += f.chunks[i];
  }
  for (int rep = 0; rep < 3; ++rep) {  // packed, the ring wrapping
    auto all = (*rt)->LoadMany(cat->tensors(), s);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    for (const auto& t : *all) {
      size_t i = 0;
      while (f.tensors[i].name != t.spec().name) ++i;
      EXPECT_EQ(ToHost(t), f.original[i]) << t.spec().name << " rep " << rep;
    }
  }
  const RuntimeStats st = (*rt)->stats();
  EXPECT_EQ(st.hct_chunks, 4 * chunks);
  // Which path decoded what: mode 0 all on the GPU; mode 1 all but the last tensor's 4 chunks;
  // mode 2 none (the decoder of the reference result).
  const uint64_t gpu = GetParam() == 0 ? chunks : GetParam() == 1 ? chunks - 4 : 0;
  EXPECT_EQ(st.hct_bf16_gpu_chunks, 4 * gpu);
  cudaStreamDestroy(s);
}

INSTANTIATE_TEST_SUITE_P(Slots, LosslessGpu, ::testing::Values(0, 1, 2));

// The resident tier: the file mapped and registered within resident_budget, the groups' stored
// bytes DMA'd from the registered pages (no pread), decoded on the GPU, bit-exact.
TEST(LosslessGpuTest, ResidentLoadsBitExact) {
  REQUIRE_GPU();
  const std::string dir = test::TempDir("lossless_gpu_resident");
  auto f = test::MakeLosslessFile(dir + "/model.hct", test::DefaultLosslessTensors());
  ASSERT_TRUE(f.ok);
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  RuntimeOptions o = Opts(0);
  o.resident_budget = 64 << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  uint64_t chunks = 0;
  for (size_t n : f.chunks) chunks += n;
  for (int rep = 0; rep < 3; ++rep) {
    auto all = (*rt)->LoadMany(cat->tensors());
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    for (const auto& t : *all) {
      size_t i = 0;
      while (f.tensors[i].name != t.spec().name) ++i;
      EXPECT_EQ(ToHost(t), f.original[i]) << t.spec().name << " rep " << rep;
    }
  }
  const RuntimeStats st = (*rt)->stats();
  EXPECT_EQ(st.resident_files, 1u) << st.resident_fallback;
  EXPECT_EQ(st.loads_hct_resident, 3 * f.tensors.size());
  EXPECT_EQ(st.hct_bf16_gpu_chunks, 3 * chunks);
}

TEST(LosslessGpuTest, FlippedStoredByteRefused) {
  REQUIRE_GPU();
  const std::string dir = test::TempDir("lossless_gpu_flip");
  auto f = test::MakeLosslessFile(dir + "/model.hct", test::DefaultLosslessTensors());
  ASSERT_TRUE(f.ok);
  const std::string bad = f.tensors[0].name, good = f.tensors[1].name;
  test::FlipByte(f.path, test::ChunkByteOffset(f.path, bad, 2, 5000));
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  for (bool verify : {true, false}) {  // the GPU path checks the stored bytes either way
    RuntimeOptions o = Opts(0);
    o.verify = verify;
    auto rt = Runtime::Create(o);
    ASSERT_TRUE(rt.ok());
    auto t = (*rt)->Load(*cat->Find(bad));
    ASSERT_FALSE(t.ok());
    EXPECT_TRUE(test::IsChecksumFailure(t.status(), f.path, bad));
    EXPECT_NE(t.status().message().find("chunk 2"), std::string::npos) << t.status().ToString();
    auto all = (*rt)->LoadMany(cat->tensors());
    ASSERT_FALSE(all.ok());  // nothing handed out
    EXPECT_NE(all.status().message().find("tensor '" + bad + "'"), std::string::npos);
    auto g = (*rt)->Load(*cat->Find(good));  // the runtime still works
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_EQ(ToHost(*g), f.original[1]);
  }
  // Resident: the chunks are hashed when the file becomes resident.
  RuntimeOptions o = Opts(0);
  o.resident_budget = 64 << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  auto t = (*rt)->LoadMany(cat->tensors());
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(test::IsChecksumFailure(t.status(), f.path, bad));
}

// A chunk whose exponent bitstream is zeroed but whose stored checksum matches (a broken writer):
// the CPU-side header check passes, the GPU decoder's sub-stream check does not.
TEST(LosslessGpuTest, BitstreamBrokenUnderValidChecksumRefused) {
  REQUIRE_GPU();
  const std::string dir = test::TempDir("lossless_gpu_bits");
  auto f = test::MakeLosslessFile(dir + "/model.hct", test::DefaultLosslessTensors(), 256, 0);
  ASSERT_TRUE(f.ok);
  const std::string bad = f.tensors[0].name;
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  auto rt = Runtime::Create(Opts(0));
  ASSERT_TRUE(rt.ok());
  for (int rep = 0; rep < 2; ++rep) {
    auto t = (*rt)->LoadMany(cat->tensors());
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), Code::kCorruption) << t.status().ToString();
    EXPECT_NE(t.status().message().find("tensor '" + bad + "'"), std::string::npos)
        << t.status().ToString();
    EXPECT_NE(t.status().message().find("GPU decoder"), std::string::npos)
        << t.status().ToString();
    // No stale error word: the other tensors load, bit-exact.
    for (size_t i = 1; i < f.tensors.size(); ++i) {
      auto g = (*rt)->Load(*cat->Find(f.tensors[i].name));
      ASSERT_TRUE(g.ok()) << g.status().ToString();
      EXPECT_EQ(ToHost(*g), f.original[i]) << f.tensors[i].name;
    }
  }
}

}  // namespace
}  // namespace hct
