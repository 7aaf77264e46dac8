// The compressed path on the GPU: HCT tensors decoded by the runtime (CPU zstd, GPU kernels)
// equal the CPU reference decoder's output: bit-exact for lossless and identity-transform
// tensors, within the kernel's rounding (one BF16/F16 ulp on rare elements) for DCT tensors.
// Pinned memory stays the ring; corruption refused naming the tensor; cache path leased.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "gpu_test_util.h"
#include "hct/codec.h"
#include "hct/runtime.h"
#include "runtime/runtime_hct_util.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

using test::TempDir;



std::vector<std::byte> ToHost(const LoadedTensor& t) {
  std::vector<std::byte> h(t.bytes());
  EXPECT_TRUE(t.Wait().ok());
  EXPECT_EQ(cudaMemcpy(h.data(), t.data(), h.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// Lossy DCT outputs: every element within one ulp of the reference in the output dtype (F32:
// 1e-5 of the tensor's max), and at most 1% of them different at all.
void ExpectClose(const std::vector<std::byte>& got, const std::vector<std::byte>& want, DType dt,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const uint64_t n = got.size() / (dt == DType::kF32 ? 4 : 2);
  std::vector<float> a(n), b(n);
  ASSERT_TRUE(ToFloat(got, dt, a).ok());
  ASSERT_TRUE(ToFloat(want, dt, b).ok());
  float maxabs = 0;
  for (float x : b) maxabs = std::max(maxabs, std::fabs(x));
  const int mant = dt == DType::kBF16 ? 7 : dt == DType::kF16 ? 10 : 23;
  uint64_t diff = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (a[i] == b[i]) continue;
    ++diff;
    const float m = std::max(std::fabs(a[i]), std::fabs(b[i]));
    const float ulp = dt == DType::kF32 ? 1e-5f * maxabs : std::ldexp(1.f, std::ilogb(m) - mant);
    ASSERT_LE(std::fabs(a[i] - b[i]), ulp) << what << " element " << i;
  }
  EXPECT_LE(diff * 100, n) << what << ": " << diff << " of " << n << " elements differ";
}

class HctGpu : public ::testing::TestWithParam<int> {};  // 0: chunks fit the ring, 1: they don't

TEST_P(HctGpu, MatchesCpuDecoder) {
  REQUIRE_GPU();
  const std::string dir = TempDir("hct_gpu_" + std::to_string(GetParam()));
  // Param 1: lossy chunks of ~8192 symbols do not fit 4096-byte slots (the pageable path).
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs(), 1,
                             GetParam() == 0 ? 1500 : 8192);
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  RuntimeOptions o = test::SmallRing(ODirectMode::kAuto, false);
  o.decode_threads = 4;
  o.streams = 3;
  if (GetParam() == 0) o.chunk_bytes = 64 << 10, o.staging_bytes = 2 * o.chunk_bytes;
  else o.chunk_bytes = 4096, o.staging_bytes = 3 * 4096;  // lossy chunks are larger than a slot
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  ASSERT_EQ((*rt)->placement(), Placement::kDevice);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  auto check = [&](const LoadedTensor& t) {
    size_t i = 0;
    while (f.descs[i].name != t.spec().name) ++i;
    const auto got = ToHost(t);
    const auto want = test::CpuDecoded(f.path, t.spec().name);
    const bool exact = !f.descs[i].lossy || f.descs[i].transform == Transform::kNone;
    if (exact) EXPECT_EQ(got, want) << t.spec().name << " (" << f.codecs[i] << ")";
    else ExpectClose(got, want, f.descs[i].dtype, t.spec().name);
  };
  for (const TensorSpec& spec : cat->tensors()) {
    auto t = (*rt)->Load(spec, s);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_NE(t->event(), nullptr);
    check(*t);
  }
  for (int rep = 0; rep < 3; ++rep) {  // the ring wraps many times
    auto all = (*rt)->LoadMany(cat->tensors(), s);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    for (const auto& t : *all) check(t);
  }
  auto st = (*rt)->stats();
  // Pinned memory is the ring, whatever was loaded; the device scratch ring matches it.
  EXPECT_EQ(st.pinned_staging_bytes, o.staging_bytes / o.chunk_bytes * o.chunk_bytes);
  EXPECT_EQ(st.hct_device_scratch_bytes, st.pinned_staging_bytes);
  EXPECT_GT(st.bytes_hct_decoded, st.pinned_staging_bytes);
  EXPECT_EQ(st.loads_hct, 4 * f.descs.size());
  // DLPack on the GPU.
  auto t = (*rt)->Load(cat->tensors()[0], s);
  ASSERT_TRUE(t.ok());
  auto m = t->ToDLPack();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->dl_tensor.device.device_type, kDLCUDA);
  EXPECT_EQ((*m)->dl_tensor.dtype.code, uint8_t(kDLBfloat));
  (*m)->deleter(*m);
  cudaStreamDestroy(s);
}

INSTANTIATE_TEST_SUITE_P(Ring, HctGpu, ::testing::Values(0, 1));

TEST(HctGpuTest, CallerStreamOrdering) {
  REQUIRE_GPU();
  const std::string dir = TempDir("hct_gpu_order");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  auto rt = Runtime::Create(test::SmallRing(ODirectMode::kOff, false));
  ASSERT_TRUE(rt.ok());
  const TensorSpec& spec = *cat->Find(f.descs[1].name);  // F32, identity: exact
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  void* dst = nullptr;
  ASSERT_EQ(cudaMalloc(&dst, spec.length), cudaSuccess);
  // Poison enqueued on the caller's stream before the load: the load must land after it.
  ASSERT_EQ(cudaMemsetAsync(dst, 0xff, spec.length, s), cudaSuccess);
  auto t = (*rt)->Load(spec, s, dst, spec.length);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::vector<std::byte> h(spec.length);
  ASSERT_EQ(cudaMemcpyAsync(h.data(), dst, h.size(), cudaMemcpyDeviceToHost, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(h, test::CpuDecoded(f.path, spec.name));
  t = LoadedTensor();
  cudaFree(dst);
  cudaStreamDestroy(s);
}

TEST(HctGpuTest, CorruptChunkRefused) {
  REQUIRE_GPU();
  const std::string dir = TempDir("hct_gpu_corrupt");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  const std::string bad = f.descs[3].name;
  test::FlipByte(f.path, test::ChunkByteOffset(f.path, bad, 0, 20));
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  for (bool verify : {true, false}) {
    RuntimeOptions o = test::SmallRing(ODirectMode::kOff, false);
    o.verify = verify;
    auto rt = Runtime::Create(o);
    ASSERT_TRUE(rt.ok());
    auto t = (*rt)->LoadMany(cat->tensors());
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("tensor '" + bad + "'"), std::string::npos)
        << t.status().ToString();
    if (verify) EXPECT_EQ(t.status().code(), Code::kCorruption);
    auto g = (*rt)->Load(*cat->Find(f.descs[0].name));  // the runtime still works
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_TRUE(g->Wait().ok());
  }
}

}  // namespace
}  // namespace hct
