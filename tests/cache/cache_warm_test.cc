// Warm from plain safetensors sources; entries are standard, aligned safetensors files.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <map>
#include <thread>

#include "cache_test_util.h"
#include "hct/cache.h"
#include "hct/safetensors.h"

namespace hct {
namespace {

using namespace hct::testing;

std::unique_ptr<Cache> OpenOrDie(const std::string& dir) {
  auto c = Cache::Open(dir);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

TEST(CacheWarm, WarmsShardedFolderIntoAlignedSafetensorsEntries) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/tiny", 2, 4, 3, 1000);
  auto c = OpenOrDie(t / "cache");
  int progress_calls = 0;
  WarmOptions wo;
  wo.threads = 3;
  wo.progress = [&](const WarmProgress& p) {
    ++progress_calls;
    EXPECT_LE(p.done_bytes, p.total_bytes);
  };
  auto r = c->Warm(m.dir, wo);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model, "tiny");
  // 2 shards: shard 1 has layers 0, 2 + other; shard 2 has layers 1, 3 -> 5 entries.
  EXPECT_EQ(r->entries_written, 5u);
  EXPECT_EQ(r->tensors_written, m.all.size());
  EXPECT_EQ(progress_calls, static_cast<int>(m.all.size()));

  for (const FakeTensor& ft : m.all) {
    auto loc = c->LookupTensor(ft.name);
    ASSERT_TRUE(loc.ok()) << ft.name << ": " << loc.status().ToString();
    EXPECT_EQ(loc->length, ft.bytes.size());
    EXPECT_EQ(loc->shape, ft.shape);
    EXPECT_EQ(std::string(DTypeName(loc->dtype)), ft.dtype);
    EXPECT_EQ(ReadRange(loc->path, loc->offset, loc->length), ft.bytes) << ft.name;
    EXPECT_EQ(loc->xxh3, XXH3_64bits(ft.bytes.data(), ft.bytes.size()));
  }
  // Each entry: a valid safetensors file whose data section starts at a 4096 multiple, and the
  // index offsets are the file's.
  auto ents = c->ListEntries("tiny");
  ASSERT_TRUE(ents.ok());
  ASSERT_EQ(ents->size(), 5u);
  for (const EntryInfo& e : *ents) {
    auto f = SafetensorsFile::Open(e.path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->data_offset() % 4096, 0u) << e.path;
    EXPECT_EQ(f->file_size(), e.size);
    for (const TensorInfo& ti : f->tensors()) {
      auto loc = c->LookupTensor("tiny", ti.name);
      ASSERT_TRUE(loc.ok());
      EXPECT_EQ(loc->path, e.path);
      EXPECT_EQ(loc->offset, f->file_offset(ti));
      if (LayerOfTensor(ti.name)) EXPECT_EQ(e.layer, LayerOfTensor(ti.name));
    }
  }
  // Tensors of a layer, in file order.
  auto l2 = c->TensorsOfLayer("tiny", 2);
  ASSERT_TRUE(l2.ok());
  ASSERT_EQ(l2->size(), 3u);
  for (size_t i = 1; i < l2->size(); ++i) EXPECT_GT((*l2)[i].offset, (*l2)[i - 1].offset);
  EXPECT_EQ((*l2)[0].name, "model.layers.2.self_attn.q_proj.weight");
  EXPECT_EQ(c->TensorsOfLayer("tiny", 9)->size(), 0u);
  EXPECT_EQ(c->TensorsOfLayer("nope", 0).status().code(), Code::kNotFound);
  EXPECT_EQ(c->LookupTensor("missing.weight").status().code(), Code::kNotFound);

  // Again: nothing to do.
  auto r2 = c->Warm(m.dir);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->entries_written, 0u);
  EXPECT_EQ(r2->entries_skipped, 5u);
  EXPECT_EQ(r2->tensors_skipped, m.all.size());
}

TEST(CacheWarm, TensorPatternWarmsSubsetThenUnion) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/tiny", 1, 2, 4, 256);
  auto c = OpenOrDie(t / "cache");
  WarmOptions wo;
  wo.tensors = "*.layers.1.*q_proj*";
  auto r = c->Warm(m.dir, wo);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensors_written, 1u);
  EXPECT_TRUE(c->LookupTensor("model.layers.1.self_attn.q_proj.weight").ok());
  EXPECT_EQ(c->LookupTensor("model.layers.1.self_attn.k_proj.weight").status().code(),
            Code::kNotFound);
  wo.tensors = "*.layers.1.*k_proj*";
  r = c->Warm(m.dir, wo);
  ASSERT_TRUE(r.ok());
  // The entry for layer 1 is rewritten with both tensors.
  EXPECT_EQ(r->tensors_written, 2u);
  EXPECT_TRUE(c->LookupTensor("model.layers.1.self_attn.q_proj.weight").ok());
  EXPECT_TRUE(c->LookupTensor("model.layers.1.self_attn.k_proj.weight").ok());
  EXPECT_EQ(c->ListEntries("tiny")->size(), 1u);
  // The replaced entry file is gone (no orphans).
  auto v = c->Verify({.mode = VerifyMode::kDeep});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->problems[0].path;
}

TEST(CacheWarm, ChangedSourceIsRewarmed) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/tiny", 1, 1, 2, 64);
  auto c = OpenOrDie(t / "cache");
  ASSERT_TRUE(c->Warm(m.dir).ok());
  // Rewrite the shard with different bytes (and a different mtime).
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  FakeModel m2 = MakeFakeModel(t / "src/tiny", 1, 1, 2, 64, /*seed=*/9);
  auto r = c->Warm(m.dir);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->entries_written, 2u);
  auto loc = c->LookupTensor(m2.all[1].name);
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(ReadRange(loc->path, loc->offset, loc->length), m2.all[1].bytes);
}

TEST(CacheWarm, SingleFileAndNameCollisions) {
  TempDir t;
  fs::create_directories(t / "a");
  fs::create_directories(t / "b");
  WriteFakeSafetensors(t / "a/model.safetensors", {{"w", "U8", {3}, {1, 2, 3}}});
  WriteFakeSafetensors(t / "b/model.safetensors", {{"w", "U8", {2}, {4, 5}}});
  auto c = OpenOrDie(t / "cache");
  auto r1 = c->Warm(t / "a/model.safetensors");
  auto r2 = c->Warm(t / "b/model.safetensors");
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(r1->model, "model");
  EXPECT_EQ(r2->model, "model-2");
  // Same name in two models: the unqualified lookup is ambiguous.
  EXPECT_EQ(c->LookupTensor("w").status().code(), Code::kInvalidArgument);
  auto w2 = c->LookupTensor("model-2", "w");
  ASSERT_TRUE(w2.ok());
  EXPECT_EQ(ReadRange(w2->path, w2->offset, 2), (std::vector<uint8_t>{4, 5}));
  // Warming `a` again keeps its name.
  EXPECT_EQ(c->Warm(t / "a/model.safetensors")->model, "model");
  auto models = c->ListModels();
  ASSERT_TRUE(models.ok());
  ASSERT_EQ(models->size(), 2u);
  EXPECT_EQ((*models)[0].tensors, 1u);
  EXPECT_EQ(c->Warm(t / "nowhere").status().code(), Code::kNotFound);
}

TEST(CacheWarm, BadSourceLeavesCacheUntouched) {
  TempDir t;
  fs::create_directories(t / "bad");
  std::ofstream(t / "bad/model.safetensors") << "garbage!";
  auto c = OpenOrDie(t / "cache");
  auto r = c->Warm(t / "bad");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.safetensors"), std::string::npos);
  EXPECT_EQ(c->Stat()->entries, 0u);
}

TEST(CacheWarm, StoresBlockChecksums) {
  // One tensor of 2.5 blocks (the last one short), one smaller than a block, one empty.
  TempDir t;
  const uint64_t block = 8ull << 20;
  std::vector<FakeTensor> ts = {
      {"model.layers.0.big.weight", "U8", {block * 5 / 2}, RandomBytes(block * 5 / 2, 7)},
      {"model.layers.0.small.weight", "F32", {3}, RandomBytes(12, 8)},
      {"model.layers.0.empty.weight", "F32", {0}, {}}};
  fs::create_directories(t / "src/blk");
  WriteFakeSafetensors(t / "src/blk/model.safetensors", ts);
  auto c = OpenOrDie(t / "cache");
  auto r = c->Warm(t / "src/blk");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const FakeTensor& ft : ts) {
    auto loc = c->LookupTensor(ft.name);
    ASSERT_TRUE(loc.ok()) << loc.status().ToString();
    std::vector<uint64_t> want;  // computed here, independently of BlockXxh3
    for (uint64_t o = 0; o < ft.bytes.size(); o += block)
      want.push_back(
          XXH3_64bits(ft.bytes.data() + o, std::min<uint64_t>(block, ft.bytes.size() - o)));
    EXPECT_EQ(loc->block_xxh3, want) << ft.name;
  }
  EXPECT_EQ(c->LookupTensor("model.layers.0.big.weight")->block_xxh3.size(), 3u);
  // verify --deep checks the blocks in parallel and names the bad one, once per tensor.
  auto big = c->LookupTensor("model.layers.0.big.weight");
  auto v = c->Verify({.mode = VerifyMode::kDeep, .threads = 4});
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->bytes_checked, block * 5 / 2 + 12);
  FlipBit(big->path, big->offset + block + 100, 3);
  FlipBit(big->path, big->offset + 2 * block + 100, 3);
  v = c->Verify({.mode = VerifyMode::kDeep, .threads = 4});
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_EQ(v->problems.size(), 1u);
  EXPECT_EQ(v->problems[0].tensor, "model.layers.0.big.weight");
  EXPECT_EQ(v->problems[0].detail.rfind("block ", 0), 0u) << v->problems[0].detail;
  EXPECT_NE(v->problems[0].detail.find("index says"), std::string::npos);
  EXPECT_EQ(BlockXxh3(std::span<const std::byte>(
                reinterpret_cast<const std::byte*>(ts[0].bytes.data()), ts[0].bytes.size())),
            big->block_xxh3);
}

TEST(CacheWarm, RealWeightsEndToEnd) {
  const char* env = std::getenv("HCT_WEIGHTS_DIR");
  std::string weights = env ? env : HCT_SOURCE_DIR "/../shared/weights";
  std::string model = weights + "/kdoc-lm-25m";
  if (!fs::exists(model)) GTEST_SKIP() << "no " << model;
  TempDir t;
  auto c = OpenOrDie(t / "cache");
  auto r = c->Warm(model);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::printf("[ measure ] warm kdoc-lm-25m (safetensors source): %llu bytes in %.3f s = %.1f MB/s\n",
              static_cast<unsigned long long>(r->bytes_written), r->seconds,
              r->bytes_written / r->seconds / 1e6);
  auto v = c->Verify({.mode = VerifyMode::kDeep, .threads = 1});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
  std::printf("[ measure ] verify --deep, 1 thread: %llu bytes in %.3f s = %.2f GB/s\n",
              static_cast<unsigned long long>(v->bytes_checked), v->seconds,
              v->bytes_checked / v->seconds / 1e9);
  auto src = ModelFolder::Open(model);
  ASSERT_TRUE(src.ok());
  for (const ModelTensor& mt : src->tensors()) {
    auto loc = c->LookupTensor(mt.info.name);
    ASSERT_TRUE(loc.ok()) << mt.info.name;
    auto want = src->file(mt).data(mt.info);
    ASSERT_TRUE(want.ok());
    auto got = ReadRange(loc->path, loc->offset, loc->length);
    ASSERT_EQ(got.size(), want->size());
    EXPECT_EQ(std::memcmp(got.data(), want->data(), got.size()), 0) << mt.info.name;
  }
}

}  // namespace
}  // namespace hct
