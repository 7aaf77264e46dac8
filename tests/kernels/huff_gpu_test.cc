// LaunchHuffDecode ("dctq-huff" payloads) against the CPU reference decoder, bit-exact, into
// poisoned memory with guard bytes; corrupt payloads must not crash and must raise the error
// word; a throughput figure for the record. Skips without a GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "symbol_test_util.h"
#include "gpu_test_util.h"
#include "codec/detail/huff.h"
#include "hct/kernels.h"

namespace hct {
namespace {

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

constexpr size_t kGuard = 64;
constexpr uint8_t kPoison = 0x5A;

using test::Peaked;

struct GpuResult {
  std::vector<int8_t> out;  // n symbols
  bool guard_ok = true;
  uint32_t error = 0;
  cudaError_t sync = cudaSuccess;
};

// Decodes `payload` on the GPU into n symbols (+ guard bytes), at byte offset `out_shift`.
GpuResult RunGpu(const std::vector<std::byte>& payload, size_t n, uint32_t k,
                 size_t out_shift = 0, uint64_t payload_bytes_override = UINT64_MAX) {
  GpuResult r;
  void *dp = nullptr, *dout = nullptr;
  uint32_t* derr = nullptr;
  const size_t out_bytes = out_shift + n + kGuard;
  EXPECT_EQ(cudaMalloc(&dp, std::max<size_t>(payload.size(), 4)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&dout, out_bytes), cudaSuccess);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&derr), 4), cudaSuccess);
  cudaMemcpy(dp, payload.data(), payload.size(), cudaMemcpyHostToDevice);
  cudaMemset(dout, kPoison, out_bytes);
  cudaMemset(derr, 0, 4);
  HuffDecodeArgs a;
  a.payload = dp;
  a.payload_bytes = payload_bytes_override != UINT64_MAX ? payload_bytes_override : payload.size();
  a.symbols = n;
  a.substream = k;
  a.out = static_cast<char*>(dout) + out_shift;
  a.error = derr;
  Status st = LaunchHuffDecode(a, nullptr);
  EXPECT_TRUE(st.ok()) << st.ToString();
  r.sync = cudaDeviceSynchronize();
  std::vector<uint8_t> host(out_bytes);
  cudaMemcpy(host.data(), dout, out_bytes, cudaMemcpyDeviceToHost);
  cudaMemcpy(&r.error, derr, 4, cudaMemcpyDeviceToHost);
  for (size_t i = 0; i < out_shift; ++i) r.guard_ok &= host[i] == kPoison;
  for (size_t i = out_shift + n; i < out_bytes; ++i) r.guard_ok &= host[i] == kPoison;
  r.out.assign(reinterpret_cast<int8_t*>(host.data()) + out_shift,
               reinterpret_cast<int8_t*>(host.data()) + out_shift + n);
  cudaFree(dp);
  cudaFree(dout);
  cudaFree(derr);
  return r;
}

void ExpectMatchesCpu(const std::vector<int8_t>& s, uint32_t k, size_t shift = 0) {
  std::vector<std::byte> p;
  ASSERT_TRUE(detail::HuffEncode(s, k, &p).ok());
  std::vector<int8_t> cpu(s.size());
  ASSERT_TRUE(detail::HuffDecode(p, cpu).ok());
  ASSERT_EQ(cpu, s);
  GpuResult g = RunGpu(p, s.size(), k, shift);
  ASSERT_EQ(g.sync, cudaSuccess);
  EXPECT_EQ(g.error, 0u) << "n=" << s.size() << " k=" << k;
  EXPECT_TRUE(g.guard_ok) << "wrote outside its symbols";
  EXPECT_TRUE(g.out == cpu) << "n=" << s.size() << " k=" << k << " shift=" << shift;
}

TEST(HuffDecodeGpu, MatchesCpuDecoderOddSizes) {
  REQUIRE_GPU();
  for (uint32_t k : {32u, 256u, 2048u, 4096u})
    for (size_t n : {size_t(1), size_t(15), size_t(17), size_t(31), size_t(33), size_t(2047),
                     size_t(2049), size_t(12345), size_t(64 * 2048 + 5),
                     size_t(129 * 2048 - 7), size_t(1 << 20)})
      ExpectMatchesCpu(Peaked(n, uint32_t(n * 7 + k)), k);
}

TEST(HuffDecodeGpu, FullAlphabetSkewedAndSingleSymbol) {
  REQUIRE_GPU();
  std::vector<int8_t> u(100000);
  std::mt19937 rng(1);
  for (auto& v : u) v = int8_t(rng());
  ExpectMatchesCpu(u, 2048);
  // Skewed: lengths hit the 11-bit limit.
  std::vector<int8_t> sk;
  for (int i = 0; i < 40; ++i) sk.insert(sk.end(), size_t(1) << std::min(i, 17), int8_t(i - 20));
  std::shuffle(sk.begin(), sk.end(), rng);
  ExpectMatchesCpu(sk, 1024);
  ExpectMatchesCpu(std::vector<int8_t>(5000, -128), 2048);
  ExpectMatchesCpu(std::vector<int8_t>(1, 7), 2048);
}

TEST(HuffDecodeGpu, UnalignedOutput) {
  REQUIRE_GPU();
  ExpectMatchesCpu(Peaked(50000, 3), 512, /*shift=*/3);
}

TEST(HuffDecodeGpu, CorruptPayloadsRaiseTheErrorWord) {
  REQUIRE_GPU();
  const size_t n = 20000;
  const uint32_t k = 1024;
  const auto s = Peaked(n, 5);
  std::vector<std::byte> p;
  ASSERT_TRUE(detail::HuffEncode(s, k, &p).ok());
  auto expect_error = [&](const std::vector<std::byte>& q, uint64_t bytes, const char* what) {
    GpuResult g = RunGpu(q, n, k, 0, bytes);
    ASSERT_EQ(g.sync, cudaSuccess) << what;
    EXPECT_NE(g.error, 0u) << what;
    EXPECT_TRUE(g.guard_ok) << what;
  };
  expect_error(p, 100, "shorter than the header");
  expect_error(p, p.size() - 4, "payload size below the sub-stream sizes");
  auto q = p;
  q[8] = std::byte{0xFF};
  expect_error(q, q.size(), "code length 15");
  q = p;
  std::fill(q.begin() + 8, q.begin() + 136, std::byte{0x11});
  expect_error(q, q.size(), "over-subscribed code");
  q = p;
  uint32_t wrong_n = n + 1;
  std::memcpy(q.data(), &wrong_n, 4);
  expect_error(q, q.size(), "symbol count differs");
  q = p;
  uint16_t a, b;
  std::memcpy(&a, q.data() + 136, 2);
  std::memcpy(&b, q.data() + 138, 2);
  a += 5, b -= 5;
  std::memcpy(q.data() + 136, &a, 2);
  std::memcpy(q.data() + 138, &b, 2);
  expect_error(q, q.size(), "bits moved between sub-streams");
  // Random damage anywhere: never a crash or a write outside the symbols; when the CPU decoder
  // rejects the payload, the GPU flags it too (both check the same structure).
  std::mt19937 rng(9);
  int flagged = 0;
  for (int t = 0; t < 100; ++t) {
    q = p;
    q[rng() % q.size()] ^= std::byte(1 + rng() % 255);
    std::vector<int8_t> cpu(n);
    const bool cpu_ok = detail::HuffDecode(q, cpu).ok();
    GpuResult g = RunGpu(q, n, k);
    ASSERT_EQ(g.sync, cudaSuccess);
    EXPECT_TRUE(g.guard_ok);
    EXPECT_EQ(g.error != 0, !cpu_ok) << "trial " << t;
    if (cpu_ok) EXPECT_TRUE(g.out == cpu) << "trial " << t;
    flagged += g.error != 0;
  }
  EXPECT_GT(flagged, 0);
}

// Runs one LaunchHuffDecodeBatch over `payloads` (one chunk each, symbol counts `ns`), every
// chunk's output in its own poisoned region with guard bytes. Returns the outputs, whether all
// guards survived, and the error word.
struct BatchResult {
  std::vector<std::vector<int8_t>> out;
  bool guard_ok = true;
  uint32_t error = 0;
  cudaError_t sync = cudaSuccess;
};
BatchResult RunBatch(const std::vector<std::vector<std::byte>>& payloads,
                     const std::vector<size_t>& ns, uint32_t k, uint64_t max_symbols = 0) {
  BatchResult r;
  const size_t m = payloads.size();
  std::vector<size_t> poff(m), ooff(m);
  size_t ptotal = 0, ototal = 0;
  for (size_t i = 0; i < m; ++i) {
    poff[i] = ptotal;
    ptotal += (payloads[i].size() + 255) / 256 * 256;
    ooff[i] = ototal + kGuard;
    ototal += kGuard + ns[i] + kGuard;
  }
  uint64_t maxn = max_symbols;
  if (maxn == 0)
    for (size_t n : ns) maxn = std::max<uint64_t>(maxn, n);
  char *dp = nullptr, *dout = nullptr;
  HuffChunk* dd = nullptr;
  uint32_t* derr = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&dp), std::max<size_t>(ptotal, 4)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&dout), ototal), cudaSuccess);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&dd), sizeof(HuffChunk) * m), cudaSuccess);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&derr), 4), cudaSuccess);
  std::vector<HuffChunk> desc(m);
  for (size_t i = 0; i < m; ++i) {
    cudaMemcpy(dp + poff[i], payloads[i].data(), payloads[i].size(), cudaMemcpyHostToDevice);
    desc[i].payload = dp + poff[i];
    desc[i].payload_bytes = payloads[i].size();
    desc[i].symbols = ns[i];
    desc[i].out = dout + ooff[i];
  }
  cudaMemcpy(dd, desc.data(), sizeof(HuffChunk) * m, cudaMemcpyHostToDevice);
  cudaMemset(dout, kPoison, ototal);
  cudaMemset(derr, 0, 4);
  HuffBatchArgs a;
  a.chunks = dd;
  a.count = uint32_t(m);
  a.substream = k;
  a.max_symbols = maxn;
  a.error = derr;
  Status st = LaunchHuffDecodeBatch(a, nullptr);
  EXPECT_TRUE(st.ok()) << st.ToString();
  r.sync = cudaDeviceSynchronize();
  std::vector<uint8_t> host(ototal);
  cudaMemcpy(host.data(), dout, ototal, cudaMemcpyDeviceToHost);
  cudaMemcpy(&r.error, derr, 4, cudaMemcpyDeviceToHost);
  size_t pos = 0;
  for (size_t i = 0; i < m; ++i) {
    for (size_t g = 0; g < kGuard; ++g)
      r.guard_ok &= host[pos + g] == kPoison && host[ooff[i] + ns[i] + g] == kPoison;
    r.out.emplace_back(reinterpret_cast<int8_t*>(host.data()) + ooff[i],
                       reinterpret_cast<int8_t*>(host.data()) + ooff[i] + ns[i]);
    pos = ooff[i] + ns[i] + kGuard;
  }
  cudaFree(dp);
  cudaFree(dout);
  cudaFree(dd);
  cudaFree(derr);
  return r;
}

TEST(HuffDecodeGpu, BatchMatchesCpuDecoder) {
  REQUIRE_GPU();
  const uint32_t k = 2048;
  const std::vector<size_t> ns = {1 << 20, 1, 12345, 64 * 2048 + 5, 1 << 20, 129 * 2048 - 7,
                                  2100003, 0, 33};
  std::vector<std::vector<std::byte>> ps;
  std::vector<std::vector<int8_t>> cpu;
  for (size_t i = 0; i < ns.size(); ++i) {
    const auto s = Peaked(ns[i], uint32_t(100 + i), 1.0 + 0.5 * double(i % 4));
    std::vector<std::byte> p;
    if (ns[i] > 0) ASSERT_TRUE(detail::HuffEncode(s, k, &p).ok());
    std::vector<int8_t> c(ns[i]);
    if (ns[i] > 0) ASSERT_TRUE(detail::HuffDecode(p, c).ok());
    ASSERT_EQ(c, s);
    ps.push_back(std::move(p));
    cpu.push_back(std::move(c));
  }
  BatchResult g = RunBatch(ps, ns, k);
  ASSERT_EQ(g.sync, cudaSuccess);
  EXPECT_EQ(g.error, 0u);
  EXPECT_TRUE(g.guard_ok) << "wrote outside a chunk's symbols";
  for (size_t i = 0; i < ns.size(); ++i) EXPECT_TRUE(g.out[i] == cpu[i]) << "chunk " << i;
}

TEST(HuffDecodeGpu, BatchCorruptChunkRaisesTheErrorWordOthersStillDecode) {
  REQUIRE_GPU();
  const uint32_t k = 1024;
  const std::vector<size_t> ns = {300000, 20000, 500000};
  std::vector<std::vector<std::byte>> ps;
  std::vector<std::vector<int8_t>> src;
  for (size_t i = 0; i < ns.size(); ++i) {
    src.push_back(Peaked(ns[i], uint32_t(7 + i)));
    std::vector<std::byte> p;
    ASSERT_TRUE(detail::HuffEncode(src.back(), k, &p).ok());
    ps.push_back(std::move(p));
  }
  {  // Sanity: clean batch decodes without error.
    BatchResult g = RunBatch(ps, ns, k);
    ASSERT_EQ(g.sync, cudaSuccess);
    EXPECT_EQ(g.error, 0u);
  }
  auto bad = ps;
  bad[1][8] = std::byte{0xFF};  // code length 15 in the middle chunk
  BatchResult g = RunBatch(bad, ns, k);
  ASSERT_EQ(g.sync, cudaSuccess);
  EXPECT_EQ(g.error & kHuffErrorHeader, kHuffErrorHeader);
  EXPECT_TRUE(g.guard_ok);
  EXPECT_TRUE(g.out[0] == src[0]);  // chunks do not share blocks
  EXPECT_TRUE(g.out[2] == src[2]);
  // A sub-stream's bits moved into its neighbour: a stream error, not a header one.
  bad = ps;
  uint16_t a, b;
  std::memcpy(&a, bad[2].data() + 136, 2);
  std::memcpy(&b, bad[2].data() + 138, 2);
  a += 5, b -= 5;
  std::memcpy(bad[2].data() + 136, &a, 2);
  std::memcpy(bad[2].data() + 138, &b, 2);
  g = RunBatch(bad, ns, k);
  ASSERT_EQ(g.sync, cudaSuccess);
  EXPECT_NE(g.error, 0u);
  EXPECT_TRUE(g.guard_ok);
  EXPECT_TRUE(g.out[0] == src[0]);
  // A descriptor whose symbol count exceeds max_symbols (the grid would not cover it).
  g = RunBatch(ps, ns, k, /*max_symbols=*/400000);
  ASSERT_EQ(g.sync, cudaSuccess);
  EXPECT_EQ(g.error, kHuffErrorHeader);
  EXPECT_TRUE(g.guard_ok);
  EXPECT_TRUE(g.out[0] == src[0]);
}

TEST(HuffDecodeGpu, BatchValidation) {
  HuffBatchArgs a;
  EXPECT_TRUE(ValidateHuffDecodeBatch(a).ok());  // empty batch
  a.count = 2;
  a.max_symbols = 100;
  a.substream = 2048;
  EXPECT_EQ(ValidateHuffDecodeBatch(a).code(), Code::kInvalidArgument);  // null descriptors
  a.chunks = reinterpret_cast<const HuffChunk*>(uintptr_t(256));
  EXPECT_TRUE(ValidateHuffDecodeBatch(a).ok());
  a.substream = 100;
  EXPECT_EQ(ValidateHuffDecodeBatch(a).code(), Code::kInvalidArgument);
  a.substream = 2048;
  a.count = 70000;
  EXPECT_EQ(ValidateHuffDecodeBatch(a).code(), Code::kOutOfRange);
  a.count = 2;
  a.max_symbols = uint64_t(1) << 32;
  EXPECT_EQ(ValidateHuffDecodeBatch(a).code(), Code::kOutOfRange);
}

// Not a pass/fail check: decode rate of 16 chunks (1 Mi or 2.1 M symbols), printed for the record.
TEST(HuffDecodeGpu, Throughput) {
  REQUIRE_GPU();
  const int chunks = 16;
  // The last case is close to the loader's: ~2.1 M symbols per chunk (not a multiple of K).
  const std::pair<size_t, uint32_t> cases[] = {
      {1 << 20, 1024u}, {1 << 20, 2048u}, {1 << 20, 4096u}, {2100003, 2048u}};
  for (const auto& tc : cases) {
    const size_t n = tc.first;
    const uint32_t k = tc.second;
    const auto s = Peaked(n, 77, 2.5);
    std::vector<std::byte> p;
    ASSERT_TRUE(detail::HuffEncode(s, k, &p).ok());
    void *dp = nullptr, *dout = nullptr;
    const size_t pstride = (p.size() + 255) / 256 * 256;
    CUDA_OK(cudaMalloc(&dp, pstride * chunks));
    CUDA_OK(cudaMalloc(&dout, n * chunks));
    for (int c = 0; c < chunks; ++c)
      CUDA_OK(cudaMemcpy(static_cast<char*>(dp) + c * pstride, p.data(), p.size(),
                         cudaMemcpyHostToDevice));
    std::vector<cudaStream_t> streams(4);
    for (auto& st : streams) CUDA_OK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    auto launch_all = [&] {
      for (int c = 0; c < chunks; ++c) {
        HuffDecodeArgs a;
        a.payload = static_cast<char*>(dp) + c * pstride;
        a.payload_bytes = p.size();
        a.symbols = n;
        a.substream = k;
        a.out = static_cast<char*>(dout) + c * n;
        ASSERT_TRUE(LaunchHuffDecode(a, reinterpret_cast<GpuStream>(streams[c % 4])).ok());
      }
    };
    launch_all();
    CUDA_OK(cudaDeviceSynchronize());
    const int reps = 10;
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) launch_all();
    CUDA_OK(cudaDeviceSynchronize());
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("huff decode K=%u: %.1f G symbols/s (%.3f bits/symbol, %d chunks of %zu, 4 streams)\n",
                k, double(n) * chunks * reps / sec / 1e9, p.size() * 8.0 / n, chunks, n);
    std::vector<int8_t> back(n);
    CUDA_OK(cudaMemcpy(back.data(), static_cast<char*>(dout) + (chunks - 1) * n, n,
                       cudaMemcpyDeviceToHost));
    EXPECT_TRUE(back == s);
    // The same 16 chunks in one batched launch (what the runtime and bench now do).
    std::vector<HuffChunk> desc(chunks);
    for (int c = 0; c < chunks; ++c)
      desc[c] = {static_cast<char*>(dp) + c * pstride, p.size(), n, static_cast<char*>(dout) + c * n};
    HuffChunk* dd = nullptr;
    CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&dd), sizeof(HuffChunk) * chunks));
    CUDA_OK(cudaMemcpy(dd, desc.data(), sizeof(HuffChunk) * chunks, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(dout, 0, n * chunks));
    HuffBatchArgs b;
    b.chunks = dd;
    b.count = chunks;
    b.substream = k;
    b.max_symbols = n;
    ASSERT_TRUE(LaunchHuffDecodeBatch(b, nullptr).ok());
    CUDA_OK(cudaDeviceSynchronize());
    t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) ASSERT_TRUE(LaunchHuffDecodeBatch(b, nullptr).ok());
    CUDA_OK(cudaDeviceSynchronize());
    const double bsec =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("huff decode K=%u: %.1f G symbols/s batched (%d chunks in one launch)\n", k,
                double(n) * chunks * reps / bsec / 1e9, chunks);
    CUDA_OK(cudaMemcpy(back.data(), static_cast<char*>(dout) + (chunks - 1) * n, n,
                       cudaMemcpyDeviceToHost));
    EXPECT_TRUE(back == s);
    cudaFree(dd);
    for (auto& st : streams) cudaStreamDestroy(st);
    cudaFree(dp);
    cudaFree(dout);
  }
}

}  // namespace
}  // namespace hct
