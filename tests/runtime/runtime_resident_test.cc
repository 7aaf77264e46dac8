// The resident tier on the host (CPU reference decoder, mappings not registered): HCT files
// become resident within resident_budget, shared with raw files, released least recently used
// first; resident HCT loads equal the CPU decoder; a corrupt chunk of a resident file is refused
// naming the tensor and chunk; a file that does not fit falls back to reading, never an error.
#include <gtest/gtest.h>

#include <filesystem>

#include "hct/runtime.h"
#include "runtime/runtime_hct_util.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

using test::TempDir;

RuntimeOptions HostResident(uint64_t budget) {
  RuntimeOptions o = test::SmallRing(ODirectMode::kOff, /*host=*/true);
  o.decode_threads = 3;
  o.resident_budget = budget;
  return o;
}

std::vector<std::byte> Bytes(const LoadedTensor& t) {
  auto* p = static_cast<const std::byte*>(t.data());
  return {p, p + t.bytes()};
}

uint64_t PageRounded(const std::string& path) {
  return (std::filesystem::file_size(path) + 4095) / 4096 * 4096;
}

TEST(HctResidentHost, LoadsFromTheMappingAsTheCpuDecoder) {
  const std::string dir = TempDir("hct_resident_host");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  auto rt = Runtime::Create(HostResident(64ull << 20));
  ASSERT_TRUE(rt.ok());
  for (int pass = 0; pass < 2; ++pass) {
    auto ts = (*rt)->LoadMany(cat->tensors());
    ASSERT_TRUE(ts.ok()) << ts.status().ToString();
    for (const LoadedTensor& t : *ts)
      EXPECT_EQ(Bytes(t), test::CpuDecoded(f.path, t.spec().name)) << t.spec().name;
  }
  const RuntimeStats st = (*rt)->stats();
  EXPECT_TRUE((*rt)->IsResident(f.path));
  EXPECT_EQ(st.resident_files, 1u);
  EXPECT_EQ(st.loads_hct_resident, 2 * cat->tensors().size());
  EXPECT_EQ(st.bytes_hct_resident, st.bytes_hct_stored);  // nothing was read with pread
  EXPECT_EQ(st.bytes_o_direct + st.bytes_buffered, 0u);
  EXPECT_TRUE(st.resident_fallback.empty()) << st.resident_fallback;
}

TEST(HctResidentHost, CorruptChunkOfAResidentFileRefused) {
  const std::string dir = TempDir("hct_resident_corrupt");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  const std::string bad = f.descs[0].name, good = f.descs[4].name;
  test::FlipByte(f.path, test::ChunkByteOffset(f.path, bad, 1, 9));
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  auto rt = Runtime::Create(HostResident(64ull << 20));
  ASSERT_TRUE(rt.ok());
  for (int attempt = 0; attempt < 2; ++attempt) {  // not trusted after a failed verification
    auto t = (*rt)->Load(*cat->Find(bad));
    ASSERT_FALSE(t.ok());
    EXPECT_TRUE(test::IsChecksumFailure(t.status(), f.path, bad)) << t.status().ToString();
    EXPECT_NE(t.status().message().find("chunk 1 (stored bytes)"), std::string::npos)
        << t.status().ToString();
  }
  EXPECT_TRUE((*rt)->IsResident(f.path));
  auto g = (*rt)->Load(*cat->Find(good));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(Bytes(*g), test::CpuDecoded(f.path, good));
}

// Raw and HCT files share one budget; the least recently used file of an earlier load is
// released to make room, never one the current load uses.
TEST(ResidentBudget, SharedByRawAndHctWithLruRelease) {
  const std::string dir = TempDir("resident_lru");
  auto raw = test::MakeFile(dir + "/raw.bin", 200000, 3);
  auto h = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(h.codecs.size(), h.descs.size());
  auto cat = Catalog::FromHct(h.path);
  ASSERT_TRUE(cat.ok());
  const uint64_t a = PageRounded(raw.path), b = PageRounded(h.path);
  const uint64_t budget = std::max(a, b) + 4096;  // one of them at a time
  ASSERT_LT(budget, a + b);
  auto rt = Runtime::Create(HostResident(budget));
  ASSERT_TRUE(rt.ok());
  auto load_raw = [&] {
    auto ts = (*rt)->LoadMany(raw.specs);
    ASSERT_TRUE(ts.ok()) << ts.status().ToString();
    for (size_t i = 0; i < ts->size(); ++i)
      EXPECT_EQ(0, std::memcmp((*ts)[i].data(), raw.bytes[i].data(), raw.bytes[i].size()));
  };
  auto load_hct = [&] {
    auto ts = (*rt)->LoadMany(cat->tensors());
    ASSERT_TRUE(ts.ok()) << ts.status().ToString();
    for (const LoadedTensor& t : *ts) EXPECT_EQ(Bytes(t), test::CpuDecoded(h.path, t.spec().name));
  };
  load_raw();
  EXPECT_TRUE((*rt)->IsResident(raw.path));
  load_hct();
  EXPECT_TRUE((*rt)->IsResident(h.path));
  EXPECT_FALSE((*rt)->IsResident(raw.path));  // released for the HCT file
  EXPECT_EQ((*rt)->stats().resident_evictions, 1u);
  EXPECT_EQ((*rt)->stats().resident_files, 1u);
  load_raw();
  EXPECT_TRUE((*rt)->IsResident(raw.path));
  EXPECT_FALSE((*rt)->IsResident(h.path));
  EXPECT_EQ((*rt)->stats().resident_evictions, 2u);
  // Both in one load: the file already resident stays, the other is read (not an error), and
  // the budget still holds one file.
  std::vector<TensorSpec> both = raw.specs;
  for (const TensorSpec& s : cat->tensors()) both.push_back(s);
  auto ts = (*rt)->LoadMany(both);
  ASSERT_TRUE(ts.ok()) << ts.status().ToString();
  const RuntimeStats st = (*rt)->stats();
  EXPECT_EQ(st.resident_files, 1u);
  EXPECT_EQ(st.resident_evictions, 2u);
  EXPECT_TRUE((*rt)->IsResident(raw.path));
  EXPECT_NE(st.resident_fallback.find(h.path), std::string::npos) << st.resident_fallback;
  for (size_t i = raw.specs.size(); i < both.size(); ++i)
    EXPECT_EQ(Bytes((*ts)[i]), test::CpuDecoded(h.path, both[i].name));
  // The refusal was temporary: alone, the HCT file becomes resident again.
  load_hct();
  EXPECT_TRUE((*rt)->IsResident(h.path));
}

TEST(ResidentBudget, HctFileLargerThanTheBudgetIsRead) {
  const std::string dir = TempDir("resident_small");
  auto h = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(h.codecs.size(), h.descs.size());
  auto cat = Catalog::FromHct(h.path);
  ASSERT_TRUE(cat.ok());
  auto rt = Runtime::Create(HostResident(4096));
  ASSERT_TRUE(rt.ok());
  auto ts = (*rt)->LoadMany(cat->tensors());
  ASSERT_TRUE(ts.ok()) << ts.status().ToString();
  for (const LoadedTensor& t : *ts) EXPECT_EQ(Bytes(t), test::CpuDecoded(h.path, t.spec().name));
  const RuntimeStats st = (*rt)->stats();
  EXPECT_FALSE((*rt)->IsResident(h.path));
  EXPECT_EQ(st.loads_hct_resident, 0u);
  EXPECT_NE(st.resident_fallback.find("resident budget"), std::string::npos) << st.resident_fallback;
}

}  // namespace
}  // namespace hct
