// Tests for ModelFolder: Hugging Face model folders (single file, sharded with index, loose).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "hct/safetensors.h"

namespace hct {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "hct-mf-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& n) const { return path_ + "/" + n; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string WeightsDir() {
  if (const char* e = std::getenv("HCT_WEIGHTS_DIR")) return e;
  return std::string(HCT_SOURCE_DIR) + "/../shared/weights";
}

void WriteText(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

// A shard holding U8 tensors of 3 bytes each, named `names`.
void WriteShard(const std::string& path, const std::vector<std::string>& names) {
  static const std::byte kBytes[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
  std::vector<TensorData> td;
  for (const auto& n : names) td.push_back({n, DType::kU8, {3}, kBytes});
  Status s = WriteSafetensors(path, td, {}, {.overwrite = true});
  ASSERT_TRUE(s.ok()) << s.ToString();
}

void WriteIndex(const std::string& path, const std::map<std::string, std::string>& weight_map) {
  nlohmann::json j;
  j["metadata"] = {{"total_size", 3 * weight_map.size()}};
  j["weight_map"] = weight_map;
  WriteText(path, j.dump(2));
}

// A consistent two-shard folder with config and tokenizer files.
void MakeSharded(const TempDir& d) {
  WriteShard(d / "model-00001-of-00002.safetensors", {"layer.0.w", "embed"});
  WriteShard(d / "model-00002-of-00002.safetensors", {"layer.1.w", "head"});
  WriteIndex(d / "model.safetensors.index.json", {{"embed", "model-00001-of-00002.safetensors"},
                                                  {"layer.0.w", "model-00001-of-00002.safetensors"},
                                                  {"layer.1.w", "model-00002-of-00002.safetensors"},
                                                  {"head", "model-00002-of-00002.safetensors"}});
  WriteText(d / "config.json", "{}");
  WriteText(d / "tokenizer.json", "{}");
  WriteText(d / "1_Pooling/config.json", "{}");
  WriteText(d / ".git/HEAD", "ref");
}

std::vector<std::string> Names(const ModelFolder& m) {
  std::vector<std::string> v;
  for (const ModelTensor& t : m.tensors()) v.push_back(t.info.name);
  return v;
}

TEST(ModelFolder, ShardedWithIndex) {
  TempDir d;
  MakeSharded(d);
  auto m = ModelFolder::Open(d.path());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->index_path(), d / "model.safetensors.index.json");
  EXPECT_EQ(m->shard_names(), (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                                        "model-00002-of-00002.safetensors"}));
  // Shard order, then data order within each shard.
  EXPECT_EQ(Names(*m), (std::vector<std::string>{"layer.0.w", "embed", "layer.1.w", "head"}));
  EXPECT_EQ(m->other_files(),
            (std::vector<std::string>{"1_Pooling/config.json", "config.json", "tokenizer.json"}));
  EXPECT_TRUE(m->unreferenced_weight_files().empty());
  const ModelTensor* h = m->Find("head");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->shard, 1u);
  auto bytes = m->file(*h).data(h->info);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ((*bytes)[2], std::byte{3});
  EXPECT_EQ(m->Find("nope"), nullptr);
  EXPECT_EQ(nlohmann::json::parse(m->index_metadata_json())["total_size"], 12);
}

TEST(ModelFolder, SingleFileFolderAndFilePath) {
  TempDir d;
  WriteShard(d / "model.safetensors", {"b", "a"});
  WriteText(d / "config.json", "{}");
  auto m = ModelFolder::Open(d.path(), SafetensorsAccess::kPread);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->index_path().empty());
  EXPECT_EQ(m->shard_names(), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(Names(*m), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(m->other_files(), std::vector<std::string>{"config.json"});

  auto f = ModelFolder::Open(d / "model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->shards().size(), 1u);
  EXPECT_TRUE(f->other_files().empty());
}

TEST(ModelFolder, LooseFilesWithoutIndex) {
  TempDir d;
  WriteShard(d / "vision.safetensors", {"v"});
  WriteShard(d / "text.safetensors", {"t"});
  auto m = ModelFolder::Open(d.path());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->shard_names(), (std::vector<std::string>{"text.safetensors", "vision.safetensors"}));
  EXPECT_EQ(Names(*m), (std::vector<std::string>{"t", "v"}));
}

TEST(ModelFolder, UnreferencedWeightsAreListedNotLoaded) {
  TempDir d;
  MakeSharded(d);
  WriteShard(d / "consolidated.safetensors", {"embed", "head"});
  auto m = ModelFolder::Open(d.path());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->unreferenced_weight_files(), std::vector<std::string>{"consolidated.safetensors"});
  EXPECT_EQ(m->shards().size(), 2u);
  for (const auto& f : m->other_files()) EXPECT_NE(f, "consolidated.safetensors");
}

void ExpectError(const std::string& path, Code code, const std::string& fragment) {
  auto m = ModelFolder::Open(path);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), code) << m.status().ToString();
  EXPECT_NE(m.status().message().find(fragment), std::string::npos) << m.status().ToString();
}

// Issue 10 item 1: in a hub-cache snapshot every file is a symlink into ../../blobs/. The other
// files were listed by their resolved target ("../../blobs/b1"), so converters wrote them
// outside their output; they are listed by the names the folder shows.
TEST(ModelFolder, HubCacheSymlinksAreListedByTheirNames) {
  TempDir d;
  const std::string snap = d / "repo/snapshots/rev";
  fs::create_directories(snap + "/sub");
  WriteText(d / "repo/blobs/b1", "{}\n");  // creates blobs/
  WriteShard(d / "repo/blobs/b0", {"a", "b"});
  WriteText(d / "repo/blobs/b2", "tok\n");
  fs::create_symlink("../../blobs/b0", snap + "/model.safetensors");
  fs::create_symlink("../../blobs/b1", snap + "/config.json");
  fs::create_symlink("../../../blobs/b2", snap + "/sub/tokenizer.json");
  Result<ModelFolder> mf = ModelFolder::Open(snap);
  ASSERT_TRUE(mf.ok()) << mf.status().ToString();
  EXPECT_EQ(mf->shard_names(), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(mf->other_files(), (std::vector<std::string>{"config.json", "sub/tokenizer.json"}));
  EXPECT_EQ(mf->tensors().size(), 2u);
}

TEST(ModelFolderInconsistent, MissingShard) {
  TempDir d;
  MakeSharded(d);
  fs::remove(d / "model-00002-of-00002.safetensors");
  ExpectError(d.path(), Code::kNotFound,
              "shard 'model-00002-of-00002.safetensors' (holding tensor 'head') is missing");
}

TEST(ModelFolderInconsistent, TensorInTwoShards) {
  TempDir d;
  MakeSharded(d);
  WriteShard(d / "model-00002-of-00002.safetensors", {"layer.1.w", "head", "embed"});
  ExpectError(d.path(), Code::kCorruption,
              "tensor 'embed' is in two shards: 'model-00001-of-00002.safetensors' and "
              "'model-00002-of-00002.safetensors'");
}

TEST(ModelFolderInconsistent, TensorInTwoShardsWithoutIndex) {
  TempDir d;
  WriteShard(d / "a.safetensors", {"x"});
  WriteShard(d / "b.safetensors", {"x"});
  ExpectError(d.path(), Code::kCorruption, "tensor 'x' is in two shards");
}

TEST(ModelFolderInconsistent, IndexNamesTensorNotInShard) {
  TempDir d;
  MakeSharded(d);
  WriteShard(d / "model-00002-of-00002.safetensors", {"layer.1.w"});
  ExpectError(d.path(), Code::kCorruption,
              "tensor 'head' is mapped to shard 'model-00002-of-00002.safetensors' but the shard "
              "does not contain it");
}

TEST(ModelFolderInconsistent, ShardTensorNotInIndex) {
  TempDir d;
  MakeSharded(d);
  WriteShard(d / "model-00002-of-00002.safetensors", {"layer.1.w", "head", "extra"});
  ExpectError(d.path(), Code::kCorruption,
              "tensor 'extra' of shard 'model-00002-of-00002.safetensors' is not in the index");
}

TEST(ModelFolderInconsistent, IndexMapsToWrongShard) {
  TempDir d;
  MakeSharded(d);
  WriteIndex(d / "model.safetensors.index.json", {{"embed", "model-00002-of-00002.safetensors"},
                                                  {"layer.0.w", "model-00001-of-00002.safetensors"},
                                                  {"layer.1.w", "model-00002-of-00002.safetensors"},
                                                  {"head", "model-00002-of-00002.safetensors"}});
  ExpectError(d.path(), Code::kCorruption,
              "tensor 'embed' is in shard 'model-00001-of-00002.safetensors' but the index maps "
              "it to 'model-00002-of-00002.safetensors'");
}

TEST(ModelFolderInconsistent, BadIndexAndBadShardNames) {
  TempDir d;
  MakeSharded(d);
  WriteText(d / "model.safetensors.index.json", "{\"weight_map\": ");
  ExpectError(d.path(), Code::kCorruption, "model.safetensors.index.json: not a JSON object");
  WriteText(d / "model.safetensors.index.json", "{\"metadata\": {}}");
  ExpectError(d.path(), Code::kCorruption, "no \"weight_map\" object");
  WriteIndex(d / "model.safetensors.index.json", {{"embed", "../outside.safetensors"}});
  ExpectError(d.path(), Code::kCorruption,
              "tensor 'embed': shard is not a file name of the folder");
}

TEST(ModelFolderInconsistent, BadShardFileNamesTheShard) {
  TempDir d;
  MakeSharded(d);
  WriteText(d / "model-00002-of-00002.safetensors", "short");
  ExpectError(d.path(), Code::kOutOfRange, "model-00002-of-00002.safetensors: file is 5 bytes");
}

TEST(ModelFolderInconsistent, NoWeightsOrNoFolder) {
  TempDir d;
  WriteText(d / "config.json", "{}");
  ExpectError(d.path(), Code::kNotFound, "no *.safetensors files");
  ExpectError(d / "nothing-here", Code::kNotFound, "no such file or folder");
}

// The real sharded model: the folder agrees with an independent reading of its index.
TEST(ModelFolderReal, KdocLmSharded) {
  const std::string dir = WeightsDir() + "/kdoc-lm-25m";
  if (!fs::is_directory(dir)) GTEST_SKIP() << "no weights at " << dir;
  auto m = ModelFolder::Open(dir);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  std::ifstream in(dir + "/model.safetensors.index.json");
  nlohmann::json idx = nlohmann::json::parse(in);
  std::set<std::string> shard_set;
  for (auto& [k, v] : idx["weight_map"].items()) {
    shard_set.insert(v.get<std::string>());
    const ModelTensor* t = m->Find(k);
    ASSERT_NE(t, nullptr) << k;
    EXPECT_EQ(m->shard_names()[t->shard], v.get<std::string>());
  }
  EXPECT_EQ(m->tensors().size(), idx["weight_map"].size());
  EXPECT_EQ(m->shards().size(), shard_set.size());
  EXPECT_EQ(m->shards().size(), 4u);
  uint64_t total = 0;
  for (const ModelTensor& t : m->tensors()) total += t.info.num_bytes();
  if (idx.contains("metadata") && idx["metadata"].contains("total_size"))
    EXPECT_EQ(total, idx["metadata"]["total_size"].get<uint64_t>());
  std::set<std::string> others(m->other_files().begin(), m->other_files().end());
  EXPECT_TRUE(others.count("config.json"));
  EXPECT_FALSE(others.count("model.safetensors.index.json"));
  for (const auto& s : m->shard_names()) EXPECT_FALSE(others.count(s));
  std::cout << m->tensors().size() << " tensors in " << m->shards().size() << " shards, " << total
            << " bytes; other files:";
  for (const auto& o : m->other_files()) std::cout << " " << o;
  std::cout << "\n";
}

}  // namespace
}  // namespace hct
