// hct::LayerStreamer::Options on the GPU: the extra_bytes arena and cyclic passes with a
// consumer that never waits on the host. Each tensor is copied back on the streamer's stream
// behind slow work and dropped at once, so a load that overwrote bytes before the consumer's
// work on them ran would show as wrong bytes. The bytes expected come from the test file writer.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "gpu_test_util.h"
#include "hct/runtime.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

using test::MakeFile;
using test::SmallRing;
using test::TempDir;

class GpuStreamerOptions : public ::testing::TestWithParam<uint64_t> {};  // extra bytes; 0: slots

TEST_P(GpuStreamerOptions, CyclicPassesOrderedOnTheStream) {
  REQUIRE_GPU();
  const int n = 5, per = 3, passes = 3;
  auto f = MakeFile(TempDir("gpu_ls_opts") + "/a.bin", 256u << 10, 51, n, per);
  auto o = SmallRing(ODirectMode::kAuto, false);
  o.chunk_bytes = 64 << 10;
  o.staging_bytes = 256 << 10;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  LayerStreamer::Options lo;
  lo.prefetch = GetParam() ? 0 : 1;
  lo.extra_bytes = GetParam();
  lo.cyclic = true;
  auto ls = LayerStreamer::Create(rt->get(), test::LayersOf(f.specs), lo, s);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  const uint64_t allocs = (*rt)->stats().buffer_allocations;
  uint64_t total = 0;
  for (const auto& b : f.bytes) total += b.size();
  void* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, total), cudaSuccess);
  auto* host = static_cast<unsigned char*>(pinned);
  void* slow = nullptr;  // work queued ahead of each copy, so the copies run late
  const size_t slow_bytes = 256u << 20;
  ASSERT_EQ(cudaMalloc(&slow, slow_bytes), cudaSuccess);
  for (int pass = 0; pass < passes; ++pass) {
    std::memset(host, 0, total);
    uint64_t off = 0;
    for (int i = 0; i < n; ++i) {
      auto l = (*ls)->Next();
      ASSERT_TRUE(l.ok()) << "pass " << pass << ": " << l.status().ToString();
      ASSERT_EQ(l->index, i);
      ASSERT_EQ(l->tensors.size(), size_t(per));
      for (const LoadedTensor& t : l->tensors) {
        ASSERT_EQ(cudaMemsetAsync(slow, pass + i, slow_bytes, s), cudaSuccess);
        ASSERT_EQ(cudaMemcpyAsync(host + off, t.data(), t.bytes(), cudaMemcpyDeviceToHost, s),
                  cudaSuccess);
        off += t.bytes();
      }
    }  // each layer dropped here, before its copies ran
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    off = 0;
    for (size_t k = 0; k < f.bytes.size(); ++k) {
      EXPECT_EQ(std::memcmp(host + off, f.bytes[k].data(), f.bytes[k].size()), 0)
          << "pass " << pass << " layer " << k / per << " tensor " << k % per;
      off += f.bytes[k].size();
    }
  }
  EXPECT_EQ((*rt)->stats().buffer_allocations, allocs);  // nothing allocated after Create
  ls->reset();
  cudaFree(slow);
  cudaFreeHost(pinned);
  cudaStreamDestroy(s);
}

INSTANTIATE_TEST_SUITE_P(ExtraBytes, GpuStreamerOptions,
                         ::testing::Values(uint64_t{0}, uint64_t{4096}, uint64_t{200u << 10}));

}  // namespace
}  // namespace hct
