#include "cache/detail/schema.h"

#include <ctime>
#include <string>

#include "hct/cache.h"
#include "hct/detail/check_host.h"

namespace hct::detail {
namespace {

// Version 1: the first layout (no layer columns).
constexpr std::string_view kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations(
  version INTEGER PRIMARY KEY,
  applied_at INTEGER NOT NULL);
CREATE TABLE models(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  source TEXT NOT NULL UNIQUE,
  source_kind TEXT NOT NULL,
  pinned INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL);
CREATE TABLE files(
  id INTEGER PRIMARY KEY,
  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  path TEXT NOT NULL UNIQUE,
  group_key TEXT NOT NULL,
  source_file TEXT NOT NULL,
  source_size INTEGER NOT NULL,
  source_mtime_ns INTEGER NOT NULL,
  size INTEGER NOT NULL,
  data_offset INTEGER NOT NULL,
  pinned INTEGER NOT NULL DEFAULT 0,
  warmed_at INTEGER NOT NULL,
  last_access INTEGER NOT NULL DEFAULT 0,
  access_count INTEGER NOT NULL DEFAULT 0,
  UNIQUE(model_id, group_key));
CREATE TABLE tensors(
  id INTEGER PRIMARY KEY,
  file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  dtype TEXT NOT NULL,
  shape TEXT NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  xxh3 INTEGER NOT NULL,
  source_xxh3 INTEGER NOT NULL,
  source_length INTEGER NOT NULL,
  ord INTEGER NOT NULL,
  last_access INTEGER NOT NULL DEFAULT 0,
  access_count INTEGER NOT NULL DEFAULT 0,
  UNIQUE(model_id, name));
CREATE INDEX tensors_by_name ON tensors(name);
CREATE INDEX tensors_by_file ON tensors(file_id, ord);
CREATE INDEX files_by_model ON files(model_id);
CREATE INDEX files_lru ON files(pinned, last_access, warmed_at);
CREATE TABLE config(key TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql";

// Version 1 -> 2: the layer of each tensor and entry, for TensorsOfLayer.
constexpr std::string_view kMigrate1To2 = R"sql(
ALTER TABLE tensors ADD COLUMN layer INTEGER;
ALTER TABLE files ADD COLUMN layer INTEGER;
UPDATE tensors SET layer = hct_layer(name);
UPDATE files SET layer = (SELECT MIN(t.layer) FROM tensors t WHERE t.file_id = files.id);
CREATE INDEX tensors_by_layer ON tensors(model_id, layer, file_id, ord);
)sql";

// Version 2 -> 3: per-tensor block checksums (XXH3-64 of each kBlockHashBytes block from the
// tensor start, little-endian u64s) so that readers verify pieces in parallel. Rows warmed before
// have NULL: readers fall back to the whole-tensor xxh3.
constexpr std::string_view kMigrate2To3 = R"sql(
ALTER TABLE tensors ADD COLUMN block_xxh3 BLOB;
)sql";

struct Migration {
  int from;
  std::string_view sql;
};
constexpr Migration kMigrations[] = {{1, kMigrate1To2}, {2, kMigrate2To3}};

void LayerFn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  const unsigned char* t = sqlite3_value_text(argv[0]);
  if (!t) return sqlite3_result_null(ctx);
  auto l = LayerOfTensor(reinterpret_cast<const char*>(t));
  if (l) {
    sqlite3_result_int(ctx, *l);
  } else {
    sqlite3_result_null(ctx);
  }
}

Status Explain(Status st, Db* db) {
  if (st.code() == Code::kCorruption)
    return Status::Corruption("cache index " + db->path() +
                              " is not a valid SQLite database (" + st.message() +
                              "); move it away or delete the cache directory to rebuild it");
  return st;
}

Status ApplyStep(Db* db, std::string_view sql, int new_version) {
  Txn txn(db);
  HCT_RETURN_IF_ERROR(txn.Begin());
  HCT_ASSIGN_OR_RETURN(int cur, SchemaVersion(db));
  if (cur != new_version - 1) return Status::OK();  // another process migrated it meanwhile
  HCT_RETURN_IF_ERROR(db->Exec(sql));
  HCT_ASSIGN_OR_RETURN(Stmt rec, db->Prepare(
      "INSERT OR REPLACE INTO schema_migrations(version, applied_at) VALUES(?1, ?2)"));
  HCT_RETURN_IF_ERROR(rec.Bind(1, int64_t{new_version}).Bind(2, int64_t{time(nullptr)}).Run());
  HCT_RETURN_IF_ERROR(db->Exec("PRAGMA user_version = " + std::to_string(new_version)));
  return txn.Commit();
}

}  // namespace

std::string_view SchemaScript(int v) {
  static const std::string v2 = std::string(kSchemaV1) + std::string(kMigrate1To2);
  static const std::string v3 = v2 + std::string(kMigrate2To3);
  if (v == 1) return kSchemaV1;
  if (v == 2) return v2;
  return v3;
}

Status ConfigureConnection(Db* db, bool read_only) {
  HCT_CHECK(sqlite, sqlite3_create_function_v2(db->raw(), "hct_layer", 1,
                                               SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                                               &LayerFn, nullptr, nullptr, nullptr));
  // The first statement touches the file: a garbage file fails here with SQLITE_NOTADB.
  HCT_RETURN_IF_ERROR(Explain(db->Exec("PRAGMA foreign_keys = ON"), db));
  HCT_RETURN_IF_ERROR(Explain(db->QueryInt("SELECT count(*) FROM sqlite_master").status(), db));
  if (!read_only) {
    HCT_RETURN_IF_ERROR(Explain(db->Exec("PRAGMA journal_mode = WAL"), db));
    HCT_RETURN_IF_ERROR(db->Exec("PRAGMA synchronous = FULL"));
  }
  return Status::OK();
}

Result<int> SchemaVersion(Db* db) {
  auto v = db->QueryInt("PRAGMA user_version");
  if (!v.ok()) return Explain(v.status(), db);
  return static_cast<int>(*v);
}

Status MigrateSchema(Db* db) {
  HCT_ASSIGN_OR_RETURN(int v, SchemaVersion(db));
  if (v > kSchemaVersion)
    return Status::Unsupported("cache index " + db->path() + " has schema version " +
                               std::to_string(v) + ", newer than this build (" +
                               std::to_string(kSchemaVersion) + "); upgrade hct");
  if (v == kSchemaVersion) return Status::OK();
  if (v == 0) {
    HCT_ASSIGN_OR_RETURN(int64_t tables,
                         db->QueryInt("SELECT count(*) FROM sqlite_master WHERE type='table'"));
    if (tables != 0)
      return Status::Corruption("cache index " + db->path() +
                                " has tables but no schema version; not an hct cache index");
    // Two processes may create the index at once: the loser sees the version and stops.
    Txn txn(db);
    HCT_RETURN_IF_ERROR(txn.Begin());
    HCT_ASSIGN_OR_RETURN(int again, SchemaVersion(db));
    if (again != 0) return Status::OK();
    HCT_RETURN_IF_ERROR(db->Exec(SchemaScript(kSchemaVersion)));
    HCT_ASSIGN_OR_RETURN(Stmt rec, db->Prepare(
        "INSERT INTO schema_migrations(version, applied_at) VALUES(?1, ?2)"));
    HCT_RETURN_IF_ERROR(
        rec.Bind(1, int64_t{kSchemaVersion}).Bind(2, int64_t{time(nullptr)}).Run());
    HCT_RETURN_IF_ERROR(db->Exec("PRAGMA user_version = " + std::to_string(kSchemaVersion)));
    return txn.Commit();
  }
  for (const Migration& m : kMigrations) {
    HCT_ASSIGN_OR_RETURN(int cur, SchemaVersion(db));
    if (cur != m.from) continue;
    HCT_RETURN_IF_ERROR(ApplyStep(db, m.sql, m.from + 1).WithContext(
        "migrating cache index " + db->path() + " from schema " + std::to_string(m.from)));
  }
  HCT_ASSIGN_OR_RETURN(int fin, SchemaVersion(db));
  if (fin != kSchemaVersion)
    return Status::Internal("cache index " + db->path() + " stuck at schema version " +
                            std::to_string(fin));
  return Status::OK();
}

}  // namespace hct::detail
