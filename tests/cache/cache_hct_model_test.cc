// Warm from HCT model folders written by hct::Convert and from single .hct files: lossless
// tensors bit-exact to the original safetensors, lossy tensors equal to the CPU decoder's output
// (hct::DecodeTensor), the container checksum recorded as the source checksum.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>

#include "cache_test_util.h"
#include "hct/cache.h"
#include "hct/convert.h"
#include "hct/safetensors.h"

namespace hct {
namespace {

using namespace hct::testing;

std::vector<uint8_t> Bytes(std::span<const std::byte> s) {
  return {reinterpret_cast<const uint8_t*>(s.data()),
          reinterpret_cast<const uint8_t*>(s.data()) + s.size()};
}

class CacheHctModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    DemoModelOptions d;
    d.vocab = 512, d.hidden = 128, d.layers = 2, d.intermediate = 344, d.heads = 4;
    d.kv_heads = 2, d.shards = 2;
    ASSERT_TRUE(WriteDemoModel(*dir_ / "demo", d).ok());
    ConvertOptions lossless;
    lossless.policy.lossless = true;
    lossless.chunk_elems = 4096;  // many chunks per tensor: exercises decoding chunks in parallel
    lossless.threads = 2;
    auto a = Convert(*dir_ / "demo", *dir_ / "demo-lossless", lossless);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    ConvertOptions lossy;  // the default: lossy where the policy allows
    lossy.chunk_elems = 8192;
    lossy.threads = 2;
    auto b = Convert(*dir_ / "demo", *dir_ / "demo-lossy", lossy);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    ASSERT_GT(b->totals.lossy_tensors, 0u);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static TempDir* dir_;
};
TempDir* CacheHctModel::dir_ = nullptr;

TEST_F(CacheHctModel, LosslessFolderIsBitExactToTheSafetensors) {
  auto st = ModelFolder::Open(*dir_ / "demo");
  ASSERT_TRUE(st.ok());
  auto c = Cache::Open(*dir_ / "cache-lossless");
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Warm(*dir_ / "demo-lossless", {.threads = 4});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model, "demo-lossless");
  EXPECT_EQ(r->tensors_written, st->tensors().size());
  auto hm = HctModel::Open(*dir_ / "demo-lossless");
  ASSERT_TRUE(hm.ok());
  for (const ModelTensor& mt : st->tensors()) {
    auto loc = (*c)->LookupTensor("demo-lossless", mt.info.name);
    ASSERT_TRUE(loc.ok()) << mt.info.name;
    auto want = st->file(mt).data(mt.info);
    ASSERT_TRUE(want.ok());
    EXPECT_EQ(ReadRange(loc->path, loc->offset, loc->length), Bytes(*want)) << mt.info.name;
    EXPECT_EQ(loc->dtype, mt.info.dtype);
    EXPECT_EQ(loc->shape, mt.info.shape);
    EXPECT_EQ(loc->xxh3, XXH3_64bits(want->data(), want->size()));
    const HctModel::Ref* ref = hm->Find(mt.info.name);
    ASSERT_NE(ref, nullptr);
    EXPECT_EQ(loc->source_xxh3, ref->entry->decoded_xxh3) << mt.info.name;
  }
  auto models = (*c)->ListModels();
  ASSERT_TRUE(models.ok());
  ASSERT_EQ(models->size(), 1u);
  EXPECT_EQ((*models)[0].source_kind, "hct");
  // Entries are named after the HCT files (same stems as the original shards), and say where
  // they came from.
  auto ents = (*c)->ListEntries();
  ASSERT_TRUE(ents.ok());
  for (const EntryInfo& e : *ents) {
    EXPECT_EQ(fs::path(e.source_file).extension(), ".hct") << e.source_file;
    EXPECT_NE(fs::path(e.path).filename().string().find("model-0000"), std::string::npos);
    auto f = SafetensorsFile::Open(e.path);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(f->metadata().at("hct.source_file"), e.source_file);
  }
  EXPECT_TRUE((*c)->Verify({.mode = VerifyMode::kDeep})->ok());
  // Unchanged source: a second warm skips everything.
  auto again = (*c)->Warm(*dir_ / "demo-lossless");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->entries_written, 0u);
}

TEST_F(CacheHctModel, LossyFolderEqualsTheCpuDecoder) {
  auto hm = HctModel::Open(*dir_ / "demo-lossy");
  ASSERT_TRUE(hm.ok()) << hm.status().ToString();
  auto c = Cache::Open(*dir_ / "cache-lossy");
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Warm(*dir_ / "demo-lossy", {.threads = 3});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensors_written, hm->tensors().size());
  auto st = ModelFolder::Open(*dir_ / "demo");
  ASSERT_TRUE(st.ok());
  int lossy = 0;
  for (const HctModel::Ref& ref : hm->tensors()) {
    const TensorEntry& e = *ref.entry;
    std::vector<std::byte> want(*DTypeBytes(e.dtype, e.num_elements));
    ASSERT_TRUE(DecodeTensor(hm->files()[ref.file], e, want).ok());  // serial reference decode
    auto loc = (*c)->LookupTensor(e.name);
    ASSERT_TRUE(loc.ok()) << e.name;
    EXPECT_EQ(ReadRange(loc->path, loc->offset, loc->length), Bytes(want)) << e.name;
    EXPECT_EQ(loc->source_xxh3, e.decoded_xxh3);
    if (IsDctqCodec(e.codec)) {
      ++lossy;
      // Lossy really is lossy here: the cached bytes differ from the original.
      const ModelTensor* mt = st->Find(e.name);
      ASSERT_NE(mt, nullptr);
      EXPECT_NE(Bytes(*st->file(*mt).data(mt->info)), Bytes(want)) << e.name;
    }
  }
  EXPECT_GT(lossy, 0);
  EXPECT_TRUE((*c)->Verify({.mode = VerifyMode::kDeep})->ok());
}

TEST_F(CacheHctModel, SingleHctFileIsAOneFileModel) {
  auto hm = HctModel::Open(*dir_ / "demo-lossless");
  ASSERT_TRUE(hm.ok());
  const std::string file = hm->files()[1].path();
  auto one = HctModel::Open(file);
  ASSERT_TRUE(one.ok());
  auto c = Cache::Open(*dir_ / "cache-one");
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Warm(file, {.threads = 2});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model, fs::path(file).stem().string());
  EXPECT_EQ(r->tensors_written, one->tensors().size());
  for (const HctModel::Ref& ref : one->tensors()) {
    std::vector<std::byte> want(*DTypeBytes(ref.entry->dtype, ref.entry->num_elements));
    ASSERT_TRUE(DecodeTensor(one->files()[0], *ref.entry, want).ok());
    auto loc = (*c)->LookupTensor(ref.entry->name);
    ASSERT_TRUE(loc.ok());
    EXPECT_EQ(ReadRange(loc->path, loc->offset, loc->length), Bytes(want));
  }
}

TEST_F(CacheHctModel, CorruptChunkFailsNamingTheTensorAndCommitsNothingOfIt) {
  TempDir t;
  fs::copy(*dir_ / "demo-lossless", t / "m", fs::copy_options::recursive);
  auto hm = HctModel::Open(t / "m");
  ASSERT_TRUE(hm.ok());
  // The largest tensor's middle chunk.
  const HctModel::Ref* big = nullptr;
  for (const auto& r : hm->tensors())
    if (!big || r.entry->decoded_size > big->entry->decoded_size) big = &r;
  ASSERT_GT(big->entry->chunks.size(), 2u);
  const ChunkEntry& ch = big->entry->chunks[big->entry->chunks.size() / 2];
  const std::string path = hm->files()[big->file].path();
  const std::string name = big->entry->name;
  FlipBit(path, ch.offset + ch.stored_size / 2, 3);
  auto c = Cache::Open(t / "cache");
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Warm(t / "m", {.threads = 4});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().ToString();
  EXPECT_NE(r.status().ToString().find(name), std::string::npos) << r.status().ToString();
  EXPECT_FALSE((*c)->LookupTensor(name).ok());
  auto v = (*c)->Verify({.mode = VerifyMode::kDeep});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());  // what did get committed is sound; no temp files left
}

}  // namespace
}  // namespace hct
