// The hct-cache binary, run as a user would (HCT_BINARY_DIR/cache/hct-cache): output formats
// (--json parseable, with the documented fields), exit codes of man/hct-cache.1, environment.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "cache_test_util.h"

namespace hct {
namespace {

using namespace hct::testing;
using nlohmann::json;

const std::string kBinary = HCT_BINARY_DIR "/cache/hct-cache";

struct CliResult {
  int rc = -1;
  std::string out, err;
  json Json() const {
    json j = json::parse(out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << out << "\nstderr: " << err;
    return j;
  }
};

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs the binary with `args`; `env` entries set (value) or unset (nullopt) variables in the
// child only.
CliResult Cli(const std::vector<std::string>& args,
              const std::map<std::string, std::optional<std::string>>& env = {}) {
  TempDir io;
  const std::string out = io / "out", err = io / "err";
  pid_t pid = ::fork();
  if (pid == 0) {
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(o, 1);
    ::dup2(e, 2);
    for (const auto& [k, v] : env) {
      if (v)
        ::setenv(k.c_str(), v->c_str(), 1);
      else
        ::unsetenv(k.c_str());
    }
    std::vector<char*> argv = {const_cast<char*>(kBinary.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(kBinary.c_str(), argv.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  CliResult r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

class CacheCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kBinary)) GTEST_SKIP() << kBinary << " not built";
    model_ = MakeFakeModel(t_ / "src/tiny", 2, 4, 3, 4096);
    dir_ = t_ / "cache";
  }
  // hct-cache --cache-dir DIR args...
  CliResult C(std::vector<std::string> args) {
    args.insert(args.begin(), {"--cache-dir", dir_});
    return Cli(args);
  }
  CliResult Warm() {
    CliResult r = C({"--json", "warm", model_.dir});
    EXPECT_EQ(r.rc, 0) << r.err;
    return r;
  }
  uint64_t ModelBytes() { return C({"--json", "stat"}).Json()["bytes"].get<uint64_t>(); }

  TempDir t_;
  FakeModel model_;
  std::string dir_;
};

TEST_F(CacheCli, WarmLsStatJsonHaveTheDocumentedFields) {
  json w = Warm().Json();
  EXPECT_EQ(w["model"], "tiny");
  EXPECT_EQ(w["entries_written"], 5);  // shard 1: layers 0, 2, other; shard 2: layers 1, 3
  EXPECT_EQ(w["tensors_written"], model_.all.size());
  EXPECT_GT(w["bytes_written"].get<uint64_t>(), 0u);
  for (const char* k : {"entries_skipped", "tensors_skipped", "seconds", "evicted", "over_budget"})
    EXPECT_TRUE(w.contains(k)) << k;

  json ls = C({"--json", "ls"}).Json();
  ASSERT_TRUE(ls.is_array());
  ASSERT_EQ(ls.size(), 1u);
  EXPECT_EQ(ls[0]["name"], "tiny");
  EXPECT_EQ(ls[0]["source"], fs::canonical(model_.dir).string());
  EXPECT_EQ(ls[0]["source_kind"], "safetensors");
  EXPECT_EQ(ls[0]["entries"], 5);
  EXPECT_EQ(ls[0]["tensors"], model_.all.size());
  EXPECT_EQ(ls[0]["pinned"], false);
  for (const char* k : {"bytes", "access_count", "last_access", "warmed_at"})
    EXPECT_TRUE(ls[0].contains(k)) << k;

  json ents = C({"--json", "ls", "--entries"}).Json();
  ASSERT_EQ(ents.size(), 5u);
  uint64_t sum = 0;
  for (const json& e : ents) {
    EXPECT_TRUE(fs::exists(e["path"].get<std::string>()));
    EXPECT_EQ(fs::file_size(e["path"].get<std::string>()), e["size"].get<uint64_t>());
    sum += e["size"].get<uint64_t>();
    for (const char* k : {"model", "source_file", "layer", "tensors", "pinned", "warmed_at",
                          "last_access", "access_count"})
      EXPECT_TRUE(e.contains(k)) << k;
  }

  json ts = C({"--json", "ls", "--tensors"}).Json();
  ASSERT_EQ(ts.size(), model_.all.size());
  std::map<std::string, json> by_name;
  for (const json& t : ts) by_name[t["name"]] = t;
  for (const FakeTensor& ft : model_.all) {
    ASSERT_TRUE(by_name.count(ft.name)) << ft.name;
    const json& t = by_name[ft.name];
    EXPECT_EQ(t["dtype"], ft.dtype);
    EXPECT_EQ(t["shape"].get<std::vector<uint64_t>>(), ft.shape);
    EXPECT_EQ(t["length"], ft.bytes.size());
    EXPECT_EQ(t["xxh3"].get<uint64_t>(), XXH3_64bits(ft.bytes.data(), ft.bytes.size()));
    EXPECT_EQ(ReadRange(t["path"], t["offset"], t["length"]), ft.bytes) << ft.name;
  }

  json st = C({"--json", "stat"}).Json();
  EXPECT_EQ(st["dir"], dir_);
  EXPECT_EQ(st["models"], 1);
  EXPECT_EQ(st["entries"], 5);
  EXPECT_EQ(st["tensors"], model_.all.size());
  EXPECT_EQ(st["bytes"].get<uint64_t>(), sum);
  EXPECT_TRUE(st["max_size"].is_null());
  EXPECT_EQ(st["schema_version"], 3);

  // Plain output is for people, but names the model.
  CliResult plain = C({"ls"});
  EXPECT_EQ(plain.rc, 0);
  EXPECT_NE(plain.out.find("tiny"), std::string::npos);
  // A second warm skips everything.
  json again = C({"--json", "warm", model_.dir}).Json();
  EXPECT_EQ(again["entries_written"], 0);
  EXPECT_EQ(again["entries_skipped"], 5);
}

TEST_F(CacheCli, WarmTensorsGlobWarmsASubset) {
  CliResult r = C({"--json", "warm", model_.dir, "--tensors", "*.layers.1.*", "--threads", "2"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.Json()["tensors_written"], 3);
  json ts = C({"--json", "ls", "--tensors"}).Json();
  ASSERT_EQ(ts.size(), 3u);
  for (const json& t : ts)
    EXPECT_EQ(t["name"].get<std::string>().rfind("model.layers.1.", 0), 0u) << t["name"];
}

TEST_F(CacheCli, ConfigMaxSize) {
  Warm();
  CliResult r = C({"--json", "config"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(r.Json()["max_size"].is_null());
  r = C({"--json", "config", "--max-size", "64M"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.Json()["max_size"], 64ull << 20);
  EXPECT_EQ(C({"--json", "stat"}).Json()["max_size"], 64ull << 20);
  r = C({"config"});
  EXPECT_NE(r.out.find("64"), std::string::npos) << r.out;
  // Bad sizes and contradictory flags are usage errors (2); the budget is unchanged.
  EXPECT_EQ(C({"config", "--max-size", "12Q"}).rc, 2);
  EXPECT_EQ(C({"config", "--max-size", "1G", "--no-max-size"}).rc, 2);
  EXPECT_EQ(C({"--json", "config"}).Json()["max_size"], 64ull << 20);
  r = C({"--json", "config", "--no-max-size"});
  ASSERT_EQ(r.rc, 0);
  EXPECT_TRUE(r.Json()["max_size"].is_null());
  // A budget smaller than what is cached: the next warm of another model evicts down to it.
  uint64_t one = ModelBytes();
  ASSERT_EQ(C({"config", "--max-size", std::to_string(one + one / 2)}).rc, 0);
  FakeModel other = MakeFakeModel(t_ / "src/other", 1, 2, 3, 4096, 9);
  json w = C({"--json", "warm", other.dir}).Json();
  EXPECT_FALSE(w["evicted"].empty());
  EXPECT_LE(C({"--json", "stat"}).Json()["bytes"].get<uint64_t>(), one + one / 2);
}

TEST_F(CacheCli, VerifyCleanThenBitFlipNamesTheTensor) {
  Warm();
  CliResult r = C({"verify"});
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  r = C({"verify", "--deep"});
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  json ts = C({"--json", "ls", "--tensors"}).Json();
  const json& victim = ts[ts.size() / 2];
  const std::string name = victim["name"];
  FlipBit(victim["path"], victim["offset"].get<uint64_t>() + 5, 2);
  // Quick checks presence and sizes only: still clean.
  EXPECT_EQ(C({"verify", "--quick"}).rc, 0);
  r = C({"verify", "--deep"});
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.out.find(name), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("corrupt"), std::string::npos) << r.out;
  r = C({"--json", "verify", "tiny", "--deep"});
  EXPECT_EQ(r.rc, 1);
  json v = r.Json();
  EXPECT_EQ(v["ok"], false);
  ASSERT_EQ(v["problems"].size(), 1u);
  EXPECT_EQ(v["problems"][0]["kind"], "corrupt");
  EXPECT_EQ(v["problems"][0]["tensor"], name);
  // Repair re-warms from the source; afterwards deep verify is clean again.
  r = C({"verify", "--deep", "--repair"});
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_EQ(C({"verify", "--deep"}).rc, 0);
  // A missing entry file: quick verify catches it (exit 1).
  json ents = C({"--json", "ls", "--entries"}).Json();
  fs::remove(ents[0]["path"].get<std::string>());
  r = C({"verify"});
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("missing"), std::string::npos) << r.out;
  EXPECT_EQ(C({"verify", "--quick", "--deep"}).rc, 2);
}

TEST_F(CacheCli, EvictDryRunMaxSizeModelAllAndPins) {
  Warm();
  FakeModel other = MakeFakeModel(t_ / "src/other", 1, 2, 3, 4096, 9);
  ASSERT_EQ(C({"warm", other.dir}).rc, 0);
  json before = C({"--json", "stat"}).Json();
  const uint64_t total = before["bytes"];

  // --dry-run: lists, deletes nothing.
  CliResult r = C({"--json", "evict", "--all", "--dry-run"});
  ASSERT_EQ(r.rc, 0) << r.err;
  json d = r.Json();
  EXPECT_EQ(d["dry_run"], true);
  EXPECT_EQ(d["evicted"].size(), before["entries"].get<size_t>());
  for (const json& e : d["evicted"]) EXPECT_TRUE(fs::exists(e["path"].get<std::string>()));
  EXPECT_EQ(C({"--json", "stat"}).Json()["bytes"], total);

  // --max-size: down to the size, least recently used first ("tiny" was warmed first).
  r = C({"--json", "evict", "--max-size", std::to_string(total * 2 / 3)});
  ASSERT_EQ(r.rc, 0) << r.err;
  json m = r.Json();
  EXPECT_LE(m["bytes_after"].get<uint64_t>(), total * 2 / 3);
  EXPECT_EQ(m["target_reached"], true);
  ASSERT_FALSE(m["evicted"].empty());
  EXPECT_EQ(m["evicted"][0]["model"], "tiny");
  for (const json& e : m["evicted"]) EXPECT_FALSE(fs::exists(e["path"].get<std::string>()));
  EXPECT_EQ(C({"--json", "stat"}).Json()["bytes"], m["bytes_after"]);

  // --model: only that model goes.
  r = C({"--json", "evict", "--model", "other"});
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const json& e : r.Json()["evicted"]) EXPECT_EQ(e["model"], "other");
  // The emptied model is forgotten: listing it is "not found" (3).
  EXPECT_EQ(C({"ls", "other", "--entries"}).rc, 3);
  for (const json& mod : C({"--json", "ls"}).Json()) EXPECT_NE(mod["name"], "other");

  // pin: evict --all cannot reach its target (exit 1) and keeps the pinned model.
  Warm();
  r = C({"--json", "pin", "tiny"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.Json()["pinned"], true);
  EXPECT_EQ(C({"--json", "ls", "tiny"}).Json()[0]["pinned"], true);
  // --all means every unpinned entry: reached, pinned ones counted and kept.
  r = C({"--json", "evict", "--all"});
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.Json()["pinned_skipped"], 5);
  EXPECT_EQ(C({"--json", "ls", "tiny", "--entries"}).Json().size(), 5u);
  // A size the pinned entries exceed cannot be reached: exit 1, target_reached false.
  r = C({"--json", "evict", "--max-size", "1K"});
  EXPECT_EQ(r.rc, 1) << r.out;
  json p = r.Json();
  EXPECT_EQ(p["target_reached"], false);
  EXPECT_GT(p["pinned_skipped"].get<uint64_t>(), 0u);
  EXPECT_EQ(C({"--json", "ls", "tiny", "--entries"}).Json().size(), 5u);
  // unpin: now it goes.
  ASSERT_EQ(C({"unpin", "tiny"}).rc, 0);
  r = C({"--json", "evict", "--all"});
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(C({"--json", "stat"}).Json()["entries"], 0);
  EXPECT_EQ(C({"pin", "no-such-model"}).rc, 3);
}

TEST_F(CacheCli, GcRemovesOrphansAndTempFiles) {
  Warm();
  const std::string orphan = dir_ + "/entries/tiny/stray.other.0123456789.safetensors";
  const std::string temp = dir_ + "/entries/tiny/x.other.abc.safetensors.tmp.999.1";
  std::ofstream(orphan) << "not indexed";
  std::ofstream(temp) << "half written";
  CliResult r = C({"--json", "verify"});
  EXPECT_EQ(r.rc, 1) << r.out;  // orphans are problems
  r = C({"--json", "gc"});
  ASSERT_EQ(r.rc, 0) << r.err;
  json g = r.Json();
  EXPECT_EQ(g["orphans_removed"].size(), 1u);
  EXPECT_EQ(g["temp_files_removed"].size(), 1u);
  EXPECT_EQ(g["skipped_busy"], false);
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_EQ(C({"verify", "--deep"}).rc, 0);
  EXPECT_EQ(C({"--json", "stat"}).Json()["tensors"], model_.all.size());
}

TEST_F(CacheCli, BadArgumentsExitCodes) {
  EXPECT_EQ(Cli({"--cache-dir", dir_}).rc, 2);                    // no command
  EXPECT_EQ(C({"frobnicate"}).rc, 2);                             // unknown command
  EXPECT_EQ(C({"warm"}).rc, 2);                                   // missing SOURCE
  EXPECT_EQ(C({"warm", model_.dir, "--threads", "many"}).rc, 2);  // bad number
  EXPECT_EQ(C({"warm", model_.dir, "--bogus"}).rc, 2);            // unknown option
  EXPECT_EQ(C({"evict", "--max-size", "lots"}).rc, 2);            // bad size
  EXPECT_EQ(C({"pin"}).rc, 2);                                    // missing MODEL
  CliResult r = C({"warm", t_ / "does-not-exist"});
  EXPECT_EQ(r.rc, 3) << r.err;  // not found
  EXPECT_NE(r.err.find("does-not-exist"), std::string::npos) << r.err;
  for (auto args : std::vector<std::vector<std::string>>{{"verify", "no-such-model"},
                                                         {"evict", "--model", "no-such-model"},
                                                         {"ls", "no-such-model"},
                                                         {"unpin", "no-such-model"}}) {
    r = C(args);
    EXPECT_EQ(r.rc, 3) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("no-such-model"), std::string::npos) << r.err;
  }
  // Help is not an error.
  r = Cli({"--help"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("usage"), std::string::npos);
  // A file that is not an SQLite index: corruption (5).
  fs::create_directories(t_ / "bad");
  std::ofstream(t_ / "bad/index.db") << std::string(8192, 'x');
  r = Cli({"--cache-dir", t_ / "bad", "stat"});
  EXPECT_EQ(r.rc, 5) << r.err;
  // An unwritable cache directory: I/O error (4). Root ignores permissions: then skip this part.
  if (::geteuid() != 0) {
    fs::create_directories(t_ / "ro");
    fs::permissions(t_ / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    r = Cli({"--cache-dir", t_ / "ro/c", "warm", model_.dir});
    EXPECT_EQ(r.rc, 4) << r.err;
  }
}

TEST_F(CacheCli, EnvironmentChoosesTheCacheDir) {
  const std::string env_dir = t_ / "from-env";
  CliResult r = Cli({"--json", "warm", model_.dir},
                    {{"HCT_CACHE_DIR", env_dir}, {"XDG_CACHE_HOME", t_ / "xdg"}});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(fs::exists(env_dir + "/index.db"));
  EXPECT_FALSE(fs::exists(t_ / "xdg/hct"));
  r = Cli({"--json", "stat"}, {{"HCT_CACHE_DIR", env_dir}});
  EXPECT_EQ(r.Json()["dir"], env_dir);
  EXPECT_EQ(r.Json()["tensors"], model_.all.size());
  // --cache-dir wins over the environment.
  r = Cli({"--cache-dir", dir_, "--json", "stat"}, {{"HCT_CACHE_DIR", env_dir}});
  EXPECT_EQ(r.Json()["dir"], dir_);
  EXPECT_EQ(r.Json()["tensors"], 0);
  // Without HCT_CACHE_DIR: $XDG_CACHE_HOME/hct, else $HOME/.cache/hct.
  r = Cli({"--json", "stat"}, {{"HCT_CACHE_DIR", std::nullopt}, {"XDG_CACHE_HOME", t_ / "xdg"}});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.Json()["dir"], t_ / "xdg/hct");
  r = Cli(
      {"--json", "stat"},
      {{"HCT_CACHE_DIR", std::nullopt}, {"XDG_CACHE_HOME", std::nullopt}, {"HOME", t_ / "home"}});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.Json()["dir"], t_ / "home/.cache/hct");
}

// Issue 10 item 16: out-of-range values were accepted (an empty --cache-dir fell back to the
// home cache, 10000P was stored as 8192P, --threads 100000 tried to start the threads).
TEST_F(CacheCli, OutOfRangeOptionsAreUsageErrors) {
  ASSERT_EQ(C({"stat"}).rc, 0);  // creates the cache
  const fs::path home = t_ / "home";
  CliResult r = Cli({"--cache-dir", "", "stat"}, {{"HOME", home.string()},
                                                 {"HCT_CACHE_DIR", std::nullopt},
                                                 {"XDG_CACHE_HOME", std::nullopt}});
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("--cache-dir"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(home / ".cache/hct"));
  for (const char* bad : {"", "abc", "-1", "10000P", "20000P", "18446744073709551616"}) {
    r = C({"config", "--max-size", bad});
    EXPECT_EQ(r.rc, 2) << "'" << bad << "': " << r.err;
    EXPECT_EQ(r.err.find("stoull"), std::string::npos) << r.err;
    r = C({"evict", "--max-size", bad, "--dry-run"});
    EXPECT_EQ(r.rc, 2) << "'" << bad << "': " << r.err;
  }
  EXPECT_EQ(C({"--json", "config"}).Json()["max_size"], nullptr);  // nothing was stored
  for (const char* n : {"-5", "100000"}) {
    r = C({"warm", model_.dir, "--threads", n});
    EXPECT_EQ(r.rc, 2) << n << ": " << r.err;
    EXPECT_NE(r.err.find("--threads"), std::string::npos) << r.err;
    EXPECT_EQ(C({"verify", "--threads", n}).rc, 2);
  }
  EXPECT_EQ(C({"--json", "stat"}).Json()["tensors"], 0);
}

// Issue 10 item 17: a config value edited to 'abc' made warm print only 'stoull'.
TEST_F(CacheCli, AGarbledConfigValueIsACorruptIndex) {
  Warm();
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/index.db").c_str(), &h), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(h, "INSERT OR REPLACE INTO config(key, value) VALUES('max_size', 'abc')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(h);
  for (auto args : std::vector<std::vector<std::string>>{{"warm", model_.dir, "--force"},
                                                         {"config"}}) {
    CliResult r = C(args);
    EXPECT_EQ(r.rc, 5) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("max_size"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("stoull"), std::string::npos) << r.err;
  }
}

// Issue 10 item 17: a dropped table was an internal "no such table" SQL error (exit 8), a 0-byte
// index.db advised a migration.
TEST_F(CacheCli, ADamagedIndexIsCorruptionNamingWhatIsWrong) {
  Warm();
  fs::copy(dir_, t_ / "dropped", fs::copy_options::recursive);
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open((t_ / "dropped/index.db").c_str(), &h), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(h, "DROP TABLE tensors", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(h);
  for (auto cmd : std::vector<std::vector<std::string>>{{"stat"}, {"ls"}, {"warm", model_.dir}}) {
    cmd.insert(cmd.begin(), {"--cache-dir", t_ / "dropped"});
    CliResult r = Cli(cmd);
    EXPECT_EQ(r.rc, 5) << cmd[2] << ": " << r.err;
    EXPECT_NE(r.err.find("no table 'tensors'"), std::string::npos) << r.err;
  }
  fs::create_directories(t_ / "zero");
  std::ofstream(t_ / "zero/index.db").flush();  // 0 bytes
  CliResult r = Cli({"--cache-dir", t_ / "zero", "stat"});
  EXPECT_EQ(r.rc, 5) << r.err;
  EXPECT_NE(r.err.find("empty"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("migrate"), std::string::npos) << r.err;
}

// Issue 10 item 17: an unrelated symlink loop in a model folder made warm fail with a
// filesystem exception while hct-convert ignored it; both ignore it now.
TEST_F(CacheCli, AnUnrelatedSymlinkLoopInTheModelFolderIsIgnored) {
  fs::create_symlink("loop-b", fs::path(model_.dir) / "loop-a");
  fs::create_symlink("loop-a", fs::path(model_.dir) / "loop-b");
  CliResult r = C({"--json", "warm", model_.dir});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.Json()["tensors_written"], model_.all.size());
}

// Issue 10 item 17: a tensor with an empty name was warmed (and printed as nothing).
TEST_F(CacheCli, AnEmptyTensorNameIsRejected) {
  fs::create_directories(t_ / "empty");
  WriteFakeSafetensors(t_ / "empty/model.safetensors", {{"", "F32", {4}, RandomBytes(16, 3)}});
  CliResult r = C({"warm", t_ / "empty"});
  EXPECT_EQ(r.rc, 5) << r.err;
  EXPECT_NE(r.err.find("empty tensor name"), std::string::npos) << r.err;
}

// Issue 10 item 17: names with control characters reached the terminal as is.
TEST_F(CacheCli, ControlCharactersInTensorNamesArePrintedEscaped) {
  fs::create_directories(t_ / "odd");
  // The JSON header spells ESC as \u001b; the tensor's name holds the byte itself.
  WriteFakeSafetensors(t_ / "odd/model.safetensors",
                       {{"evil\\u001b[2Jname", "F32", {4}, RandomBytes(16, 3)}});
  CliResult r = C({"warm", t_ / "odd"});
  ASSERT_EQ(r.rc, 0) << r.err;
  r = C({"ls", "--tensors"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("evil\\x1b[2Jname"), std::string::npos) << r.out;
}

// Issue 10 campaign re-run, defect 6: every text hct-cache prints is escaped, not only tensor
// names. (a) a source folder whose path holds ESC and BEL, shown by ls (model listing, entries
// and tensors), warm and verify; (b) a model name with ESC edited into the index.
TEST_F(CacheCli, ControlCharactersInSourcePathsAndModelNamesArePrintedEscaped) {
  const std::string odd = t_ / "m\x1b[31mX\x07";
  MakeFakeModel(odd, 1, 1, 1, 16);
  auto raw = [](const CliResult& r) {
    for (char ch : r.out + r.err)
      if ((static_cast<unsigned char>(ch) < 0x20 && ch != '\n') || ch == 0x7f) return true;
    return false;
  };
  std::vector<std::vector<std::string>> cmds = {{"warm", odd}, {"ls"}, {"ls", "--entries"},
                                                {"ls", "--tensors"}, {"verify", "--deep"},
                                                {"stat"}, {"evict", "--all", "--dry-run"}};
  for (const auto& cmd : cmds) {
    CliResult r = C(cmd);
    SCOPED_TRACE(cmd[0] + (cmd.size() > 1 ? " " + cmd[1] : ""));
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_FALSE(raw(r)) << r.out << r.err;
  }
  EXPECT_NE(C({"ls"}).out.find("m\\x1b[31mX\\x07"), std::string::npos) << C({"ls"}).out;
  // A model name from the index names a folder: one with control characters (or "..") is a
  // damaged index, reported escaped.
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/index.db").c_str(), &h), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(h, "UPDATE models SET name = 'm\x1b[31m'", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(h);
  for (const auto& cmd : std::vector<std::vector<std::string>>{{"warm", odd, "--force"}, {"ls"}}) {
    CliResult r = C(cmd);
    SCOPED_TRACE(cmd[0]);
    EXPECT_LE(r.rc, 5) << r.err;
    EXPECT_FALSE(raw(r)) << r.out << r.err;
    EXPECT_NE((r.out + r.err).find("m\\x1b[31m"), std::string::npos) << r.out << r.err;
  }
}

}  // namespace
}  // namespace hct
