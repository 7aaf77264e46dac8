// "bf16-huff" on the GPU (LaunchBf16HuffDecode, and the batched LaunchHuffDecodeBatch +
// LaunchBf16MergeBatch a loader uses) against the CPU reference decoder, bit-exact, into
// poisoned memory with guard bytes; corrupt payloads raise the error word without writing outside
// the output. Skips without a GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "bf16_test_util.h"
#include "codec/codec_weights.h"
#include "codec/detail/bf16_huff.h"
#include "gpu_test_util.h"
#include "hct/codec.h"
#include "hct/kernels.h"
#include "params_test_util.h"

namespace hct {
namespace {

using test::JsonOf;

using Bytes = std::vector<std::byte>;
constexpr size_t kGuard = 64;
constexpr uint8_t kPoison = 0x5A;

using test::GaussianBf16;

struct GpuOut {
  Bytes out;
  bool guard_ok = true;
  uint32_t error = 0;
  cudaError_t sync = cudaSuccess;
};

// One chunk through LaunchBf16HuffDecode; the payload at byte `pay_shift` (a multiple of 4) and
// the output at byte `out_shift` (a multiple of 2) of their buffers.
GpuOut RunChunk(const Bytes& payload, size_t n, uint32_t k, size_t pay_shift = 0,
                size_t out_shift = 0) {
  GpuOut r;
  char *dp = nullptr, *dout = nullptr, *ws = nullptr;
  uint32_t* derr = nullptr;
  const size_t out_bytes = kGuard + out_shift + 2 * n + kGuard;
  const uint64_t wsb = Bf16HuffWorkspaceBytes(n);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&dp), pay_shift + payload.size()), cudaSuccess);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&dout), out_bytes), cudaSuccess);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&ws), wsb), cudaSuccess);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&derr), 4), cudaSuccess);
  cudaMemcpy(dp + pay_shift, payload.data(), payload.size(), cudaMemcpyHostToDevice);
  cudaMemset(dout, kPoison, out_bytes);
  cudaMemset(derr, 0, 4);
  Bf16HuffDecodeArgs a;
  a.payload = dp + pay_shift;
  a.payload_bytes = payload.size();
  a.elements = n;
  a.substream = k;
  a.workspace = ws;
  a.workspace_bytes = wsb;
  a.out = dout + kGuard + out_shift;
  a.error = derr;
  Status st = LaunchBf16HuffDecode(a, nullptr);
  EXPECT_TRUE(st.ok()) << st.ToString();
  r.sync = cudaDeviceSynchronize();
  std::vector<uint8_t> host(out_bytes);
  cudaMemcpy(host.data(), dout, out_bytes, cudaMemcpyDeviceToHost);
  cudaMemcpy(&r.error, derr, 4, cudaMemcpyDeviceToHost);
  const size_t first = kGuard + out_shift, last = first + 2 * n;
  for (size_t i = 0; i < out_bytes; ++i)
    if (i < first || i >= last) r.guard_ok &= host[i] == kPoison;
  r.out.assign(reinterpret_cast<std::byte*>(host.data()) + first,
               reinterpret_cast<std::byte*>(host.data()) + last);
  cudaFree(dp);
  cudaFree(dout);
  cudaFree(ws);
  cudaFree(derr);
  return r;
}

void ExpectChunkMatchesCpu(const Bytes& src, uint32_t k, size_t pay_shift = 0,
                           size_t out_shift = 0) {
  const size_t n = src.size() / 2;
  Bytes p;
  ASSERT_TRUE(detail::Bf16HuffEncodeChunk(src, k, &p).ok());
  Bytes cpu(src.size());
  ASSERT_TRUE(detail::Bf16HuffDecodeChunk(p, k, cpu).ok());
  ASSERT_EQ(cpu, src);
  GpuOut g = RunChunk(p, n, k, pay_shift, out_shift);
  ASSERT_EQ(g.sync, cudaSuccess);
  EXPECT_EQ(g.error, 0u) << "n=" << n << " k=" << k;
  EXPECT_TRUE(g.guard_ok) << "wrote outside its elements, n=" << n;
  EXPECT_TRUE(g.out == cpu) << "n=" << n << " k=" << k << " shifts " << pay_shift << "/"
                            << out_shift;
}

TEST(Bf16HuffGpu, MatchesCpuDecoderOddSizes) {
  REQUIRE_GPU();
  for (uint32_t k : {32u, 2048u})
    for (size_t n : {size_t(1), size_t(15), size_t(16), size_t(17), size_t(2049), size_t(100003),
                     size_t(1) << 20})
      ExpectChunkMatchesCpu(GaussianBf16(n, uint32_t(n + k)), k);
}

TEST(Bf16HuffGpu, AnyBitsAndUnalignedBuffers) {
  REQUIRE_GPU();
  std::mt19937 rng(4);
  Bytes any(2 * 77777);
  for (auto& b : any) b = std::byte(rng());
  ExpectChunkMatchesCpu(any, 2048);
  ExpectChunkMatchesCpu(Bytes(2 * 3000, std::byte{0x40}), 512);  // one exponent: 0-bit code
  ExpectChunkMatchesCpu(GaussianBf16(50001, 8), 1024, /*pay_shift=*/4, /*out_shift=*/2);
  ExpectChunkMatchesCpu(GaussianBf16(50001, 9), 1024, /*pay_shift=*/8, /*out_shift=*/0);
}

TEST(Bf16HuffGpu, CorruptPayloadsRaiseTheErrorWord) {
  REQUIRE_GPU();
  const size_t n = 20000;
  const uint32_t k = 1024;
  Bytes p;
  ASSERT_TRUE(detail::Bf16HuffEncodeChunk(GaussianBf16(n, 5), k, &p).ok());
  const size_t e = detail::Bf16HuffExpOffset(n);
  auto expect_error = [&](const Bytes& q, const char* what) {
    GpuOut g = RunChunk(q, n, k);
    ASSERT_EQ(g.sync, cudaSuccess) << what;
    EXPECT_NE(g.error, 0u) << what;
    EXPECT_TRUE(g.guard_ok) << what;
  };
  Bytes q = p;
  q[e + 8] = std::byte{0xFF};
  expect_error(q, "exponent code length 15");
  q = p;
  q.resize(q.size() - 4);
  expect_error(q, "payload shorter than its sub-streams");
  q = p;
  const uint32_t wrong = n + 1;
  std::memcpy(&q[e], &wrong, 4);
  expect_error(q, "exponent symbol count differs");
  // A rest-plane byte changes only that element (the stored checksum is the guard there).
  q = p;
  q[16 + 7] ^= std::byte{0x80};
  GpuOut g = RunChunk(q, n, k);
  Bytes cpu(2 * n);
  ASSERT_TRUE(detail::Bf16HuffDecodeChunk(q, k, cpu).ok());
  EXPECT_EQ(g.error, 0u);
  EXPECT_TRUE(g.out == cpu);
  // Host-side checks: too small a payload or workspace is refused before any launch.
  Bf16HuffDecodeArgs a;
  a.payload = reinterpret_cast<void*>(uintptr_t(256));
  a.workspace = a.out = reinterpret_cast<void*>(uintptr_t(256));
  a.elements = n;
  a.substream = k;
  a.payload_bytes = e;
  a.workspace_bytes = Bf16HuffWorkspaceBytes(n);
  EXPECT_EQ(ValidateBf16HuffDecode(a).code(), Code::kOutOfRange);
  a.payload_bytes = p.size();
  a.workspace_bytes = n - 1;
  EXPECT_EQ(ValidateBf16HuffDecode(a).code(), Code::kInvalidArgument);
}

// A whole tensor the way a loader does it: every chunk's payload in one device buffer,
// descriptors from DescribeBf16HuffChunk, ONE LaunchHuffDecodeBatch, ONE LaunchBf16MergeBatch.
Bytes RunBatch(const EncodedTensor& enc, size_t bytes, uint32_t* error) {
  const size_t m = enc.chunks.size();
  size_t ptotal = 0, wtotal = 0;
  std::vector<size_t> poff(m), woff(m);
  for (size_t i = 0; i < m; ++i) {
    poff[i] = ptotal, woff[i] = wtotal;
    ptotal += (enc.chunks[i].bytes.size() + 4095) / 4096 * 4096;
    wtotal += Bf16HuffWorkspaceBytes(enc.chunks[i].elem_count);
  }
  char *dp, *dw, *dout;
  HuffChunk* dh;
  Bf16MergeChunk* dm;
  uint32_t* derr;
  cudaMalloc(reinterpret_cast<void**>(&dp), ptotal);
  cudaMalloc(reinterpret_cast<void**>(&dw), wtotal);
  cudaMalloc(reinterpret_cast<void**>(&dout), bytes);
  cudaMalloc(reinterpret_cast<void**>(&dh), m * sizeof(HuffChunk));
  cudaMalloc(reinterpret_cast<void**>(&dm), m * sizeof(Bf16MergeChunk));
  cudaMalloc(reinterpret_cast<void**>(&derr), 4);
  cudaMemset(derr, 0, 4);
  cudaMemset(dout, kPoison, bytes);
  std::vector<HuffChunk> h(m);
  std::vector<Bf16MergeChunk> mc(m);
  uint64_t maxn = 0;
  for (size_t i = 0; i < m; ++i) {
    const EncodedChunk& c = enc.chunks[i];
    cudaMemcpy(dp + poff[i], c.bytes.data(), c.bytes.size(), cudaMemcpyHostToDevice);
    EXPECT_TRUE(DescribeBf16HuffChunk(dp + poff[i], c.bytes.size(), c.elem_count, dw + woff[i],
                                      dout + 2 * c.elem_offset, &h[i], &mc[i])
                    .ok());
    maxn = std::max<uint64_t>(maxn, c.elem_count);
  }
  cudaMemcpy(dh, h.data(), m * sizeof(HuffChunk), cudaMemcpyHostToDevice);
  cudaMemcpy(dm, mc.data(), m * sizeof(Bf16MergeChunk), cudaMemcpyHostToDevice);
  HuffBatchArgs ha;
  ha.chunks = dh;
  ha.count = uint32_t(m);
  ha.substream = JsonOf(enc.params)["substream"].get<uint32_t>();
  ha.max_symbols = maxn;
  ha.error = derr;
  EXPECT_TRUE(LaunchHuffDecodeBatch(ha, nullptr).ok());
  Bf16MergeBatchArgs ma;
  ma.chunks = dm;
  ma.count = uint32_t(m);
  ma.max_count = maxn;
  ma.error = derr;
  EXPECT_TRUE(LaunchBf16MergeBatch(ma, nullptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  Bytes out(bytes);
  cudaMemcpy(out.data(), dout, bytes, cudaMemcpyDeviceToHost);
  cudaMemcpy(error, derr, 4, cudaMemcpyDeviceToHost);
  for (void* p : {static_cast<void*>(dp), static_cast<void*>(dw), static_cast<void*>(dout),
                  static_cast<void*>(dh), static_cast<void*>(dm), static_cast<void*>(derr)})
    cudaFree(p);
  return out;
}

EncodeOptions HuffOptions(uint64_t chunk_bytes) {
  EncodeOptions o;
  o.lossless_options.entropy = Entropy::kHuffman;
  o.lossless_options.chunk_bytes = chunk_bytes;
  o.parallel = ThreadsParallelFor(4);
  return o;
}

TEST(Bf16HuffGpu, BatchedTensorMatchesOriginal) {
  REQUIRE_GPU();
  const size_t n = 3 * (1 << 20) + 12345;
  const Bytes src = GaussianBf16(n, 21);
  auto enc = EncodeTensor({src, DType::kBF16, {n}}, HuffOptions(2u << 20));
  ASSERT_TRUE(enc.ok());
  ASSERT_EQ(enc->codec, kCodecBf16Huff);
  ASSERT_EQ(enc->chunks.size(), 4u);
  uint32_t err = 1;
  EXPECT_TRUE(RunBatch(*enc, src.size(), &err) == src);
  EXPECT_EQ(err, 0u);
}

TEST(Bf16HuffGpu, RealWeightsBitExact) {
  REQUIRE_GPU();
  const char* env = std::getenv("HCT_WEIGHTS_DIR");
  const std::string dir = env ? env : HCT_SOURCE_DIR "/../shared/weights";
  const auto files = testing::SafetensorsFiles(dir + "/kdoc-lm-25m");
  if (files.empty()) GTEST_SKIP() << "no kdoc-lm-25m under " << dir;
  int tensors = 0;
  for (const std::string& f : files) {
    auto file = testing::LoadSafetensors(f);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    for (const auto& t : file->tensors) {
      auto enc = EncodeTensor(t.view(), HuffOptions(1u << 20));
      ASSERT_TRUE(enc.ok());
      if (enc->codec != kCodecBf16Huff) continue;  // tiny tensors may stay raw
      uint32_t err = 1;
      const Bytes out = RunBatch(*enc, t.data.size(), &err);
      ASSERT_TRUE(std::equal(out.begin(), out.end(), t.data.begin(), t.data.end())) << t.name;
      EXPECT_EQ(err, 0u) << t.name;
      ++tensors;
    }
  }
  EXPECT_GT(tensors, 50);
}

}  // namespace
}  // namespace hct
