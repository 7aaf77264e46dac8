// Tensor-parallel slices on the GPU (runtime/slice.cc): every slice of random tensors of every
// dtype in odd shapes, both dimensions, from plain ranges (one-shot and resident), checksummed
// ranges (the widened read and its device-side copy, into runtime and caller memory) and HCT
// files equals the slice cut element by element on the host from the full load (HCT lossy: from
// the GPU's own full load, the same kernels on the same chunks, and close to the CPU decoder).
// Skips without a GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>

#include "gpu_test_util.h"
#include "hct/runtime.h"
#include "runtime/runtime_hct_util.h"
#include "runtime/runtime_test_util.h"
#include "runtime/slice_test_util.h"

namespace hct {
namespace {

using test::TempDir;

std::vector<std::byte> ToHost(const LoadedTensor& t) {
  std::vector<std::byte> h(t.bytes());
  EXPECT_TRUE(t.Wait().ok());
  if (!h.empty())
    EXPECT_EQ(cudaMemcpy(h.data(), t.data(), h.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

RuntimeOptions Gpu(int mode) {  // 0 buffered, 1 O_DIRECT, 2 resident
  RuntimeOptions o = test::SmallRing(mode == 1 ? ODirectMode::kOn : ODirectMode::kOff, false);
  o.chunk_bytes = 16 << 10;
  o.staging_bytes = 4 * o.chunk_bytes;
  if (mode == 2) o.resident_budget = 64ull << 20;
  return o;
}

class SliceGpu : public ::testing::TestWithParam<int> {};

TEST_P(SliceGpu, RangesEveryDTypeBothDims) {
  REQUIRE_GPU();
  for (bool sums : {false, true}) {
    auto ts = test::MakeSliceFile(TempDir("slice_gpu") + "/a.bin", 21, sums, sums ? 4096 : 0, 2);
    auto rt = Runtime::Create(Gpu(GetParam()));
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    ASSERT_EQ((*rt)->placement(), Placement::kDevice);
    cudaStream_t s;
    ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    for (const auto& t : ts)
      for (const TensorSlice& sl : test::SlicesToTry(t.spec)) {
        auto got = (*rt)->LoadSlice(t.spec, sl, s);
        ASSERT_TRUE(got.ok()) << test::Describe(t.spec, sl) << ": " << got.status().ToString();
        EXPECT_EQ(ToHost(*got), test::ExpectedSlice(t.bytes, t.spec.dtype, t.spec.shape, sl))
            << test::Describe(t.spec, sl) << (sums ? " (checksums)" : "");
      }
    // Into caller memory (the copy out of a widened read lands there, ordered on the stream).
    const auto& t = ts[size_t(DType::kF32)];
    const TensorSlice sl{SliceDim::kTrailing, 1, 2};
    const auto want = test::ExpectedSlice(t.bytes, t.spec.dtype, t.spec.shape, sl);
    void* dst = nullptr;
    ASSERT_EQ(cudaMalloc(&dst, want.size()), cudaSuccess);
    auto got = (*rt)->LoadSlice(t.spec, sl, s, dst, want.size());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->data(), dst);
    EXPECT_EQ(ToHost(*got), want);
    got = LoadedTensor();
    cudaFree(dst);
    cudaStreamDestroy(s);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, SliceGpu, ::testing::Values(0, 1, 2));

TEST(SliceGpuHct, EqualsFullGpuLoadSliced) {
  REQUIRE_GPU();
  const std::string dir = TempDir("slice_gpu_hct");
  auto descs = test::DefaultDescs();
  descs.push_back({"model.layers.2.mlp.up_proj.weight", DType::kBF16, {67, 41}, true,
                   Transform::kDct, 8});
  auto f = test::MakeHctFile(dir + "/model.hct", descs);
  ASSERT_EQ(f.codecs.size(), descs.size());
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  RuntimeOptions o = test::SmallRing(ODirectMode::kAuto, false);
  o.chunk_bytes = 64 << 10, o.staging_bytes = 2 * o.chunk_bytes;
  o.decode_threads = 4;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  for (size_t i = 0; i < descs.size(); ++i) {
    const TensorSpec* s = cat->Find(descs[i].name);
    ASSERT_NE(s, nullptr);
    auto full = (*rt)->Load(*s);
    ASSERT_TRUE(full.ok()) << full.status().ToString();
    const auto gpu_full = ToHost(*full);
    const auto cpu_full = test::CpuDecoded(f.path, descs[i].name);
    const bool exact = !descs[i].lossy || descs[i].transform == Transform::kNone;
    if (exact) ASSERT_EQ(gpu_full, cpu_full) << descs[i].name;
    for (const TensorSlice& sl : test::SlicesToTry(*s)) {
      auto got = (*rt)->LoadSlice(*s, sl);
      ASSERT_TRUE(got.ok()) << test::Describe(*s, sl) << ": " << got.status().ToString();
      EXPECT_EQ(ToHost(*got), test::ExpectedSlice(gpu_full, s->dtype, s->shape, sl))
          << test::Describe(*s, sl) << " (" << f.codecs[i] << ")";
    }
  }
}

}  // namespace
}  // namespace hct
