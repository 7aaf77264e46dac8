// Regression: warming a safetensors file with zero-size and scalar tensors failed with "tensor
// 'empty': written out of order (next due: none)". Every dtype (F4 and F6 included), zero-size
// tensors first, in the middle and last, scalars; warmed and read back byte-exact.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdlib>
#include <cstring>

#include "cache_test_util.h"
#include "hct/cache.h"
#include "hct/safetensors.h"

namespace hct {
namespace {

using namespace hct::testing;

// Safetensors dtype names and bits per element, written out here (not taken from dtype.h).
struct DT {
  const char* name;
  int bits;
};
constexpr DT kAll[] = {{"BOOL", 8},    {"U8", 8},   {"I8", 8},   {"F8_E5M2", 8}, {"F8_E4M3", 8},
                       {"F8_E8M0", 8}, {"I16", 16}, {"U16", 16}, {"F16", 16},    {"BF16", 16},
                       {"I32", 32},    {"U32", 32}, {"F32", 32}, {"C64", 64},    {"F64", 64},
                       {"I64", 64},    {"U64", 64}, {"F4", 4},   {"F6_E2M3", 6}, {"F6_E3M2", 6}};

std::vector<FakeTensor> AllDTypeTensors(const std::string& prefix, uint64_t seed) {
  std::vector<FakeTensor> v;
  // A zero-size tensor before any data.
  v.push_back({prefix + "empty_first", "F32", {0}, {}});
  for (const DT& d : kAll) {
    // 4 x 6 elements: whole bytes for 4- and 6-bit types too (24 * 6 / 8 = 18).
    uint64_t bytes = 24ull * d.bits / 8;
    v.push_back({prefix + "t." + d.name, d.name, {4, 6}, RandomBytes(bytes, seed++)});
  }
  v.push_back({prefix + "empty_middle", "BF16", {0, 4}, {}});
  v.push_back({prefix + "scalar", "F32", {}, RandomBytes(4, seed++)});
  v.push_back({prefix + "scalar_f4_pair", "F4", {2}, RandomBytes(1, seed++)});
  v.push_back({prefix + "empty_last", "BF16", {0}, {}});
  return v;
}

void ExpectWarmedExactly(Cache& c, const std::string& model, const std::vector<FakeTensor>& ts) {
  for (const FakeTensor& ft : ts) {
    auto loc = c.LookupTensor(model, ft.name);
    ASSERT_TRUE(loc.ok()) << ft.name << ": " << loc.status().ToString();
    EXPECT_EQ(std::string(DTypeName(loc->dtype)), ft.dtype) << ft.name;
    EXPECT_EQ(loc->shape, ft.shape) << ft.name;
    EXPECT_EQ(loc->length, ft.bytes.size()) << ft.name;
    EXPECT_EQ(loc->xxh3, XXH3_64bits(ft.bytes.data(), ft.bytes.size())) << ft.name;
    if (!ft.bytes.empty())
      EXPECT_EQ(ReadRange(loc->path, loc->offset, loc->length), ft.bytes) << ft.name;
    // The entry is a standard safetensors file that holds the same tensor.
    auto f = SafetensorsFile::Open(loc->path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    const TensorInfo* ti = f->Find(ft.name);
    ASSERT_NE(ti, nullptr) << ft.name;
    EXPECT_EQ(ti->shape, ft.shape);
    EXPECT_EQ(f->file_offset(*ti), loc->offset);
    auto data = f->data(*ti);
    ASSERT_TRUE(data.ok());
    EXPECT_EQ(std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(data->data()),
                                   reinterpret_cast<const uint8_t*>(data->data()) + data->size()),
              ft.bytes)
        << ft.name;
  }
}

TEST(CacheDTypes, EveryDTypeZeroSizeAndScalarTensorsWarmByteExact) {
  TempDir t;
  fs::create_directories(t / "src/m");
  // Non-layer tensors (one "other" entry) and the same mix inside a layer entry.
  std::vector<FakeTensor> a = AllDTypeTensors("", 1);
  std::vector<FakeTensor> b = AllDTypeTensors("model.layers.3.", 100);
  std::vector<FakeTensor> both = a;
  both.insert(both.end(), b.begin(), b.end());
  WriteFakeSafetensors(t / "src/m/model.safetensors", both);

  auto c = Cache::Open(t / "cache");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  for (int threads : {1, 4}) {
    auto r = (*c)->Warm(t / "src/m", {.threads = threads, .force = threads > 1});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tensors_written, both.size());
    EXPECT_EQ(r->entries_written, 2u);
    ExpectWarmedExactly(**c, "m", both);
  }
  auto v = (*c)->Verify({.mode = VerifyMode::kDeep});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
  // Warm again: everything is skipped, nothing rewritten.
  auto r = (*c)->Warm(t / "src/m");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->entries_written, 0u);
  EXPECT_EQ(r->tensors_skipped, both.size());
}

TEST(CacheDTypes, OnlyZeroSizeTensorsMakeAnEmptyDataSection) {
  TempDir t;
  fs::create_directories(t / "src");
  std::vector<FakeTensor> ts = {{"a", "F32", {0}, {}}, {"b", "I64", {3, 0}, {}}};
  WriteFakeSafetensors(t / "src/z.safetensors", ts);
  auto c = Cache::Open(t / "cache");
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Warm(t / "src/z.safetensors");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensors_written, 2u);
  ExpectWarmedExactly(**c, "z", ts);
  EXPECT_TRUE((*c)->Verify({.mode = VerifyMode::kDeep})->ok());
}

// The file the formats test writes (SafetensorsWriter, streamed), when it was kept: the exact
// file of the bug report. Written by hct_formats_tests with HCT_KEEP_SAFETENSORS_OUT=DIR.
TEST(CacheDTypes, WarmsTheFormatsTestRoundTripFileWhenKept) {
  const char* keep = std::getenv("HCT_KEEP_SAFETENSORS_OUT");
  std::string path = keep ? std::string(keep) + "/roundtrip/all_dtypes.safetensors" : "";
  if (path.empty() || !fs::exists(path))
    GTEST_SKIP() << "run hct_formats_tests with HCT_KEEP_SAFETENSORS_OUT=DIR first";
  auto src = SafetensorsFile::Open(path);
  ASSERT_TRUE(src.ok());
  TempDir t;
  auto c = Cache::Open(t / "cache");
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Warm(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensors_written, src->tensors().size());
  for (const TensorInfo& ti : src->tensors()) {
    auto loc = (*c)->LookupTensor(ti.name);
    ASSERT_TRUE(loc.ok()) << ti.name;
    auto want = src->data(ti);
    ASSERT_TRUE(want.ok());
    auto got = ReadRange(loc->path, loc->offset, loc->length);
    ASSERT_EQ(got.size(), want->size()) << ti.name;
    if (!got.empty()) EXPECT_EQ(std::memcmp(got.data(), want->data(), got.size()), 0) << ti.name;
  }
}

}  // namespace
}  // namespace hct
