// The SQLite index: schema, migration, broken indexes, queries.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>

#include "cache/detail/schema.h"
#include "cache_test_util.h"
#include "hct/cache.h"

namespace hct {
namespace {

using testing::TempDir;

std::string Pragma(const std::string& db, const std::string& sql, int col = 0) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, col))
    out = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
  sqlite3_finalize(s);
  sqlite3_close(h);
  return out;
}

void ExecSql(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(h);
}

TEST(CacheIndex, FreshSchema) {
  TempDir t;
  {
    auto c = Cache::Open(t.path());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ((*c)->schema_version(), 3);
  }
  std::string db = t / "index.db";
  EXPECT_EQ(Pragma(db, "PRAGMA user_version"), "3");
  EXPECT_EQ(Pragma(db, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(Pragma(db, "SELECT group_concat(version) FROM schema_migrations"), "3");
  EXPECT_EQ(Pragma(db,
                   "SELECT count(*) FROM pragma_table_info('tensors') WHERE name = "
                   "'block_xxh3' AND type = 'BLOB'"),
            "1");
  EXPECT_EQ(Pragma(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                       "('models','files','tensors','config','tensors_by_name','tensors_by_layer')"),
            "6");
  // The runtime's two queries use their indexes.
  std::string plan1 = Pragma(db, "EXPLAIN QUERY PLAN SELECT * FROM tensors WHERE name = 'x'", 3);
  EXPECT_NE(plan1.find("tensors_by_name"), std::string::npos) << plan1;
  std::string plan2 = Pragma(
      db, "EXPLAIN QUERY PLAN SELECT * FROM tensors WHERE model_id = 1 AND layer = 3 "
          "ORDER BY file_id, ord", 3);
  EXPECT_NE(plan2.find("tensors_by_layer"), std::string::npos) << plan2;
}

TEST(CacheIndex, MigratesFromVersion1) {
  TempDir t;
  std::string db = t / "index.db";
  ExecSql(db, std::string(detail::SchemaScript(1)) +
                  "INSERT INTO schema_migrations VALUES(1, 0);"
                  "PRAGMA user_version = 1;"
                  "INSERT INTO models VALUES(1, 'm', '/src/m', 'safetensors', 0, 0);"
                  "INSERT INTO files(id, model_id, path, group_key, source_file, source_size, "
                  "source_mtime_ns, size, data_offset, warmed_at) VALUES(1, 1, "
                  "'entries/m/a.safetensors', 'a/L00004', '/src/m/a', 1, 1, 4104, 4096, 0);"
                  "INSERT INTO tensors(file_id, model_id, name, dtype, shape, offset, length, "
                  "xxh3, source_xxh3, source_length, ord) VALUES(1, 1, "
                  "'model.layers.4.mlp.weight', 'F32', '[2]', 4096, 8, 5, 5, 8, 0);");
  // Make the entry file exist so open's cleanup keeps the row.
  testing::fs::create_directories(t / "entries/m");
  std::ofstream(t / "entries/m/a.safetensors") << std::string(4104, 'x');
  auto c = Cache::Open(t.path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(Pragma(db, "PRAGMA user_version"), "3");
  EXPECT_EQ(Pragma(db, "SELECT group_concat(version) FROM schema_migrations ORDER BY version"),
            "1,2,3");
  auto layer = (*c)->TensorsOfLayer("m", 4);
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  ASSERT_EQ(layer->size(), 1u);
  EXPECT_EQ((*layer)[0].name, "model.layers.4.mlp.weight");
  EXPECT_EQ((*layer)[0].offset, 4096u);
  EXPECT_EQ((*layer)[0].xxh3, 5u);
  EXPECT_EQ(Pragma(db, "SELECT layer FROM files WHERE id = 1"), "4");
}

TEST(CacheIndex, MigratesFromVersion2AddingBlockChecksums) {
  TempDir t;
  std::string db = t / "index.db";
  // The v2 script fills `layer` with hct_layer(), a function of the cache's connections only;
  // on an empty index that UPDATE touches nothing, so plain NULL builds the same tables.
  std::string v2(detail::SchemaScript(2));
  for (size_t p; (p = v2.find("hct_layer(name)")) != std::string::npos;) v2.replace(p, 15, "NULL");
  ExecSql(db, v2 + "INSERT INTO schema_migrations VALUES(2, 0);"
                   "PRAGMA user_version = 2;"
                   "INSERT INTO models VALUES(1, 'm', '/src/m', 'safetensors', 0, 0);"
                   "INSERT INTO files(id, model_id, path, group_key, source_file, source_size, "
                   "source_mtime_ns, size, data_offset, warmed_at, layer) VALUES(1, 1, "
                   "'entries/m/a.safetensors', 'a/L00004', '/src/m/a', 1, 1, 4104, 4096, 0, 4);"
                   "INSERT INTO tensors(file_id, model_id, name, dtype, shape, offset, length, "
                   "xxh3, source_xxh3, source_length, ord, layer) VALUES(1, 1, "
                   "'model.layers.4.mlp.weight', 'F32', '[2]', 4096, 8, 5, 5, 8, 0, 4);");
  testing::fs::create_directories(t / "entries/m");
  std::ofstream(t / "entries/m/a.safetensors") << std::string(4104, 'x');
  auto c = Cache::Open(t.path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->schema_version(), 3);
  EXPECT_EQ(Pragma(db, "PRAGMA user_version"), "3");
  EXPECT_EQ(Pragma(db, "SELECT group_concat(version) FROM schema_migrations ORDER BY version"),
            "2,3");
  // Rows warmed before the migration have no block checksums; the whole XXH3 stays.
  EXPECT_EQ(Pragma(db, "SELECT typeof(block_xxh3) FROM tensors"), "null");
  auto loc = (*c)->LookupTensor("model.layers.4.mlp.weight");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->xxh3, 5u);
  EXPECT_TRUE(loc->block_xxh3.empty());
}

TEST(CacheIndex, NewerSchemaIsUnsupported) {
  TempDir t;
  { ASSERT_TRUE(Cache::Open(t.path()).ok()); }
  ExecSql(t / "index.db", "PRAGMA user_version = 99;");
  auto c = Cache::Open(t.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kUnsupported);
  EXPECT_NE(c.status().message().find("schema version 99"), std::string::npos);
}

TEST(CacheIndex, GarbageIndexIsCorruption) {
  TempDir t;
  {
    std::ofstream f(t / "index.db", std::ios::binary);
    auto junk = testing::RandomBytes(8192, 3);
    f.write(reinterpret_cast<const char*>(junk.data()), static_cast<std::streamsize>(junk.size()));
  }
  auto c = Cache::Open(t.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kCorruption) << c.status().ToString();
  EXPECT_NE(c.status().message().find(t / "index.db"), std::string::npos);
  EXPECT_NE(c.status().message().find("not a valid SQLite database"), std::string::npos);
}

TEST(CacheIndex, ForeignTablesWithoutVersionAreRejected) {
  TempDir t;
  ExecSql(t / "index.db", "CREATE TABLE other(x);");
  auto c = Cache::Open(t.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kCorruption);
}

TEST(CacheIndex, ConfigMaxSize) {
  TempDir t;
  {
    auto c = Cache::Open(t.path());
    ASSERT_TRUE(c.ok());
    EXPECT_FALSE((*(*c)->MaxSize()).has_value());
    ASSERT_TRUE((*c)->SetMaxSize(500ull << 30).ok());
  }
  auto c = Cache::Open(t.path());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*(*(*c)->MaxSize()), 500ull << 30);
  EXPECT_EQ((*(*c)->Stat()).max_size, 500ull << 30);
  ASSERT_TRUE((*c)->SetMaxSize(std::nullopt).ok());
  EXPECT_FALSE((*(*c)->MaxSize()).has_value());
}

TEST(CacheIndex, ReadOnlyOpenDoesNotCreate) {
  TempDir t;
  auto c = Cache::Open(t / "nothing", {.read_only = true});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kNotFound);
  EXPECT_FALSE(testing::fs::exists(t / "nothing"));
}

}  // namespace
}  // namespace hct
