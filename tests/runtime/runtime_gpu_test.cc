// Runtime on the GPU: bit-exact loads of every dtype (one-shot and resident), event ordering,
// layer streaming with prefetch, corrupted entries refused, DLPack on kDLCUDA. Skips without GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "gpu_test_util.h"
#include "hct/runtime.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

using test::MakeFile;
using test::SmallRing;
using test::TempDir;



std::vector<unsigned char> ToHost(const LoadedTensor& t) {
  std::vector<unsigned char> h(t.bytes());
  EXPECT_TRUE(t.Wait().ok());
  EXPECT_EQ(cudaMemcpy(h.data(), t.data(), h.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

class GpuLoad : public ::testing::TestWithParam<int> {};  // 0 buffered, 1 O_DIRECT, 2 resident

TEST_P(GpuLoad, EveryDTypeBitExact) {
  REQUIRE_GPU();
  auto f = MakeFile(TempDir("gpu_every") + "/a.bin", 300000, 11);
  auto o = SmallRing(GetParam() == 1 ? ODirectMode::kOn : ODirectMode::kOff, false);
  o.chunk_bytes = 64 << 10;
  o.staging_bytes = 4 * o.chunk_bytes;
  if (GetParam() == 2) o.resident_budget = 256ull << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  ASSERT_EQ((*rt)->placement(), Placement::kDevice);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  for (size_t i = 0; i < f.specs.size(); ++i) {
    auto t = (*rt)->Load(f.specs[i], s);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_NE(t->event(), nullptr);
    EXPECT_EQ(ToHost(*t), f.bytes[i]) << f.specs[i].name;
  }
  auto all = (*rt)->LoadMany(f.specs, s);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  for (size_t i = 0; i < f.specs.size(); ++i) EXPECT_EQ(ToHost((*all)[i]), f.bytes[i]);
  auto st = (*rt)->stats();
  if (GetParam() == 2) {
    if (st.resident_fallback.empty()) {
      EXPECT_GT(st.registered_bytes, 0u);
      EXPECT_EQ(st.loads_one_shot, 0u);
    } else {
      std::printf("resident mode refused: %s\n", st.resident_fallback.c_str());
    }
  } else {
    EXPECT_EQ(st.loads_resident, 0u);
    EXPECT_GT(st.pinned_staging_bytes, 0u);
  }
  if (GetParam() == 1) EXPECT_GT(st.bytes_o_direct, 0u);
  cudaStreamDestroy(s);
}

INSTANTIATE_TEST_SUITE_P(Engines, GpuLoad, ::testing::Values(0, 1, 2));

// Work on another stream that waits on the handle's event sees the data; so does later work on
// the caller's stream. The destination is pre-filled on the caller's stream (ordered before).
TEST(GpuLoadTest, EventOrdering) {
  REQUIRE_GPU();
  auto f = MakeFile(TempDir("gpu_order") + "/a.bin", 8u << 20, 12);
  const TensorSpec& spec = f.specs[9];  // ~ 8 MiB
  auto o = SmallRing(ODirectMode::kOff, false);
  o.chunk_bytes = 1 << 20;
  o.staging_bytes = 4 << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  cudaStream_t a, b;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  void* dst = nullptr;
  ASSERT_EQ(cudaMalloc(&dst, spec.length), cudaSuccess);
  std::vector<unsigned char> hb(spec.length), ha(spec.length);
  for (int rep = 0; rep < 3; ++rep) {
    ASSERT_EQ(cudaMemsetAsync(dst, 0xAB, spec.length, a), cudaSuccess);
    auto t = (*rt)->Load(spec, a, dst, spec.length);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    ASSERT_EQ(cudaStreamWaitEvent(b, static_cast<cudaEvent_t>(t->event()), 0), cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(hb.data(), dst, spec.length, cudaMemcpyDeviceToHost, b),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(ha.data(), dst, spec.length, cudaMemcpyDeviceToHost, a),
              cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
    EXPECT_TRUE(hb == f.bytes[9]) << "stream waiting on the event saw stale data, rep " << rep;
    EXPECT_TRUE(ha == f.bytes[9]) << "caller stream saw stale data, rep " << rep;
  }
  cudaFree(dst);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

TEST(GpuLoadTest, LayerStreamingWithPrefetch) {
  REQUIRE_GPU();
  auto f = MakeFile(TempDir("gpu_layers") + "/a.bin", 1u << 20, 13, 8, 4);
  auto o = SmallRing(ODirectMode::kAuto, false);
  o.chunk_bytes = 256 << 10;
  o.staging_bytes = 1 << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  auto layers = test::LayersOf(f.specs);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  auto ls = LayerStreamer::Create(rt->get(), layers, 2, s);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  EXPECT_EQ((*ls)->slots(), 3);
  std::vector<unsigned char> h;
  for (int i = 0; i < 8; ++i) {
    auto layer = (*ls)->Next();
    ASSERT_TRUE(layer.ok()) << layer.status().ToString();
    ASSERT_EQ(layer->index, i);
    for (size_t k = 0; k < layer->tensors.size(); ++k) {
      const LoadedTensor& t = layer->tensors[k];
      h.resize(t.bytes());
      // Consume on the streamer's stream, ordered after the load, without a host wait.
      ASSERT_EQ(cudaMemcpyAsync(h.data(), t.data(), h.size(), cudaMemcpyDeviceToHost, s),
                cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
      EXPECT_TRUE(h == f.bytes[size_t(i) * 4 + k]) << "layer " << i << " tensor " << k;
    }
  }
  EXPECT_EQ((*ls)->Next().status().code(), Code::kOutOfRange);
  ls->reset();
  cudaStreamDestroy(s);
}

// Restart on the GPU: three passes give the same bytes from the same device slots, and no pass
// after the first allocates anything (pinned rings, device scratch, slots: the setup counters).
TEST(GpuLoadTest, LayerStreamerRestartReusesSlotsAndRings) {
  REQUIRE_GPU();
  auto f = MakeFile(TempDir("gpu_restart") + "/a.bin", 256u << 10, 31, 6, 3);
  auto o = SmallRing(ODirectMode::kAuto, false);
  o.chunk_bytes = 64 << 10;
  o.staging_bytes = 256 << 10;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  auto layers = test::LayersOf(f.specs);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  auto ls = LayerStreamer::Create(rt->get(), layers, 1, s);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  const RuntimeStats created = (*rt)->stats();
  EXPECT_GT(created.pinned_staging_bytes, 0u);
  EXPECT_EQ(created.buffer_allocations, 2u);
  std::set<void*> slots;
  for (int pass = 0; pass < 3; ++pass) {
    if (pass > 0) ASSERT_TRUE((*ls)->Restart().ok());
    for (int i = 0; i < 6; ++i) {
      auto layer = (*ls)->Next();
      ASSERT_TRUE(layer.ok()) << layer.status().ToString();
      ASSERT_EQ(layer->index, i);
      slots.insert(layer->tensors[0].data());
      for (size_t k = 0; k < layer->tensors.size(); ++k) {
        std::vector<unsigned char> h(layer->tensors[k].bytes());
        ASSERT_EQ(cudaMemcpyAsync(h.data(), layer->tensors[k].data(), h.size(),
                                  cudaMemcpyDeviceToHost, s), cudaSuccess);
        ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
        EXPECT_TRUE(h == f.bytes[size_t(i) * 3 + k]) << "pass " << pass << " layer " << i;
      }
    }
    EXPECT_EQ((*ls)->Next().status().code(), Code::kOutOfRange);
    const RuntimeStats now = (*rt)->stats();
    EXPECT_EQ(now.setup_allocations, created.setup_allocations) << "pass " << pass;
    EXPECT_EQ(now.setup_bytes, created.setup_bytes);
    EXPECT_EQ(now.buffer_allocations, created.buffer_allocations);
    EXPECT_EQ(now.pinned_staging_bytes, created.pinned_staging_bytes);
  }
  EXPECT_EQ(slots.size(), 2u);
  ls->reset();
  cudaStreamDestroy(s);
}

TEST(GpuLoadTest, CorruptedEntryRefused) {
  REQUIRE_GPU();
  auto f = MakeFile(TempDir("gpu_corrupt") + "/a.bin", 200000, 14);
  test::FlipByte(f.path, f.specs[9].file()->offset + f.specs[9].length / 2);
  for (int mode = 0; mode < 3; ++mode) {
    auto o = SmallRing(mode == 1 ? ODirectMode::kOn : ODirectMode::kOff, false);
    if (mode == 2) o.resident_budget = 64ull << 20;
    auto rt = Runtime::Create(o);
    ASSERT_TRUE(rt.ok());
    auto t = (*rt)->Load(f.specs[9]);
    ASSERT_FALSE(t.ok()) << "mode " << mode;
    EXPECT_EQ(t.status().code(), Code::kCorruption);
    EXPECT_NE(t.status().message().find(f.specs[9].name), std::string::npos);
    EXPECT_TRUE((*rt)->Load(f.specs[8]).ok());
  }
}

// Block checksums computed here (XXH3-64 of each `block` bytes of the tensor).
void AddBlocks(test::TestFile& f, uint64_t block) {
  for (size_t i = 0; i < f.specs.size(); ++i) {
    TensorSpec& s = f.specs[i];
    test::EditRange(s, [&](FileRange& r) {
      r.block_bytes = block;
      r.block_xxh3.clear();
      for (uint64_t o = 0; o < s.length; o += block)
        r.block_xxh3.push_back(XXH3_64bits(f.bytes[i].data() + o, std::min(block, s.length - o)));
    });
  }
}

TEST_P(GpuLoad, BlockChecksumsEveryDTypeBitExact) {
  REQUIRE_GPU();
  auto f = MakeFile(TempDir("gpu_blocks") + "/a.bin", 300000, 15);
  AddBlocks(f, 16 << 10);
  uint64_t total = 0;
  for (TensorSpec& s : f.specs) {
    test::EditRange(s, [](FileRange& r) { r.xxh3.reset(); });  // only the blocks verify
    total += s.length;
  }
  auto o = SmallRing(GetParam() == 1 ? ODirectMode::kOn : ODirectMode::kOff, false);
  o.chunk_bytes = 64 << 10;
  o.staging_bytes = 4 * o.chunk_bytes;
  o.io_threads = 4;
  if (GetParam() == 2) o.resident_budget = 256ull << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  auto all = (*rt)->LoadMany(f.specs, s);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  for (size_t i = 0; i < f.specs.size(); ++i) EXPECT_EQ(ToHost((*all)[i]), f.bytes[i]);
  EXPECT_EQ((*rt)->stats().bytes_verified, total);
  // Copy steps: 64K copies enqueued as each step is read, inside 240K pieces.
  o.chunk_bytes = 256 << 10;
  o.staging_bytes = 4 * o.chunk_bytes;
  o.copy_step_bytes = 64 << 10;
  auto rt2 = Runtime::Create(o);
  ASSERT_TRUE(rt2.ok()) << rt2.status().ToString();
  auto again = (*rt2)->LoadMany(f.specs, s);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  for (size_t i = 0; i < f.specs.size(); ++i) EXPECT_EQ(ToHost((*again)[i]), f.bytes[i]);
  EXPECT_EQ((*rt2)->stats().bytes_verified, total);
  // Without checksums too (the plain buffered path in steps).
  std::vector<TensorSpec> plain = f.specs;
  for (TensorSpec& p : plain) test::EditRange(p, [](FileRange& r) { r.block_xxh3.clear(); });
  auto raw = (*rt2)->LoadMany(plain, s);
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  for (size_t i = 0; i < f.specs.size(); ++i) EXPECT_EQ(ToHost((*raw)[i]), f.bytes[i]);
  cudaStreamDestroy(s);
}

TEST(GpuLoadTest, CorruptedBlockRefused) {
  REQUIRE_GPU();
  auto f = MakeFile(TempDir("gpu_corrupt_block") + "/a.bin", 200000, 16);
  AddBlocks(f, 16 << 10);
  test::FlipByte(f.path, f.specs[9].file()->offset + 3 * (16 << 10) + 7);
  for (int mode = 0; mode < 3; ++mode) {
    auto o = SmallRing(mode == 1 ? ODirectMode::kOn : ODirectMode::kOff, false);
    o.chunk_bytes = 64 << 10;
    o.staging_bytes = 4 * o.chunk_bytes;
    if (mode == 2) o.resident_budget = 64ull << 20;
    auto rt = Runtime::Create(o);
    ASSERT_TRUE(rt.ok());
    auto t = (*rt)->Load(f.specs[9]);
    ASSERT_FALSE(t.ok()) << "mode " << mode;
    EXPECT_EQ(t.status().code(), Code::kCorruption);
    EXPECT_NE(t.status().message().find("tensor '" + f.specs[9].name + "'"), std::string::npos);
    EXPECT_NE(t.status().message().find("block 3 "), std::string::npos) << t.status().ToString();
    EXPECT_TRUE((*rt)->Load(f.specs[8]).ok());
  }
}

TEST(GpuLoadTest, DLPackOnDevice) {
  REQUIRE_GPU();
  auto f = MakeFile(TempDir("gpu_dlpack") + "/a.bin", 40000, 15);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kOff, false));
  ASSERT_TRUE(rt.ok());
  auto t = (*rt)->Load(f.specs[size_t(DType::kF16)]);
  ASSERT_TRUE(t.ok());
  auto m = t->ToDLPack();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->dl_tensor.device.device_type, kDLCUDA);
  EXPECT_EQ((*m)->dl_tensor.device.device_id, (*rt)->device());
  EXPECT_EQ((*m)->dl_tensor.dtype.code, 2);  // kDLFloat
  EXPECT_EQ((*m)->dl_tensor.dtype.bits, 16);
  EXPECT_EQ((*m)->dl_tensor.data, t->data());
  (*m)->deleter(*m);
}

}  // namespace
}  // namespace hct
