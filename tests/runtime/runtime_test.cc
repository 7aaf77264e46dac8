// Runtime on the host path (force_host): the CPU fallback with the same checks the GPU tests make.
#include "hct/runtime.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "hct/hct.h"
#include "hct/safetensors.h"
#include "hct/units.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

using test::MakeFile;
using test::SmallRing;
using test::TempDir;
using TestFileRef = test::TestFile&;

void ExpectBytes(const LoadedTensor& t, const std::vector<unsigned char>& want) {
  ASSERT_EQ(t.bytes(), want.size()) << t.spec().name;
  ASSERT_EQ(t.placement(), Placement::kHost);
  EXPECT_EQ(std::memcmp(t.data(), want.data(), want.size()), 0) << t.spec().name;
}

class HostLoad : public ::testing::TestWithParam<ODirectMode> {};

TEST_P(HostLoad, EveryDTypeBitExact) {
  auto f = MakeFile(TempDir("every") + "/a.bin", 30000, 1);
  auto rt = Runtime::Create(SmallRing(GetParam(), true));
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  EXPECT_EQ((*rt)->placement(), Placement::kHost);
  for (size_t i = 0; i < f.specs.size(); ++i) {
    auto t = (*rt)->Load(f.specs[i]);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    ASSERT_TRUE(t->Wait().ok());
    ExpectBytes(*t, f.bytes[i]);
  }
  // All at once, packed in one buffer.
  auto all = (*rt)->LoadMany(f.specs);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  for (size_t i = 0; i < f.specs.size(); ++i) ExpectBytes((*all)[i], f.bytes[i]);
  auto st = (*rt)->stats();
  EXPECT_GT(st.bytes_verified, 0u);
  if (GetParam() == ODirectMode::kOn) {
    EXPECT_GT(st.bytes_o_direct, 0u);  // the build dir is on a file system with O_DIRECT
  }
  if (GetParam() == ODirectMode::kOff) EXPECT_EQ(st.bytes_o_direct, 0u);
}

INSTANTIATE_TEST_SUITE_P(Modes, HostLoad,
                         ::testing::Values(ODirectMode::kOff, ODirectMode::kOn, ODirectMode::kAuto));

// Block checksums computed here (not with hct::BlockXxh3): XXH3-64 of each `block` bytes.
void AddBlocks(TestFileRef f, uint64_t block) {
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

TEST_P(HostLoad, BlockChecksumsEveryDTypeBitExact) {
  auto f = MakeFile(TempDir("blocks") + "/a.bin", 30000, 11);
  AddBlocks(f, 4096);  // 4096-byte blocks fit the 8 KiB slots even at unaligned offsets
  uint64_t total = 0;
  for (TensorSpec& s : f.specs) {
    test::EditRange(s, [](FileRange& r) { r.xxh3.reset(); });  // only the blocks can verify
    total += s.length;
  }
  auto rt = Runtime::Create(SmallRing(GetParam(), true));
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  auto all = (*rt)->LoadMany(f.specs);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  for (size_t i = 0; i < f.specs.size(); ++i) ExpectBytes((*all)[i], f.bytes[i]);
  EXPECT_EQ((*rt)->stats().bytes_verified, total);
  for (size_t i = 0; i < f.specs.size(); ++i) {
    auto t = (*rt)->Load(f.specs[i]);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    ExpectBytes(*t, f.bytes[i]);
  }
  EXPECT_EQ((*rt)->stats().bytes_verified, 2 * total);
}

TEST(HostLoadTest, CorruptedBlockNamesTensorAndBlock) {
  auto f = MakeFile(TempDir("corrupt_block") + "/a.bin", 40000, 12);
  AddBlocks(f, 4096);
  const TensorSpec& s = f.specs[9];
  ASSERT_GT(s.length, 3u * 4096);
  test::FlipByte(f.path, s.file()->offset + 2 * 4096 + 5);
  auto check = [&](const Status& st) {
    EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find("tensor '" + s.name + "'"), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find("block 2 "), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find(f.path), std::string::npos) << st.ToString();
    EXPECT_TRUE(test::IsChecksumFailure(st, f.path, s.name));
  };
  for (ODirectMode od : {ODirectMode::kOff, ODirectMode::kOn}) {
    auto rt = Runtime::Create(SmallRing(od, true));
    ASSERT_TRUE(rt.ok());
    check((*rt)->Load(s).status());
    check((*rt)->LoadMany(f.specs).status());
    EXPECT_TRUE((*rt)->Load(f.specs[8]).ok());
  }
  // Resident mode verifies the blocks of a newly mapped file in parallel, the same way.
  auto o = SmallRing(ODirectMode::kOff, true);
  o.resident_budget = 64ull << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  check((*rt)->Load(s).status());
  EXPECT_TRUE((*rt)->IsResident(f.path));
  // verify off: the flipped byte comes through.
  o.resident_budget = 0;
  o.verify = false;
  auto off = Runtime::Create(o);
  ASSERT_TRUE(off.ok());
  auto t = (*off)->Load(s);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_NE(std::memcmp(t->data(), f.bytes[9].data(), s.length), 0);
}

TEST(HostLoadTest, BlocksThatDoNotFitASlotFallBackToWholeHash) {
  // 8 KiB blocks at unaligned offsets need a 12 KiB O_DIRECT cover: more than a slot. Then the
  // whole-tensor XXH3 verifies (in piece order), and a bad block count is ignored the same way.
  auto f = MakeFile(TempDir("blocks_fallback") + "/a.bin", 40000, 13);
  AddBlocks(f, 8192);
  test::EditRange(f.specs[4], [](FileRange& r) { r.block_bytes = 4096; });  // count no longer
  // matches: ignored
  const TensorSpec& s = f.specs[9];
  test::FlipByte(f.path, s.file()->offset + 5);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kOn, true));
  ASSERT_TRUE(rt.ok());
  auto bad = (*rt)->Load(s);
  EXPECT_EQ(bad.status().code(), Code::kCorruption);
  EXPECT_NE(bad.status().message().find("checksum mismatch: XXH3"), std::string::npos)
      << bad.status().ToString();
  EXPECT_NE(bad.status().message().find("tensor '" + s.name + "'"), std::string::npos);
  const uint64_t before = (*rt)->stats().bytes_verified;
  auto good = (*rt)->Load(f.specs[4]);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  ExpectBytes(*good, f.bytes[4]);
  EXPECT_EQ((*rt)->stats().bytes_verified - before, f.specs[4].length);
}

TEST(HostLoadTest, CallerMemory) {
  auto f = MakeFile(TempDir("caller") + "/a.bin", 20000, 2);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kOff, true));
  ASSERT_TRUE(rt.ok());
  std::vector<unsigned char> mem(f.specs[3].length + 16, 0);
  auto t = (*rt)->Load(f.specs[3], nullptr, mem.data(), mem.size());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->data(), mem.data());
  EXPECT_EQ(std::memcmp(mem.data(), f.bytes[3].data(), f.bytes[3].size()), 0);
  auto small = (*rt)->Load(f.specs[3], nullptr, mem.data(), f.specs[3].length - 1);
  EXPECT_EQ(small.status().code(), Code::kInvalidArgument);
}

TEST(HostLoadTest, CorruptedTensorRefused) {
  auto f = MakeFile(TempDir("corrupt") + "/a.bin", 40000, 3);
  const TensorSpec& s = f.specs[9];
  test::FlipByte(f.path, s.file()->offset + s.length - 1);  // the last chunk: checked at the end
  for (ODirectMode od : {ODirectMode::kOff, ODirectMode::kOn}) {
    auto rt = Runtime::Create(SmallRing(od, true));
    ASSERT_TRUE(rt.ok());
    auto t = (*rt)->Load(s);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), Code::kCorruption);
    EXPECT_NE(t.status().message().find("tensor '" + s.name + "'"), std::string::npos)
        << t.status().ToString();
    EXPECT_NE(t.status().message().find("checksum mismatch"), std::string::npos);
    EXPECT_TRUE(test::IsChecksumFailure(t.status(), f.path, s.name));
    // The neighbours still load, and the batch that holds the bad tensor fails as a whole.
    EXPECT_TRUE((*rt)->Load(f.specs[8]).ok());
    EXPECT_EQ((*rt)->LoadMany(f.specs).status().code(), Code::kCorruption);
  }
  auto o = SmallRing(ODirectMode::kOff, true);
  o.verify = false;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  auto t = (*rt)->Load(s);
  ASSERT_TRUE(t.ok());  // unverified: the flipped byte comes through
  EXPECT_NE(std::memcmp(t->data(), f.bytes[9].data(), s.length), 0);
}

TEST(HostLoadTest, BadSpecs) {
  auto f = MakeFile(TempDir("bad") + "/a.bin", 10000, 4);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kAuto, true));
  ASSERT_TRUE(rt.ok());
  TensorSpec s = f.specs[0];
  test::EditRange(s, [](FileRange& r) { r.path += ".missing"; });
  auto r = (*rt)->Load(s);
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find(s.name), std::string::npos);
  s = f.specs.back();
  test::EditRange(s, [](FileRange& r) { r.offset += 1u << 20; });
  r = (*rt)->Load(s);
  EXPECT_EQ(r.status().code(), Code::kOutOfRange) << r.status().ToString();
  s = f.specs[12];  // F32
  s.length += 4;
  r = (*rt)->Load(s);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("does not match shape"), std::string::npos);
}

TEST(HostLoadTest, ResidentAndFallback) {
  auto f = MakeFile(TempDir("resident") + "/a.bin", 30000, 5);
  auto o = SmallRing(ODirectMode::kOff, true);
  o.resident_budget = 64ull << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  for (int rep = 0; rep < 2; ++rep) {
    auto all = (*rt)->LoadMany(f.specs);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    for (size_t i = 0; i < f.specs.size(); ++i) ExpectBytes((*all)[i], f.bytes[i]);
  }
  EXPECT_TRUE((*rt)->IsResident(f.path));
  auto st = (*rt)->stats();
  EXPECT_EQ(st.loads_resident, 2 * f.specs.size());
  EXPECT_EQ(st.loads_one_shot, 0u);
  // Verified once, when first read from the mapping.
  uint64_t total = 0;
  for (auto& s : f.specs) total += s.length;
  EXPECT_EQ(st.bytes_verified, total);

  // A budget smaller than the file: one-shot, with the reason recorded.
  o.resident_budget = 4096;
  auto small = Runtime::Create(o);
  ASSERT_TRUE(small.ok());
  auto t = (*small)->Load(f.specs[1]);
  ASSERT_TRUE(t.ok());
  ExpectBytes(*t, f.bytes[1]);
  EXPECT_FALSE((*small)->IsResident(f.path));
  EXPECT_EQ((*small)->stats().loads_one_shot, 1u);
  EXPECT_NE((*small)->stats().resident_fallback.find("resident budget"), std::string::npos);
}

TEST(HostLoadTest, ResidentCorruptionRefused) {
  auto f = MakeFile(TempDir("rescorrupt") + "/a.bin", 20000, 6);
  test::FlipByte(f.path, f.specs[4].file()->offset);
  auto o = SmallRing(ODirectMode::kOff, true);
  o.resident_budget = 64ull << 20;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok());
  auto t = (*rt)->Load(f.specs[4]);
  EXPECT_EQ(t.status().code(), Code::kCorruption);
  EXPECT_NE(t.status().message().find(f.specs[4].name), std::string::npos);
  EXPECT_TRUE(test::IsChecksumFailure(t.status(), f.path, f.specs[4].name));
  EXPECT_TRUE((*rt)->Load(f.specs[5]).ok());
}

TEST(HostLoadTest, LayerStreamingWithPrefetch) {
  auto f = MakeFile(TempDir("layers") + "/a.bin", 12000, 7, /*layers=*/6, /*per_layer=*/4);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kAuto, true));
  ASSERT_TRUE(rt.ok());
  Catalog cat = Catalog::FromSpecs(f.specs);
  ASSERT_EQ(cat.num_layers(), 6);
  std::vector<std::vector<TensorSpec>> layers;
  for (int i = 0; i < 6; ++i) layers.push_back(cat.Layer(i));
  auto ls = LayerStreamer::Create(rt->get(), layers, /*prefetch=*/2, nullptr);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  EXPECT_EQ((*ls)->slots(), 3);
  std::set<void*> seen;
  for (int i = 0; i < 6; ++i) {
    auto layer = (*ls)->Next();
    ASSERT_TRUE(layer.ok()) << layer.status().ToString();
    EXPECT_EQ(layer->index, i);
    ASSERT_EQ(layer->tensors.size(), 4u);
    for (size_t k = 0; k < 4; ++k) ExpectBytes(layer->tensors[k], f.bytes[size_t(i) * 4 + k]);
    seen.insert(layer->tensors[0].data());
  }
  EXPECT_EQ(seen.size(), 3u);  // the three slots, reused
  EXPECT_EQ((*ls)->Next().status().code(), Code::kOutOfRange);
}

// The setup counters of `st`: Restart and later passes must leave them as they are.
std::vector<uint64_t> SetupCounts(const RuntimeStats& st) {
  return {st.setup_allocations, st.setup_bytes, st.buffer_allocations, st.pinned_staging_bytes,
          st.hct_device_scratch_bytes};
}

TEST(HostLoadTest, LayerStreamerRestartReusesSlotsAndRings) {
  auto f = MakeFile(TempDir("restart") + "/a.bin", 12000, 21, /*layers=*/5, /*per_layer=*/3);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kAuto, true));
  ASSERT_TRUE(rt.ok());
  auto layers = test::LayersOf(f.specs);
  auto ls = LayerStreamer::Create(rt->get(), layers, /*prefetch=*/1, nullptr);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  const RuntimeStats created = (*rt)->stats();
  EXPECT_EQ(created.buffer_allocations, 2u);  // the two slots
  EXPECT_GT(created.setup_allocations, 0u);   // the ring, at Create
  std::set<void*> slots;
  for (int pass = 0; pass < 3; ++pass) {
    if (pass > 0) ASSERT_TRUE((*ls)->Restart().ok());
    for (int i = 0; i < 5; ++i) {
      auto layer = (*ls)->Next();
      ASSERT_TRUE(layer.ok()) << "pass " << pass << ": " << layer.status().ToString();
      EXPECT_EQ(layer->index, i);
      ASSERT_EQ(layer->tensors.size(), 3u);
      for (size_t k = 0; k < 3; ++k) ExpectBytes(layer->tensors[k], f.bytes[size_t(i) * 3 + k]);
      slots.insert(layer->tensors[0].data());
    }
    EXPECT_EQ((*ls)->Next().status().code(), Code::kOutOfRange);
    EXPECT_EQ(SetupCounts((*rt)->stats()), SetupCounts(created)) << "pass " << pass;
  }
  EXPECT_EQ(slots.size(), 2u);  // the same two slots in every pass
  EXPECT_EQ((*rt)->stats().loads_one_shot, 15u * 3u);
}

TEST(HostLoadTest, LayerStreamerRestartMidPassKeepsHeldLayers) {
  auto f = MakeFile(TempDir("restart_mid") + "/a.bin", 12000, 22, 4, 2);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kOff, true));
  ASSERT_TRUE(rt.ok());
  auto layers = test::LayersOf(f.specs);
  auto ls = LayerStreamer::Create(rt->get(), layers, 2, nullptr);
  ASSERT_TRUE(ls.ok());
  ASSERT_TRUE((*ls)->Next().ok());
  auto held = (*ls)->Next();  // layer 1, held across the restart
  ASSERT_TRUE(held.ok());
  ASSERT_EQ(held->index, 1);
  ASSERT_TRUE((*ls)->Restart().ok());
  for (int i = 0; i < 4; ++i) {  // two slots left for the whole pass
    auto layer = (*ls)->Next();
    ASSERT_TRUE(layer.ok()) << layer.status().ToString();
    EXPECT_EQ(layer->index, i);
    for (size_t k = 0; k < 2; ++k) ExpectBytes(layer->tensors[k], f.bytes[size_t(i) * 2 + k]);
    for (size_t k = 0; k < 2; ++k) ExpectBytes(held->tensors[k], f.bytes[2 + k]);
  }
  EXPECT_EQ((*ls)->Next().status().code(), Code::kOutOfRange);
  EXPECT_EQ((*rt)->stats().buffer_allocations, 3u);
}

TEST(HostLoadTest, LayerStreamerRestartClearsAnError) {
  auto f = MakeFile(TempDir("restart_err") + "/a.bin", 8000, 23, 4, 2);
  const uint64_t at = f.specs[2 * 2].file()->offset + 3;  // layer 2
  test::FlipByte(f.path, at);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kOff, true));
  ASSERT_TRUE(rt.ok());
  auto layers = test::LayersOf(f.specs);
  auto ls = LayerStreamer::Create(rt->get(), layers, 1, nullptr);
  ASSERT_TRUE(ls.ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE((*ls)->Next().ok());
  EXPECT_EQ((*ls)->Next().status().code(), Code::kCorruption);
  EXPECT_EQ((*ls)->Next().status().code(), Code::kCorruption);  // the error stays
  test::FlipByte(f.path, at);                                     // repaired
  ASSERT_TRUE((*ls)->Restart().ok());
  for (int i = 0; i < 4; ++i) {
    auto layer = (*ls)->Next();
    ASSERT_TRUE(layer.ok()) << layer.status().ToString();
    EXPECT_EQ(layer->index, i);
    ExpectBytes(layer->tensors[0], f.bytes[size_t(i) * 2]);
  }
}

TEST(HostLoadTest, LayerStreamingCorruptLayer) {
  auto f = MakeFile(TempDir("layers_bad") + "/a.bin", 8000, 8, 5, 3);
  test::FlipByte(f.path, f.specs[3 * 3 + 1].file()->offset + 7);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kOff, true));
  ASSERT_TRUE(rt.ok());
  auto layers = test::LayersOf(f.specs);
  auto ls = LayerStreamer::Create(rt->get(), layers, 1, nullptr);
  ASSERT_TRUE(ls.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*ls)->Next().ok());
  auto bad = (*ls)->Next();
  EXPECT_EQ(bad.status().code(), Code::kCorruption);
  EXPECT_NE(bad.status().message().find("layer 3"), std::string::npos);
  EXPECT_NE(bad.status().message().find(f.specs[10].name), std::string::npos);
}

TEST(HostLoadTest, DLPackExport) {
  auto f = MakeFile(TempDir("dlpack") + "/a.bin", 8000, 9);
  auto rt = Runtime::Create(SmallRing(ODirectMode::kOff, true));
  ASSERT_TRUE(rt.ok());
  const size_t bf16 = size_t(DType::kBF16);
  DLManagedTensor* m = nullptr;
  {
    auto t = (*rt)->Load(f.specs[bf16]);
    ASSERT_TRUE(t.ok());
    auto r = t->ToDLPack();
    ASSERT_TRUE(r.ok());
    m = *r;
  }  // the LoadedTensor is gone; the export keeps the memory
  EXPECT_EQ(m->dl_tensor.device.device_type, kDLCPU);
  EXPECT_EQ(m->dl_tensor.dtype.code, 4);  // kDLBfloat in the DLPack spec
  EXPECT_EQ(m->dl_tensor.dtype.bits, 16);
  EXPECT_EQ(m->dl_tensor.dtype.lanes, 1);
  ASSERT_EQ(m->dl_tensor.ndim, 2);
  EXPECT_EQ(m->dl_tensor.shape[0], f.specs[bf16].shape[0]);
  EXPECT_EQ(m->dl_tensor.shape[1], f.specs[bf16].shape[1]);
  EXPECT_EQ(m->dl_tensor.strides, nullptr);
  EXPECT_EQ(std::memcmp(m->dl_tensor.data, f.bytes[bf16].data(), f.bytes[bf16].size()), 0);
  m->deleter(m);
  // F8_E4M3 is e4m3fn (code 10), F4 has 4 bits.
  EXPECT_EQ(ToDLDataType(DType::kF8_E4M3)->code, 10);
  EXPECT_EQ(ToDLDataType(DType::kF4)->bits, 4);
}

TEST(RuntimeOptionsTest, FromEnv) {
  setenv("HCT_STAGING_BYTES", "64M", 1);
  setenv("HCT_IO_THREADS", "3", 1);
  setenv("HCT_O_DIRECT", "off", 1);
  setenv("HCT_VERIFY", "off", 1);
  setenv("HCT_RESIDENT_BUDGET", "2G", 1);
  auto o = RuntimeOptions::FromEnv();
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->staging_bytes, 64ull << 20);
  EXPECT_EQ(o->io_threads, 3);
  EXPECT_EQ(o->o_direct, ODirectMode::kOff);
  EXPECT_FALSE(o->verify);
  EXPECT_EQ(o->resident_budget, 2ull << 30);
  setenv("HCT_O_DIRECT", "sometimes", 1);
  auto bad = RuntimeOptions::FromEnv();
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("HCT_O_DIRECT"), std::string::npos);
  unsetenv("HCT_O_DIRECT");
  setenv("HCT_STAGING_BYTES", "4K", 1);  // smaller than two chunks
  EXPECT_EQ(RuntimeOptions::FromEnv().status().code(), Code::kInvalidArgument);
  for (const char* k : {"HCT_STAGING_BYTES", "HCT_IO_THREADS", "HCT_VERIFY", "HCT_RESIDENT_BUDGET"})
    unsetenv(k);
  setenv("HCT_COPY_STEP", "1M", 1);
  auto step = RuntimeOptions::FromEnv();
  ASSERT_TRUE(step.ok()) << step.status().ToString();
  EXPECT_EQ(step->copy_step_bytes, 1ull << 20);
  setenv("HCT_COPY_STEP", "4K", 1);  // below 64K: a copy per page would be all overhead
  auto small = RuntimeOptions::FromEnv();
  EXPECT_EQ(small.status().code(), Code::kInvalidArgument);
  EXPECT_NE(small.status().message().find("copy_step_bytes"), std::string::npos);
  unsetenv("HCT_COPY_STEP");
}

// A safetensors file through the Catalog and the C API.
// The settings are documented once (docs/runtime.md "Settings"): every variable of that table is
// read by FromEnv (a bad value fails naming it), and libhct(3) names the same set.
TEST(RuntimeOptionsTest, SettingsTableIsTheOneFromEnvReads) {
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string doc = slurp(std::string(HCT_SOURCE_DIR) + "/docs/runtime.md");
  const std::string man = slurp(std::string(HCT_SOURCE_DIR) + "/man/libhct.3");
  const size_t from = doc.find("## Settings");
  ASSERT_NE(from, std::string::npos);
  const std::string table = doc.substr(from, doc.find("\n## ", from + 1) - from);
  std::set<std::string> vars;
  for (size_t at = table.find("| HCT_"); at != std::string::npos;
       at = table.find("| HCT_", at + 1)) {
    const size_t b = at + 2, e = table.find(' ', b);
    vars.insert(table.substr(b, e - b));
  }
  EXPECT_EQ(vars.size(), 16u);
  for (const std::string& v : vars) {
    setenv(v.c_str(), "not-a-value", 1);
    auto r = RuntimeOptions::FromEnv();
    unsetenv(v.c_str());
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << v << " is not read by FromEnv";
    EXPECT_NE(r.status().message().find(v), std::string::npos) << r.status().ToString();
    EXPECT_NE(man.find("\\fB" + v + "\\fR"), std::string::npos) << v << " missing in libhct.3";
  }
}

// The table's default column is what RuntimeOptions{} holds (the header states the defaults
// only as its initializers, so the table is the one place they are written for people).
TEST(RuntimeOptionsTest, SettingsTableDefaultsAreTheBuiltInOnes) {
  std::ifstream in(std::string(HCT_SOURCE_DIR) + "/docs/runtime.md");
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t from = doc.find("## Settings");
  ASSERT_NE(from, std::string::npos);
  const std::string table = doc.substr(from, doc.find("\n## ", from + 1) - from);
  std::map<std::string, std::string> def;  // option -> first word of its default column
  for (size_t at = table.find("\n| "); at != std::string::npos; at = table.find("\n| ", at + 1)) {
    std::vector<std::string> cells;
    for (size_t b = at + 2, e; (e = table.find('|', b)) != std::string::npos && cells.size() < 3;
         b = e + 1) {
      std::string c = table.substr(b, e - b);
      c.erase(0, c.find_first_not_of(' '));
      cells.push_back(c.substr(0, c.find(' ')));
    }
    if (cells.size() == 3 && cells[1].rfind("HCT_", 0) == 0) def[cells[0]] = cells[2];
  }
  const RuntimeOptions o;
  const std::map<std::string, uint64_t> sizes = {
      {"staging_bytes", o.staging_bytes},         {"chunk_bytes", o.chunk_bytes},
      {"hct_slot_bytes", o.hct_slot_bytes},       {"hct_staging_bytes", o.hct_staging_bytes},
      {"copy_step_bytes", o.copy_step_bytes},     {"resident_budget", o.resident_budget},
      {"io_threads", uint64_t(o.io_threads)},     {"decode_threads", uint64_t(o.decode_threads)},
      {"streams", uint64_t(o.streams)},           {"device", uint64_t(o.device)},
      {"hct_decode_streams", uint64_t(o.hct_decode_streams)},
      {"hct_hash_step_bytes", o.hct_hash_step_bytes}};
  for (const auto& [name, value] : sizes) {
    ASSERT_TRUE(def.count(name)) << name << " has no row";
    auto v = ParseSize(def[name]);
    ASSERT_TRUE(v.ok()) << name << ": " << def[name];
    EXPECT_EQ(*v, value) << name;
  }
  EXPECT_EQ(def["verify"], o.verify ? "on" : "off");
  EXPECT_EQ(def["force_host"], o.force_host ? "on" : "off");
  EXPECT_EQ(def["hct_profile"], o.hct_profile ? "on" : "off");
  EXPECT_EQ(def["o_direct"], o.o_direct == ODirectMode::kAuto ? "auto"
                             : o.o_direct == ODirectMode::kOn ? "on" : "off");
  EXPECT_EQ(def.size(), sizes.size() + 4) << "a row this test does not know";
}

TEST(CApiTest, SafetensorsOpenLookupLoadExport) {
  std::string dir = TempDir("capi");
  std::vector<uint16_t> a(64 * 32), b(3 * 5);
  for (size_t i = 0; i < a.size(); ++i) a[i] = uint16_t(i * 7 + 1);
  for (size_t i = 0; i < b.size(); ++i) b[i] = uint16_t(1000 + i);
  std::vector<TensorData> td = {
      {"model.layers.0.mlp.up_proj.weight", DType::kBF16, {64, 32},
       {reinterpret_cast<const std::byte*>(a.data()), a.size() * 2}},
      {"lm_head.weight", DType::kF16, {3, 5},
       {reinterpret_cast<const std::byte*>(b.data()), b.size() * 2}}};
  std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, td).ok());

  setenv("HCT_FORCE_HOST", "1", 1);
  hct_runtime* rt = nullptr;
  ASSERT_EQ(hct_open(path.c_str(), &rt), HCT_OK) << hct_last_error();
  unsetenv("HCT_FORCE_HOST");
  EXPECT_EQ(hct_on_device(rt), 0);
  EXPECT_EQ(hct_num_tensors(rt), 2);
  hct_tensor_info info{};
  ASSERT_EQ(hct_lookup(rt, "model.layers.0.mlp.up_proj.weight", &info), HCT_OK);
  EXPECT_STREQ(info.dtype, "BF16");
  EXPECT_EQ(info.ndim, 2);
  EXPECT_EQ(info.shape[0], 64);
  EXPECT_EQ(info.shape[1], 32);
  EXPECT_EQ(info.nbytes, a.size() * 2);
  EXPECT_EQ(info.layer, 0);
  ASSERT_EQ(hct_lookup(rt, "lm_head.weight", &info), HCT_OK);
  EXPECT_EQ(info.layer, -1);
  EXPECT_EQ(hct_lookup(rt, "nope", &info), HCT_NOT_FOUND);
  EXPECT_NE(std::string(hct_last_error()).find("'nope'"), std::string::npos);

  hct_tensor* t = nullptr;
  ASSERT_EQ(hct_load(rt, "model.layers.0.mlp.up_proj.weight", nullptr, nullptr, 0, &t), HCT_OK)
      << hct_last_error();
  ASSERT_EQ(hct_tensor_wait(t), HCT_OK);
  EXPECT_EQ(hct_tensor_event(t), nullptr);
  EXPECT_EQ(hct_tensor_nbytes(t), a.size() * 2);
  EXPECT_EQ(std::memcmp(hct_tensor_data(t), a.data(), a.size() * 2), 0);
  DLManagedTensor* m = nullptr;
  ASSERT_EQ(hct_tensor_to_dlpack(t, &m), HCT_OK);
  hct_tensor_free(t);
  hct_close(rt);  // the export outlives both
  EXPECT_EQ(std::memcmp(m->dl_tensor.data, a.data(), a.size() * 2), 0);
  m->deleter(m);
  EXPECT_STREQ(hct_code_name(HCT_CORRUPTION), "Corruption");
}

}  // namespace
}  // namespace hct
