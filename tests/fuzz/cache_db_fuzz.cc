// libFuzzer target for the cache's database rows: the input rewrites cells of a real cache
// index (files, tensors, models, config), then the cache is opened and every read path runs
// (ls, stat, lookups, quick and deep verify), then evict --all and gc. No input may crash, hang
// or make the cache touch a file outside its entries/ folder: a decoy next to the cache and the
// warmed source must survive byte for byte.
//   scripts/fuzz.sh build-fuzz 30
//   build-fuzz/tests/fuzz/fuzz_cache_db -runs=100000 build-fuzz/corpus/cache_db
//
// Input: a sequence of operations, each
//   u8 column (modulo the table below), u8 row (offset among the table's rows), u8 kind,
//   u8 length, `length` bytes of value
// kind % 4: 0 text, 1 integer (the value's bytes, little-endian), 2 blob, 3 NULL.
#include <sqlite3.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "hct/cache.h"

namespace {

namespace fs = std::filesystem;

struct Column {
  const char* table;
  const char* column;
};
constexpr Column kColumns[] = {
    {"files", "path"},          {"files", "size"},         {"files", "data_offset"},
    {"files", "group_key"},     {"files", "layer"},        {"files", "model_id"},
    {"files", "source_file"},   {"files", "pinned"},       {"files", "last_access"},
    {"tensors", "name"},        {"tensors", "dtype"},      {"tensors", "shape"},
    {"tensors", "offset"},      {"tensors", "length"},     {"tensors", "xxh3"},
    {"tensors", "block_xxh3"},  {"tensors", "layer"},      {"tensors", "file_id"},
    {"tensors", "model_id"},    {"models", "name"},        {"models", "pinned"},
    {"models", "source_kind"},  {"config", "value"},       {"tensors", "ord"},
};
constexpr size_t kNumColumns = sizeof(kColumns) / sizeof(kColumns[0]);

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}
std::string Read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A tiny safetensors model: two layers and one non-layer tensor, F32 and BF16.
void WriteSource(const std::string& path) {
  std::string h =
      R"({"model.layers.0.w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
      R"("model.layers.1.w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]},)"
      R"("model.norm.weight":{"dtype":"BF16","shape":[4],"data_offsets":[32,40]}})";
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char((h.size() >> (8 * i)) & 0xff);
  out += h;
  for (int i = 0; i < 40; ++i) out += char(i * 7 + 1);
  Write(path, out);
}

struct World {
  std::string root, source, decoy, decoy_text, source_bytes, tmpl, work;
  size_t tmpl_files = 0;
};

size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

const World& Setup() {
  static World w = [] {
    World x;
    x.root = (fs::temp_directory_path() / ("hct_cache_fuzz_" + std::to_string(::getpid()))).string();
    fs::remove_all(x.root);
    fs::create_directories(x.root + "/src");
    x.source = x.root + "/src/model.safetensors";
    WriteSource(x.source);
    x.source_bytes = Read(x.source);
    x.decoy = x.root + "/decoy.txt";
    x.decoy_text = "outside the cache";
    Write(x.decoy, x.decoy_text);
    x.tmpl = x.root + "/template";
    x.work = x.root + "/work/cache";
    auto c = hct::Cache::Open(x.tmpl);
    if (!c.ok() || !(*c)->Warm(x.source, {.threads = 1}).ok()) std::abort();
    c->reset();  // closes: the WAL is checkpointed into index.db
    x.tmpl_files = CountFiles(x.tmpl);
    // Removed at exit through a copy that outlives the static World (destroyed before atexit
    // handlers registered after its construction began run).
    static const std::string* root = new std::string(x.root);
    std::atexit([] { std::error_code ec; fs::remove_all(*root, ec); });
    return x;
  }();
  return w;
}

// Applies the operations of the input to index.db at `db_path`.
void Mutate(const std::string& db_path, const uint8_t* data, size_t size) {
  sqlite3* h = nullptr;
  if (sqlite3_open(db_path.c_str(), &h) != SQLITE_OK) std::abort();
  for (size_t p = 0; p + 4 <= size;) {
    const Column& col = kColumns[data[p] % kNumColumns];
    const int row = data[p + 1] % 8;
    const int kind = data[p + 2] % 4;
    const size_t len = std::min<size_t>(data[p + 3], size - p - 4);
    const uint8_t* v = data + p + 4;
    p += 4 + len;
    std::string sql = std::string("UPDATE ") + col.table + " SET " + col.column +
                      " = ?1 WHERE rowid = (SELECT rowid FROM " + col.table +
                      " ORDER BY rowid LIMIT 1 OFFSET ?2)";
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) std::abort();
    if (kind == 0) {
      sqlite3_bind_text(s, 1, reinterpret_cast<const char*>(v), int(len), SQLITE_TRANSIENT);
    } else if (kind == 1) {
      uint64_t n = 0;
      for (size_t i = 0; i < len && i < 8; ++i) n |= uint64_t(v[i]) << (8 * i);
      sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(n));
    } else if (kind == 2) {
      sqlite3_bind_blob(s, 1, v, int(len), SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(s, 1);
    }
    sqlite3_bind_int(s, 2, row);
    (void)sqlite3_step(s);  // constraint violations are fine: that row just stays
    sqlite3_finalize(s);
  }
  sqlite3_close(h);
}

void Exercise(const std::string& dir) {
  hct::OpenOptions o;
  o.cleanup = false;  // the commands must guard themselves
  o.busy_timeout_ms = 100;
  auto c = hct::Cache::Open(dir, o);
  if (!c.ok()) return;
  hct::Cache& cache = **c;
  (void)cache.ListModels();
  (void)cache.ListEntries();
  (void)cache.Stat();
  (void)cache.MaxSize();
  for (const char* name : {"model.layers.0.w", "model.norm.weight"}) {
    auto t = cache.LookupTensor(name);
    if (t.ok() && t->path.rfind(dir + "/entries/", 0) != 0) __builtin_trap();
  }
  auto ts = cache.ListTensors();
  if (ts.ok())
    for (const auto& t : *ts)
      if (t.path.rfind(dir + "/entries/", 0) != 0) __builtin_trap();
  (void)cache.TensorsOfLayer("model", 1);
  (void)cache.Verify({.mode = hct::VerifyMode::kQuick, .threads = 1});
  (void)cache.Verify({.mode = hct::VerifyMode::kDeep, .threads = 1});
  (void)cache.Evict({.all = true});
  (void)cache.Gc();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const World& w = Setup();
  std::error_code ec;
  fs::remove_all(fs::path(w.work).parent_path(), ec);
  fs::create_directories(fs::path(w.work).parent_path());
  fs::copy(w.tmpl, w.work, fs::copy_options::recursive, ec);
  if (ec) std::abort();
  Mutate(w.work + "/index.db", data, size);
  Exercise(w.work);
  // A cleaning open afterwards, as the next command would do.
  (void)hct::Cache::Open(w.work);
  if (Read(w.decoy) != w.decoy_text) __builtin_trap();        // deleted or written outside
  if (Read(w.source) != w.source_bytes) __builtin_trap();     // the source was touched
  if (CountFiles(w.tmpl) != w.tmpl_files) __builtin_trap();   // a sibling folder was touched
  return 0;
}
