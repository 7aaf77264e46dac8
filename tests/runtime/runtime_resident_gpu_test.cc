// The resident compressed tier on the GPU: HCT files mapped and registered within
// resident_budget, dctq-huff chunks DMA'd from the registered pages and decoded on the GPU, equal
// the CPU reference decoder's output (random weights, and real ones from ../shared/weights when
// present); a corrupt chunk of a resident file is refused naming the tensor and chunk; a refused
// registration or budget falls back to the page-cache path, never an error.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "gpu_test_util.h"
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

// DCT outputs may differ from the CPU's by one ulp in rare elements (the kernel's rounding);
// identity and lossless outputs are bit-exact.
uint64_t UlpDiffs(const std::vector<std::byte>& got, const std::vector<std::byte>& want, DType dt) {
  if (got.size() != want.size()) return UINT64_MAX;
  const uint64_t n = got.size() / (dt == DType::kF32 ? 4 : 2);
  std::vector<float> a(n), b(n);
  if (!ToFloat(got, dt, a).ok() || !ToFloat(want, dt, b).ok()) return UINT64_MAX;
  const int mant = dt == DType::kBF16 ? 7 : dt == DType::kF16 ? 10 : 23;
  uint64_t diff = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (a[i] == b[i]) continue;
    const float m = std::max(std::fabs(a[i]), std::fabs(b[i]));
    if (std::fabs(a[i] - b[i]) > std::ldexp(1.f, std::ilogb(m) - mant)) return UINT64_MAX;
    ++diff;
  }
  return diff;
}

RuntimeOptions GpuResident(uint64_t budget) {
  RuntimeOptions o = test::SmallRing(ODirectMode::kOff, false);
  o.chunk_bytes = 64 << 10;  // huff groups of several chunks per slot
  o.staging_bytes = 3 * o.chunk_bytes;
  o.decode_threads = 4;
  o.streams = 2;
  o.resident_budget = budget;
  return o;
}

void ExpectMatches(Runtime& rt, const test::HctTestFile& f, const Catalog& cat, int passes) {
  for (int pass = 0; pass < passes; ++pass) {
    auto ts = rt.LoadMany(cat.tensors());
    ASSERT_TRUE(ts.ok()) << ts.status().ToString();
    for (const LoadedTensor& t : *ts) {
      size_t i = 0;
      while (f.descs[i].name != t.spec().name) ++i;
      const auto got = ToHost(t);
      const auto want = test::CpuDecoded(f.path, t.spec().name);
      if (!f.descs[i].lossy || f.descs[i].transform == Transform::kNone) {
        EXPECT_EQ(got, want) << t.spec().name << " pass " << pass;
      } else {
        const uint64_t d = UlpDiffs(got, want, t.spec().dtype);
        EXPECT_LE(d * 100, got.size() / 2) << t.spec().name << " pass " << pass;
      }
    }
  }
}

TEST(HctResidentGpu, MatchesCpuDecoder) {
  REQUIRE_GPU();
  const std::string dir = TempDir("hct_resident_gpu");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  auto rt = Runtime::Create(GpuResident(64ull << 20));
  ASSERT_TRUE(rt.ok());
  ExpectMatches(**rt, f, *cat, 3);
  const RuntimeStats st = (*rt)->stats();
  if (!st.resident_fallback.empty()) {
    // Registration refused here (locked-memory limit): the loads above were read instead.
    EXPECT_EQ(st.loads_hct_resident, 0u);
    GTEST_SKIP() << "registration refused: " << st.resident_fallback;
  }
  EXPECT_TRUE((*rt)->IsResident(f.path));
  EXPECT_EQ(st.loads_hct_resident, 3 * cat->tensors().size());
  EXPECT_EQ(st.bytes_hct_resident, st.bytes_hct_stored);
  EXPECT_EQ(st.bytes_buffered + st.bytes_o_direct, 0u);
  EXPECT_GT(st.registered_bytes, 0u);
  EXPECT_LE(st.registered_bytes, 64ull << 20);
}

TEST(HctResidentGpu, CorruptChunkRefusedNamingTheTensor) {
  REQUIRE_GPU();
  const std::string dir = TempDir("hct_resident_gpu_corrupt");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  const std::string bad = f.descs[0].name;  // dctq-huff: the GPU path
  ASSERT_EQ(f.codecs[0], kCodecDctqHuff);
  test::FlipByte(f.path, test::ChunkByteOffset(f.path, bad, 2, 40));
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  auto rt = Runtime::Create(GpuResident(64ull << 20));
  ASSERT_TRUE(rt.ok());
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto t = (*rt)->LoadMany(cat->tensors());
    ASSERT_FALSE(t.ok());
    EXPECT_TRUE(test::IsChecksumFailure(t.status(), f.path, bad)) << t.status().ToString();
    EXPECT_NE(t.status().message().find("chunk 2 (stored bytes)"), std::string::npos)
        << t.status().ToString();
  }
  auto g = (*rt)->Load(*cat->Find(f.descs[4].name));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(ToHost(*g), test::CpuDecoded(f.path, f.descs[4].name));
}

TEST(HctResidentGpu, TooSmallBudgetFallsBackToReads) {
  REQUIRE_GPU();
  const std::string dir = TempDir("hct_resident_gpu_small");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  auto rt = Runtime::Create(GpuResident(4096));
  ASSERT_TRUE(rt.ok());
  ExpectMatches(**rt, f, *cat, 1);
  const RuntimeStats st = (*rt)->stats();
  EXPECT_EQ(st.loads_hct_resident, 0u);
  EXPECT_EQ(st.registered_bytes, 0u);
  EXPECT_NE(st.resident_fallback.find("resident budget"), std::string::npos);
}

// The kernels on decode streams of their own (1 or 4) or after the copies on the copy stream
// (0), and the profile's events, change nothing in the output, resident and from the page
// cache; the profile times every GPU group (copy, Huffman, the load's span).
TEST(HctResidentGpu, DecodeStreamsAndProfileMatchCpuDecoder) {
  REQUIRE_GPU();
  const std::string dir = TempDir("hct_resident_gpu_streams");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  for (uint64_t budget : {uint64_t(64) << 20, uint64_t(0)}) {
    for (int ds : {0, 1, 4}) {
      RuntimeOptions o = GpuResident(budget);
      o.hct_decode_streams = ds;
      o.hct_profile = ds != 1;
      auto rt = Runtime::Create(o);
      ASSERT_TRUE(rt.ok());
      ExpectMatches(**rt, f, *cat, 2);
      const RuntimeStats st = (*rt)->stats();
      SCOPED_TRACE("budget " + std::to_string(budget) + ", decode streams " + std::to_string(ds));
      EXPECT_EQ(st.loads_hct, 2 * cat->tensors().size());
      if (!o.hct_profile) {
        EXPECT_EQ(st.hct_gpu_groups, 0u);
        continue;
      }
      EXPECT_GT(st.hct_gpu_groups, 0u);
      EXPECT_GT(st.hct_gpu_copy_seconds, 0.0);
      EXPECT_GT(st.hct_gpu_huff_seconds, 0.0);
      EXPECT_GT(st.hct_gpu_span_seconds, 0.0);
    }
  }
}

// Real weights: the 2-D BF16 tensors of kdoc-lm-25m's first shard encoded dctq-huff (identity
// transform: bit-exact on the GPU) and loaded resident.
TEST(HctResidentGpu, RealWeightsBitExact) {
  REQUIRE_GPU();
  const std::string st_path =
      std::string(HCT_SOURCE_DIR) + "/../shared/weights/kdoc-lm-25m/model-00001-of-00004.safetensors";
  if (!std::filesystem::exists(st_path)) GTEST_SKIP() << "no " << st_path;
  auto src = Catalog::FromSafetensors(st_path);
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  const std::string dir = TempDir("hct_resident_gpu_real");
  const std::string path = dir + "/real.hct";
  auto w = HctWriter::Create(path, true);
  ASSERT_TRUE(w.ok());
  int n = 0;
  for (const TensorSpec& s : src->tensors()) {
    if (s.dtype != DType::kBF16 || s.shape.size() != 2 || n >= 6) continue;
    std::vector<std::byte> data(s.length);
    std::ifstream in(s.file()->path, std::ios::binary);
    in.seekg(std::streamoff(s.file()->offset));
    in.read(reinterpret_cast<char*>(data.data()), std::streamsize(data.size()));
    ASSERT_TRUE(in.good());
    std::vector<uint64_t> shape(s.shape.begin(), s.shape.end());
    EncodeOptions o;
    o.lossy = true;
    o.lossy_options.transform = Transform::kNone;
    o.lossy_options.entropy = Entropy::kHuffman;
    o.lossy_options.chunk_symbols = 1 << 16;  // several chunks per tensor
    auto enc = EncodeTensor({data, s.dtype, shape}, o);
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    ASSERT_TRUE(w->BeginTensor(s.name, s.dtype, shape, enc->codec, enc->params).ok());
    for (const EncodedChunk& c : enc->chunks)
      ASSERT_TRUE(
          w->AppendChunk(c.bytes, c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count).ok());
    ASSERT_TRUE(w->EndTensor().ok());
    ++n;
  }
  ASSERT_TRUE(w->Finish().ok());
  ASSERT_GT(n, 0);
  auto cat = Catalog::FromHct(path);
  ASSERT_TRUE(cat.ok());
  RuntimeOptions o = GpuResident(1ull << 30);
  o.chunk_bytes = 8ull << 20;
  o.staging_bytes = 4 * o.chunk_bytes;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  for (int pass = 0; pass < 2; ++pass) {
    auto ts = (*rt)->LoadMany(cat->tensors());
    ASSERT_TRUE(ts.ok()) << ts.status().ToString();
    for (const LoadedTensor& t : *ts)
      EXPECT_EQ(ToHost(t), test::CpuDecoded(path, t.spec().name)) << t.spec().name;
  }
  const RuntimeStats st = (*rt)->stats();
  if (st.resident_fallback.empty()) EXPECT_EQ(st.loads_hct_resident, 2u * uint64_t(n));
  else std::printf("registration refused: %s\n", st.resident_fallback.c_str());
}

}  // namespace
}  // namespace hct
