// Issue 10 (hostile inputs), items 1, 3, 4 and 5: names read from inputs stay inside the output,
// outputs never overlap inputs, input files are never silently replaced, and no encoded
// parameter is non-finite. Each test failed on the code before the fix.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "hct/codec.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "hct/safetensors.h"

namespace hct {
namespace {
namespace fs = std::filesystem;

std::string Slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void Spit(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

class HardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hct_hardening_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }

  // Every path under root_ that is not below `except` (symlinks not followed).
  std::set<std::string> TreeExcept(const fs::path& except) const {
    std::set<std::string> out;
    for (auto it = fs::recursive_directory_iterator(root_);
         it != fs::recursive_directory_iterator(); ++it) {
      const std::string p = it->path().string();
      if (p == except.string() || p.rfind(except.string() + "/", 0) == 0 ||
          p.rfind(except.string() + ".", 0) == 0)  // its temporaries
        continue;
      out.insert(p);
    }
    return out;
  }

  fs::path Demo(const std::string& name, int shards) {
    DemoModelOptions o;
    o.vocab = 256, o.hidden = 64, o.layers = 1, o.intermediate = 176, o.heads = 4;
    o.kv_heads = 2, o.shards = shards;
    const fs::path dir = root_ / name;
    const Status s = WriteDemoModel(dir.string(), o);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return dir;
  }

  // A Hugging Face hub-cache repo: snapshots/rev/<name> are relative symlinks to blobs/<n>,
  // plus one absolute symlink to a file outside the repo. Returns the snapshot folder.
  fs::path HubCache() {
    const fs::path demo = Demo("demo", 1);
    const fs::path repo = root_ / "hub" / "models--org--m";
    const fs::path snap = repo / "snapshots" / "rev1";
    fs::create_directories(repo / "blobs");
    fs::create_directories(snap / "sub");
    int n = 0;
    for (const char* f : {"model.safetensors", "config.json", "tokenizer.json"}) {
      const std::string blob = "blob" + std::to_string(n++);
      fs::rename(demo / f, repo / "blobs" / blob);
      const bool nested = std::string(f) == "tokenizer.json";
      fs::create_symlink((nested ? "../../../blobs/" : "../../blobs/") + blob,
                         nested ? snap / "sub" / f : snap / f);
    }
    Spit(root_ / "elsewhere" / "secret.txt", "not the tool's to write\n");
    fs::create_symlink(root_ / "elsewhere" / "secret.txt", snap / "notes.txt");
    return snap;
  }

  fs::path root_;
};

ConvertOptions Opts() {
  ConvertOptions o;
  o.threads = 2;
  return o;
}

// Item 1: the relative names were computed after resolving symlinks, so config.json and the
// weights blob were written to <output>/../blobs/ and config.json was missing from the output.
TEST_F(HardeningTest, HubCacheSnapshotConvertsInsideTheOutput) {
  const fs::path snap = HubCache(), out = root_ / "o" / "out";
  fs::create_directories(root_ / "o");
  const std::set<std::string> before = TreeExcept(out);
  Result<ConvertReport> r = Convert(snap.string(), out.string(), Opts());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(TreeExcept(out), before) << "something was written outside the output";
  EXPECT_EQ(Slurp(out / "config.json"), Slurp(snap / "config.json"));
  EXPECT_EQ(Slurp(out / "sub" / "tokenizer.json"), Slurp(snap / "sub" / "tokenizer.json"));
  EXPECT_EQ(Slurp(out / "notes.txt"), "not the tool's to write\n");
  EXPECT_TRUE(fs::exists(out / "model.hct"));
  for (const auto& e : fs::recursive_directory_iterator(out))
    EXPECT_FALSE(e.is_symlink()) << e.path() << ": symlinks are read through, not reproduced";
  std::vector<std::string> copied = r->copied_files;
  std::sort(copied.begin(), copied.end());
  EXPECT_EQ(copied, (std::vector<std::string>{"config.json", "notes.txt", "sub/tokenizer.json"}));

  // Decoding it back stays inside its output too.
  const fs::path back = root_ / "o" / "back";
  const std::set<std::string> before2 = TreeExcept(back);
  Result<DecodeReport> d = DecodeModel(out.string(), back.string(), {});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(TreeExcept(back), before2);
  EXPECT_EQ(Slurp(back / "config.json"), Slurp(snap / "config.json"));
  EXPECT_TRUE(fs::exists(back / "model.safetensors"));
}

// Item 1, decode: symlinked files of an HCT folder were copied to the symlink's target path
// relative to the output ("../store/cfg").
TEST_F(HardeningTest, DecodeReadsSymlinkedFilesThrough) {
  const fs::path in = Demo("m", 2), hct = root_ / "h";
  ASSERT_TRUE(Convert(in.string(), hct.string(), Opts()).ok());
  Spit(root_ / "store" / "cfg", "{\"from\": \"store\"}\n");
  fs::remove(hct / "config.json");
  fs::create_symlink("../store/cfg", hct / "config.json");
  const fs::path back = root_ / "back";
  const std::set<std::string> before = TreeExcept(back);
  Result<DecodeReport> d = DecodeModel(hct.string(), back.string(), {});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(TreeExcept(back), before) << "something was written outside the output";
  EXPECT_EQ(Slurp(back / "config.json"), "{\"from\": \"store\"}\n");
  EXPECT_FALSE(fs::is_symlink(back / "config.json"));
}

// Item 1: a crafted source_file names a path outside the output; decode refuses it.
TEST_F(HardeningTest, DecodeRefusesSourceFileNamesOutsideTheOutput) {
  const std::vector<float> v(16, 1.5f);
  for (const std::string bad : {"../../x.safetensors", "/tmp/x.safetensors", "a/../../x",
                                "a//x.safetensors", "./x.safetensors", ".."}) {
    const fs::path in = root_ / "in" / "c.hct";
    fs::remove_all(root_ / "in");
    fs::create_directories(root_ / "in");
    Result<HctWriter> w = HctWriter::Create(in.string(), false);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE(w->SetMetadata("source_file", bad).ok());
    ASSERT_TRUE(w->AddRawTensor("t", DType::kF32, {16}, std::as_bytes(std::span(v))).ok());
    ASSERT_TRUE(w->Finish().ok());
    const fs::path out = root_ / "o" / "p" / "out";
    const std::set<std::string> before = TreeExcept(out);
    Result<DecodeReport> d = DecodeModel(in.string(), out.string(), {});
    EXPECT_FALSE(d.ok()) << bad;
    if (!d.ok()) EXPECT_NE(d.status().message().find("source_file"), std::string::npos);
    EXPECT_EQ(TreeExcept(out), before) << bad;
    EXPECT_FALSE(fs::exists(out)) << bad;
  }
}

// Item 3: decode had no overlap check: `decode H H --force` replaced the input and
// `decode H/x.hct H --force` deleted H's other files.
TEST_F(HardeningTest, DecodeRefusesOutputsOverlappingTheInput) {
  const fs::path in = Demo("m", 2), h = root_ / "h";
  ASSERT_TRUE(Convert(in.string(), h.string(), Opts()).ok());
  const std::set<std::string> before = TreeExcept(root_ / "nothing");
  DecodeOptions force;
  force.force = true;
  const std::string hs = h.string();
  for (const auto& [src, dst] : std::vector<std::pair<std::string, std::string>>{
           {hs, hs},
           {hs, hs + "/"},
           {hs, hs + "/."},
           {hs, (h / ".." / "h").string()},
           {hs, root_.string()},
           {hs, hs + "/sub"},
           {hs + "/model-00001-of-00002.hct", hs},
           {hs + "/model-00001-of-00002.hct", hs + "/model-00001-of-00002.hct"}}) {
    Result<DecodeReport> d = DecodeModel(src, dst, force);
    EXPECT_FALSE(d.ok()) << src << " -> " << dst;
    if (!d.ok()) EXPECT_NE(d.status().message().find("overlaps"), std::string::npos);
    EXPECT_EQ(TreeExcept(root_ / "nothing"), before) << src << " -> " << dst;
  }
  // A symlink spelling of the input folder overlaps as well.
  fs::create_symlink(h, root_ / "alias");
  EXPECT_FALSE(DecodeModel(hs, (root_ / "alias").string(), force).ok());
  EXPECT_TRUE(fs::is_directory(h));
  // A single file may be decoded next to itself.
  Result<DecodeReport> d = DecodeModel(hs + "/model-00001-of-00002.hct", hs + "/dec", {});
  EXPECT_TRUE(d.ok()) << d.status().ToString();
}

// Item 3: the same rule for convert, whatever the spelling; a single file's output may sit next
// to it (the old check compared the file's folder and refused that).
TEST_F(HardeningTest, ConvertOverlapRuleIgnoresSpelling) {
  const fs::path in = Demo("m", 2);
  ConvertOptions o = Opts();
  o.force = true;
  for (const std::string dst : {in.string(), in.string() + "/", in.string() + "/./x",
                                (in / ".." / "m" / "y").string(), root_.string()}) {
    Result<ConvertReport> r = Convert(in.string(), dst, o);
    EXPECT_FALSE(r.ok()) << dst;
    if (!r.ok()) EXPECT_NE(r.status().message().find("overlaps"), std::string::npos);
  }
  EXPECT_TRUE(fs::exists(in / "model-00001-of-00002.safetensors"));
  const std::string shard = (in / "model-00001-of-00002.safetensors").string();
  EXPECT_FALSE(Convert(shard, shard, o).ok());
  Result<ConvertReport> r = Convert(shard, (in / "one").string(), Opts());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

// Item 3: the files read may lie outside the input folder (hub-cache blobs). `--force` into the
// blobs folder would have replaced the weights being converted; refused, like an overlap. The
// same holds for --report naming a blob (CheckReportPath).
TEST_F(HardeningTest, OutputNeverHoldsAFileTheInputReads) {
  const fs::path snap = HubCache();
  const fs::path blobs = root_ / "hub" / "models--org--m" / "blobs";
  const std::set<std::string> before = TreeExcept(root_ / "nothing");
  ConvertOptions o = Opts();
  o.force = true;
  for (const fs::path& dst : {blobs, blobs / "blob0", root_ / "elsewhere"}) {
    Result<ConvertReport> r = Convert(snap.string(), dst.string(), o);
    EXPECT_FALSE(r.ok()) << dst;
    if (!r.ok()) EXPECT_NE(r.status().message().find("overlaps"), std::string::npos);
  }
  EXPECT_EQ(TreeExcept(root_ / "nothing"), before);
  const fs::path out = root_ / "o";
  for (const fs::path& rep : {blobs / "blob0", blobs / "blob1", root_ / "elsewhere" / "secret.txt"})
    EXPECT_FALSE(CheckReportPath(rep.string(), snap.string(), out.string(), true).ok()) << rep;
  EXPECT_TRUE(
      CheckReportPath((root_ / "r.json").string(), snap.string(), out.string(), false).ok());

  // Decode of an HCT folder whose config.json links into the blobs.
  ASSERT_TRUE(Convert(snap.string(), out.string(), Opts()).ok());
  fs::remove(out / "config.json");
  fs::create_symlink(blobs / "blob1", out / "config.json");
  DecodeOptions df;
  df.force = true;
  EXPECT_FALSE(DecodeModel(out.string(), blobs.string(), df).ok());
  EXPECT_TRUE(fs::exists(blobs / "blob1"));
  EXPECT_TRUE(fs::exists(blobs / "blob0"));
}

// Item 4: a user file named like the output's own index was silently replaced by ours.
TEST_F(HardeningTest, InputFilesNamedLikeOutputFilesAreRefused) {
  const fs::path in = Demo("m", 2);
  Spit(in / "model.hct.index.json", "my own notes\n");
  Result<ConvertReport> r = Convert(in.string(), (root_ / "o").string(), Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.hct.index.json"), std::string::npos)
      << r.status().ToString();
  EXPECT_FALSE(fs::exists(root_ / "o"));
  EXPECT_EQ(Slurp(in / "model.hct.index.json"), "my own notes\n");

  // Decode: a copied file named like the index decode writes was silently dropped.
  fs::remove(in / "model.hct.index.json");
  ASSERT_TRUE(Convert(in.string(), (root_ / "h").string(), Opts()).ok());
  Spit(root_ / "h" / "model.safetensors.index.json", "{}\n");
  Result<DecodeReport> d = DecodeModel((root_ / "h").string(), (root_ / "back").string(), {});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("model.safetensors.index.json"), std::string::npos);
  EXPECT_FALSE(fs::exists(root_ / "back"));
}

// Item 5: F32 values >= ~2.2e37 made the float step overflow; it was written as null and the
// file could not be decoded. Such tensors now go lossless and round-trip exactly.
TEST_F(HardeningTest, HugeFloatTensorGoesLosslessAndRoundTrips) {
  const fs::path in = root_ / "big" / "model.safetensors";
  fs::create_directories(in.parent_path());
  std::vector<float> v(64 * 64);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 3e38f * static_cast<float>(std::sin(0.37 * i));
  {
    Result<SafetensorsWriter> w = SafetensorsWriter::Create(in.string());
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE(w->Declare("model.layers.0.mlp.up_proj.weight", DType::kF32, {64, 64}).ok());
    ASSERT_TRUE(w->Write("model.layers.0.mlp.up_proj.weight", std::as_bytes(std::span(v))).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  for (const float scale : {1.0f, 2.3e37f / 3e38f, 1e35f / 3e38f}) {
    std::vector<float> s = v;
    for (float& x : s) x *= scale;
    {
      std::fstream f(in, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(fs::file_size(in) - s.size() * 4));
      f.write(reinterpret_cast<const char*>(s.data()), s.size() * 4);
    }
    const fs::path out = root_ / "h", back = root_ / "back";
    fs::remove_all(out), fs::remove_all(back);
    Result<ConvertReport> r = Convert(in.parent_path().string(), out.string(), Opts());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->tensors.size(), 1u);
    EXPECT_FALSE(IsDctqCodec(r->tensors[0].codec)) << scale;
    EXPECT_NE(r->tensors[0].note.find("lossless"), std::string::npos) << r->tensors[0].note;
    EXPECT_EQ(Slurp(out / "model.hct").find("\"step\":null"), std::string::npos);
    Result<DecodeReport> d = DecodeModel(out.string(), back.string(), {});
    ASSERT_TRUE(d.ok()) << scale << ": " << d.status().ToString();
    EXPECT_EQ(Slurp(back / "model.safetensors"), Slurp(in)) << scale;
  }
}

// Item 5, the encoder itself: every parameter of a lossy result is finite, for any magnitude.
TEST_F(HardeningTest, EncodedParametersAreAlwaysFinite) {
  for (const float mag : {1e-30f, 1.0f, 1e30f, 1e36f, 2.2e37f, 1e38f, 3.4e38f}) {
    std::vector<float> v(128 * 64);
    for (size_t i = 0; i < v.size(); ++i) v[i] = mag * static_cast<float>(std::cos(0.11 * i));
    EncodeOptions eo;
    eo.lossy = true;
    Result<EncodedTensor> e =
        EncodeTensor({std::as_bytes(std::span(v)), DType::kF32, {128, 64}}, eo);
    ASSERT_TRUE(e.ok()) << mag << ": " << e.status().ToString();
    EXPECT_EQ(e->params.find("null"), std::string::npos) << mag << ": " << e->params;
    EXPECT_TRUE(std::isfinite(e->metrics.rel_rms_error)) << mag;
  }
}

}  // namespace
}  // namespace hct
