// hct-convert, the built binary: exit codes, outputs, messages (man/hct-convert.1).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tools/common/cli.h"

namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace hct::cli;  // the exit codes both tools share (man pages, EXIT STATUS)
// The numbers are documented: a renumbering must be deliberate.
static_assert(kUsage == 2 && kNotFound == 3 && kCorrupt == 5 && kExists == 8 && kNoSpace == 7);

struct Outcome {
  int code = -1;
  std::string out, err;
};

std::string Slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = fs::path(HCT_BINARY_DIR) / "convert" / "hct-convert";
    if (!fs::exists(bin_)) GTEST_SKIP() << "not built: " << bin_;
    std::string tmpl = (fs::temp_directory_path() / "hct_cli_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    Outcome r = Exec("demo-model " + (root_ / "m").string() +
                     " --layers 2 --hidden 64 --vocab 256 --shards 2");
    ASSERT_EQ(r.code, 0) << r.err;
  }
  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }

  // Runs the binary with `args` (shell words) in `cwd` (default: this process's), stdout and
  // stderr captured to files.
  Outcome Exec(const std::string& args, const fs::path& cwd = {}) {
    const fs::path o = root_ / "stdout.txt", e = root_ / "stderr.txt";
    const std::string cmd = (cwd.empty() ? "" : "cd " + cwd.string() + " && ") + bin_.string() +
                            " " + args + " >" + o.string() + " 2>" + e.string() + " </dev/null";
    const int st = std::system(cmd.c_str());
    Outcome r;
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = Slurp(o);
    r.err = Slurp(e);
    return r;
  }

  fs::path bin_, root_;
};

TEST_F(CliTest, ConvertPrintsTableWritesReportAndJson) {
  const std::string in = (root_ / "m").string(), out = (root_ / "o").string();
  const std::string rep = (root_ / "rep.json").string();
  Outcome r = Exec(in + " " + out + " --verify --report " + rep);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("model.embed_tokens.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ratio"), std::string::npos);
  EXPECT_NE(r.out.find("verified"), std::string::npos);
  EXPECT_EQ(r.err, "");  // no progress bar when stderr is not a terminal
  const json j = json::parse(Slurp(rep));
  EXPECT_TRUE(j["verified"].get<bool>());
  EXPECT_GT(j["totals"]["ratio"].get<double>(), 1.0);
  ASSERT_FALSE(j["tensors"].empty());
  for (const char* k :
       {"codec", "bits_per_weight", "rel_rms_error", "max_abs_error", "cosine", "snr_db", "policy"})
    EXPECT_TRUE(j["tensors"][0].contains(k)) << k;

  r = Exec(in + " " + (root_ / "o2").string() + " --json -q --lossless");
  ASSERT_EQ(r.code, 0) << r.err;
  const json s = json::parse(r.out);
  EXPECT_EQ(s["totals"]["lossy_tensors"], 0);
  EXPECT_EQ(s["totals"]["rel_rms_error"], 0.0);

  r = Exec("inspect " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("dctq-huff"), std::string::npos) << r.out;
  r = Exec("inspect --json " + in);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["kind"], "safetensors");

  r = Exec("decode " + out + " " + (root_ / "back").string() + " -q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(root_ / "back" / "model-00002-of-00002.safetensors"));
  EXPECT_TRUE(fs::exists(root_ / "back" / "model.safetensors.index.json"));
  EXPECT_EQ(Slurp(root_ / "back" / "config.json"), Slurp(root_ / "m" / "config.json"));
}

TEST_F(CliTest, ExitCodes) {
  const std::string in = (root_ / "m").string(), out = (root_ / "o").string();
  EXPECT_EQ(Exec("").code, kUsage);
  Outcome r = Exec(in + " " + out + " --no-such-option");
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("no-such-option"), std::string::npos) << r.err;
  r = Exec(in + " " + out + " --transform fourier");
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--transform"), std::string::npos) << r.err;
  EXPECT_EQ(Exec(in + " " + out + " --bits 3 --max-error 0.1").code, kUsage);
  EXPECT_EQ(Exec(in).code, kUsage);  // missing OUTPUT
  EXPECT_FALSE(fs::exists(out));

  r = Exec((root_ / "absent").string() + " " + out);
  EXPECT_EQ(r.code, kNotFound);
  EXPECT_NE(r.err.find("absent"), std::string::npos) << r.err;

  // A corrupt shard: input error naming the file.
  fs::copy(root_ / "m", root_ / "bad", fs::copy_options::recursive);
  {
    std::fstream f(root_ / "bad" / "model-00002-of-00002.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f.write("!!!!", 4);  // breaks the JSON header
  }
  r = Exec((root_ / "bad").string() + " " + out);
  EXPECT_EQ(r.code, kCorrupt) << r.err;
  EXPECT_NE(r.err.find("model-00002-of-00002.safetensors"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));

  ASSERT_EQ(Exec(in + " " + out + " -q").code, 0);
  r = Exec(in + " " + out + " -q");
  EXPECT_EQ(r.code, kExists);
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_EQ(Exec(in + " " + out + " -q --force --threads 1").code, 0);

  EXPECT_EQ(Exec("--help").code, 0);
  EXPECT_EQ(Exec("decode --help").code, 0);
  EXPECT_EQ(Exec("inspect " + (root_ / "absent").string()).code, kNotFound);
}

// Issue 10 item 4: --report overwrote any file, an input shard included.
TEST_F(CliTest, ReportNeverReplacesInputOrOutputFiles) {
  const fs::path in = root_ / "m", out = root_ / "o";
  const fs::path shard = in / "model-00001-of-00002.safetensors";
  const std::string shard_bytes = Slurp(shard);
  Outcome r = Exec(in.string() + " " + out.string() + " -q --report " + shard.string());
  EXPECT_EQ(r.code, kUsage) << r.err;
  EXPECT_NE(r.err.find("--report"), std::string::npos) << r.err;
  EXPECT_EQ(Slurp(shard), shard_bytes);
  EXPECT_FALSE(fs::exists(out)) << "refused before converting";
  // A symlink to the shard is the shard.
  fs::create_symlink(shard, root_ / "link.json");
  EXPECT_EQ(
      Exec(in.string() + " " + out.string() + " -q --report " + (root_ / "link.json").string())
          .code,
      kUsage);
  EXPECT_EQ(Slurp(shard), shard_bytes);

  ASSERT_EQ(Exec(in.string() + " " + out.string() + " -q").code, 0);
  const std::string index = Slurp(out / "model.hct.index.json");
  r = Exec(in.string() + " " + out.string() + " -q --force --report " +
           (out / "model.hct.index.json").string());
  EXPECT_EQ(r.code, kUsage) << r.err;
  EXPECT_EQ(Slurp(out / "model.hct.index.json"), index);

  // An existing report is replaced only with --force.
  const fs::path rep = root_ / "rep.json";
  std::ofstream(rep) << "keep me\n";
  r = Exec(in.string() + " " + (root_ / "o2").string() + " -q --report " + rep.string());
  EXPECT_EQ(r.code, kExists) << r.err;
  EXPECT_EQ(Slurp(rep), "keep me\n");
  r = Exec(in.string() + " " + (root_ / "o2").string() + " -q --force --report " + rep.string());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(json::parse(Slurp(rep)).contains("tensors"));
}

// Issue 10 item 3: decode had no overlap check (`decode H H --force` replaced the input) and the
// convert check depended on the spelling of the paths.
TEST_F(CliTest, OverlapRefusedWhateverTheSpelling) {
  const auto run = [&](const std::string& args) { return Exec(args, root_).code; };
  ASSERT_EQ(run("m o -q"), 0);
  const std::string index = Slurp(root_ / "o" / "model.hct.index.json");
  for (const char* args :
       {"decode o o --force -q", "decode o ./o/ --force -q", "decode ./o o/. --force -q",
        "decode o/model-00001-of-00002.hct o --force -q", "decode o o/sub -q",
        "decode o . --force -q"})
    EXPECT_EQ(run(args), kUsage) << args;
  EXPECT_EQ(Slurp(root_ / "o" / "model.hct.index.json"), index);
  EXPECT_TRUE(fs::exists(root_ / "o" / "model-00002-of-00002.hct"));
  for (const char* args :
       {"m m/x -q", "m ./m/x -q", "./m m/./x -q", "m/ m -q --force", "m . -q --force"})
    EXPECT_EQ(run(args), kUsage) << args;
  // A single file's output may sit next to it, however spelled.
  EXPECT_EQ(run("m/model-00001-of-00002.safetensors m/one -q"), 0);
  EXPECT_EQ(run("./m/model-00001-of-00002.safetensors ./m/two -q"), 0);
}

// Issue 10 items 6 and 16: out-of-range values were accepted (--chunk-size -1 wrapped around,
// --tile 4294967312 was read as 16) or ended in std::bad_alloc (demo-model --vocab 2147483647).
TEST_F(CliTest, OutOfRangeOptionsAreUsageErrors) {
  const std::string io = (root_ / "m").string() + " " + (root_ / "o").string() + " -q ";
  for (const char* opt :
       {"--chunk-size -1", "--chunk-size 18446744073709551615", "--chunk-size 0",
        "--chunk-size ''", "--chunk-size abc", "--chunk-size 2G", "--tile 4294967312",
        "--tile 0", "--tile 65", "--tile 16x-1", "--tile 8x", "--threads -5",
        "--threads 100000"}) {
    Outcome r = Exec(io + opt);
    EXPECT_EQ(r.code, kUsage) << opt << ": " << r.err;
    EXPECT_NE(r.err.find(std::string(opt).substr(0, 6)), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(root_ / "o"));
  EXPECT_EQ(Exec("decode " + (root_ / "x").string() + " " + (root_ / "y").string() +
                 " --threads 100000").code,
            kUsage);
  for (const char* opt : {"--vocab 2147483647", "--hidden 0", "--layers -1", "--shards 0"}) {
    Outcome r = Exec("demo-model " + (root_ / "d").string() + " " + opt);
    EXPECT_EQ(r.code, kUsage) << opt << ": " << r.err;
    EXPECT_EQ(r.err.find("bad_alloc"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(root_ / "d"));
  // A fractional count and the tile forms still work.
  EXPECT_EQ(Exec(io + "--chunk-size 1.5K --tile 8x16").code, 0);
}

// Issue 10 item 17: an empty output path.
TEST_F(CliTest, EmptyPathsAreUsageErrors) {
  for (const std::string& args : std::vector<std::string>{
           (root_ / "m").string() + " ''", "'' " + (root_ / "o").string(), "decode '' x",
           "inspect ''", "demo-model ''"}) {
    Outcome r = Exec(args);
    EXPECT_EQ(r.code, kUsage) << args << ": " << r.err;
    EXPECT_NE(r.err.find("empty"), std::string::npos) << r.err;
  }
}

// Issue 10 item 17: names with control characters are escaped in messages (an ESC in a path
// reached the terminal as is).
TEST_F(CliTest, ControlCharactersInNamesAreEscaped) {
  // sh's printf makes the ESC byte: the test's own source stays printable.
  Outcome r = Exec("\"$(printf '" + (root_ / "bad").string() + "\\033[2Jname')\" " +
                   (root_ / "o").string());
  EXPECT_EQ(r.code, kNotFound) << r.err;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bad\\x1b[2Jname"), std::string::npos) << r.err;
}

// Issue 10 item 17: names inside the text report and inspect tables were printed raw, so a
// crafted tensor name could clear the screen; they are escaped, the table keeps its lines.
TEST_F(CliTest, ControlCharactersInTensorNamesAreEscapedInTables) {
  const std::string name = "w\\u001b[2J";  // JSON's spelling of ESC: the name holds the byte
  const std::string h =
      "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
  fs::create_directories(root_ / "esc");
  {
    std::ofstream f(root_ / "esc" / "model.safetensors", std::ios::binary);
    const uint64_t n = h.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << h << std::string(16, '\0');
  }
  Outcome conv = Exec((root_ / "esc").string() + " " + (root_ / "esc_out").string());
  ASSERT_EQ(conv.code, 0) << conv.err;
  Outcome ins = Exec("inspect " + (root_ / "esc_out").string());
  ASSERT_EQ(ins.code, 0) << ins.err;
  for (const Outcome* r : {&conv, &ins}) {
    EXPECT_EQ(r->out.find('\x1b'), std::string::npos) << r->out;
    EXPECT_NE(r->out.find("w\\x1b[2J"), std::string::npos) << r->out;
    EXPECT_NE(r->out.find('\n'), std::string::npos);  // still a table of lines
  }
}

// Issue 10 item 17: an empty tensor name was reported by the writer as a usage error (exit 2)
// and warmed by hct-cache; a tensor named __metadata__ got a message about metadata types only.
TEST_F(CliTest, EmptyAndReservedTensorNamesAreInputErrors) {
  auto write = [](const fs::path& p, const std::string& name) {
    fs::create_directories(p.parent_path());
    const std::string h =
        "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    std::ofstream f(p, std::ios::binary);
    const uint64_t n = h.size();
    f.write(reinterpret_cast<const char*>(&n), 8);  // little-endian hosts only, as the project
    f << h << std::string(16, '\0');
  };
  write(root_ / "e" / "model.safetensors", "");
  Outcome r = Exec((root_ / "e").string() + " " + (root_ / "o").string() + " -q");
  EXPECT_EQ(r.code, kCorrupt) << r.err;
  EXPECT_NE(r.err.find("empty tensor name"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("model.safetensors"), std::string::npos) << r.err;
  write(root_ / "md" / "model.safetensors", "__metadata__");
  r = Exec((root_ / "md").string() + " " + (root_ / "o").string() + " -q");
  EXPECT_EQ(r.code, kCorrupt) << r.err;
  EXPECT_NE(r.err.find("reserved"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(root_ / "o"));
}

// Issue 12 item 3: --lossless-entropy huff stores the lossless BF16 tensors as bf16-huff, which
// --verify decodes bit-exact, and so does the default; zstd keeps bytesplit-zstd; other words are
// usage.
TEST_F(CliTest, LosslessEntropyPicksTheBf16Codec) {
  const std::string in = (root_ / "m").string();
  Outcome r = Exec(in + " " + (root_ / "h").string() +
                   " --lossless --lossless-entropy huff --verify --json -q");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_TRUE(j["verified"].get<bool>());
  int huff = 0;
  for (const json& t : j["tensors"]) {
    EXPECT_NE(t["codec"], "bytesplit-zstd") << t["name"];  // every tensor is BF16
    huff += t["codec"] == "bf16-huff";
  }
  EXPECT_GT(huff, 5);
  EXPECT_EQ(j["options"]["lossless_entropy"], "huff");
  r = Exec(in + " " + (root_ / "d").string() + " --lossless --json -q");  // the default: huff
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["options"]["lossless_entropy"], "huff");
  for (const json& t : j["tensors"]) EXPECT_NE(t["codec"], "bytesplit-zstd") << t["name"];
  r = Exec(in + " " + (root_ / "z").string() + " --lossless --lossless-entropy zstd --json -q");
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["options"]["lossless_entropy"], "zstd");
  for (const json& t : j["tensors"]) EXPECT_NE(t["codec"], "bf16-huff");
  r = Exec(in + " " + (root_ / "x").string() + " --lossless-entropy lz4");
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--lossless-entropy"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(root_ / "x"));
}

}  // namespace

// --allocate / --sensitivity: bad values and combinations are usage errors (exit 2), an
// unreadable sensitivity file names itself, and a working one moves bits (target_bits reported).
TEST_F(CliTest, AllocateOptions) {
  const std::string in = (root_ / "m").string(), out = (root_ / "o").string();
  Outcome r = Exec(in + " " + out + " --allocate magic");
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--allocate"), std::string::npos) << r.err;
  EXPECT_EQ(Exec(in + " " + out + " --allocate mse --max-error 0.1").code, kUsage);
  EXPECT_EQ(Exec(in + " " + out + " --allocate sensitivity").code, kUsage);
  r = Exec(in + " " + out + " --sensitivity " + (root_ / "absent.json").string());
  EXPECT_EQ(r.code, kNotFound);
  EXPECT_NE(r.err.find("absent.json"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  r = Exec(in + " " + out + " --allocate mse --bits 3.5 --json -q");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["options"]["allocate"], "mse");
  int targets = 0;
  for (const json& t : j["tensors"]) targets += t.contains("target_bits");
  EXPECT_EQ(targets, j["totals"]["lossy_tensors"].get<int>());
}
