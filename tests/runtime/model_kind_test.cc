// The one model-kind rule (hct/model.h) as the runtime (Catalog::Open), the cache (the source
// hct-cache warms) and the converter (Inspect) apply it. Before it, a folder holding both .hct
// and .safetensors files was HCT to hct-cache and hct-convert inspect but safetensors to
// hct_open, and a .hct file under another name was safetensors to the runtime and the cache.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cache/detail/source.h"
#include "hct/convert.h"
#include "hct/model.h"
#include "hct/runtime.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

namespace fs = std::filesystem;

// What each of the three takes `path` for: "hct" or "safetensors" (or the error).
struct Seen {
  std::string runtime, cache, convert;
};

Seen Classify(const std::string& path) {
  Seen s;
  Result<Catalog> cat = Catalog::Open(path);
  if (!cat.ok()) {
    s.runtime = cat.status().ToString();
  } else if (!cat->tensors().empty()) {
    bool all_hct = true, none_hct = true;
    for (const TensorSpec& t : cat->tensors()) {
      const bool h = t.has_compressed_source();
      all_hct = all_hct && h;
      none_hct = none_hct && !h;
    }
    s.runtime = all_hct ? "hct" : none_hct ? "safetensors" : "mixed";
  }
  auto src = detail::OpenSource(path);
  s.cache = src.ok() ? (*src)->kind() : src.status().ToString();
  Result<InspectReport> ins = Inspect(path);
  s.convert = !ins.ok() ? ins.status().ToString()
              : ins->kind == "safetensors" ? "safetensors"
              : (ins->kind == "hct-model" || ins->kind == "hct-file") ? "hct"
                                                                     : ins->kind;
  return s;
}

void ExpectAll(const std::string& path, const std::string& kind) {
  const Seen s = Classify(path);
  EXPECT_EQ(s.runtime, kind) << "runtime (Catalog::Open) on " << path;
  EXPECT_EQ(s.cache, kind) << "cache (OpenSource) on " << path;
  EXPECT_EQ(s.convert, kind) << "convert (Inspect) on " << path;
  EXPECT_EQ(DetectModelKind(path), kind == "hct" ? ModelKind::kHct : ModelKind::kSafetensors)
      << path;
}

class ModelKind3 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(test::TempDir("model_kind"));
    DemoModelOptions d;
    d.vocab = 256, d.hidden = 64, d.layers = 2, d.intermediate = 128, d.heads = 2, d.kv_heads = 1;
    d.shards = 2;
    ASSERT_TRUE(WriteDemoModel(St(), d).ok());
    ConvertOptions o;
    o.threads = 2;
    auto r = Convert(St(), Hct(), o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  static void TearDownTestSuite() { delete root_; }
  static std::string St() { return *root_ + "/st"; }
  static std::string Hct() { return *root_ + "/hct"; }
  // The safetensors folder with the .hct files (and, when asked, the HCT index) copied in.
  static std::string Mixed(const std::string& name, bool with_hct_index) {
    const fs::path m = fs::path(*root_) / name;
    fs::copy(St(), m, fs::copy_options::recursive);
    for (const auto& e : fs::directory_iterator(Hct()))
      if (e.path().extension() == ".hct" ||
          (with_hct_index && e.path().filename() == kHctModelIndexName))
        fs::copy_file(e.path(), m / e.path().filename());
    return m.string();
  }
  static std::string* root_;
};
std::string* ModelKind3::root_ = nullptr;

TEST_F(ModelKind3, PlainFoldersAreWhatTheyHold) {
  ExpectAll(St(), "safetensors");
  ExpectAll(Hct(), "hct");
}

// The case the three used to disagree on: .hct and .safetensors side by side, no HCT index.
TEST_F(ModelKind3, FolderWithBothKindsIsHct) {
  const std::string m = Mixed("both", /*with_hct_index=*/false);
  ASSERT_TRUE(fs::exists(fs::path(m) / "model.safetensors.index.json"));
  ASSERT_FALSE(fs::exists(fs::path(m) / kHctModelIndexName));
  ExpectAll(m, "hct");
}

TEST_F(ModelKind3, FolderWithBothKindsAndHctIndexIsHct) {
  ExpectAll(Mixed("both-indexed", /*with_hct_index=*/true), "hct");
}

// Files: the HCT magic decides as well as the name, so a renamed .hct file is still HCT, and a
// safetensors shard stays safetensors whatever folder it sits in.
TEST_F(ModelKind3, FilesByNameOrMagic) {
  fs::path hct_file;
  for (const auto& e : fs::directory_iterator(Hct()))
    if (e.path().extension() == ".hct") hct_file = e.path();
  ASSERT_FALSE(hct_file.empty());
  ExpectAll(hct_file.string(), "hct");
  const fs::path renamed = fs::path(*root_) / "weights.bin";
  fs::copy_file(hct_file, renamed, fs::copy_options::overwrite_existing);
  ExpectAll(renamed.string(), "hct");
  const std::string m = Mixed("both-files", false);
  for (const auto& e : fs::directory_iterator(m))
    if (e.path().extension() == ".safetensors") ExpectAll(e.path().string(), "safetensors");
}

TEST_F(ModelKind3, NothingToLoad) {
  const fs::path empty = fs::path(*root_) / "empty";
  fs::create_directories(empty);
  EXPECT_EQ(DetectModelKind(empty.string()), ModelKind::kNone);
  EXPECT_EQ(DetectModelKind((empty / "missing").string()), ModelKind::kNone);
  EXPECT_FALSE(Catalog::Open(empty.string()).ok());
  EXPECT_FALSE(detail::OpenSource(empty.string()).ok());
  EXPECT_FALSE(Inspect(empty.string()).ok());
}

}  // namespace
}  // namespace hct
