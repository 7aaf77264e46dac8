#include "cache/detail/db.h"

#include <cctype>
#include <cstdio>

#include "hct/detail/check_host.h"

namespace hct::detail {

namespace {
// The project's SQLite error mapping (Code from the result code), but a message without the
// [file:line] of this source: cache errors reach users, who need the index and the cause, not
// where in hct the call was made.
Status Sql(int rc, const char* call) {
  Status st = HCT_CALL_STATUS(sqlite, rc);
  if (st.ok()) return st;
  return Status(st.code(), std::string(call) + ": " + sqlite3_errstr(rc));
}
}  // namespace
#define HCT_SQL(fn, ...) Sql(fn(__VA_ARGS__), #fn)

Stmt& Stmt::Bind(int i, int64_t v) {
  if (bind_status_.ok()) bind_status_ = HCT_SQL(sqlite3_bind_int64, s_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
Stmt& Stmt::Bind(int i, std::string_view v) {
  if (bind_status_.ok())
    bind_status_ = HCT_SQL(sqlite3_bind_text, s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::Bind(int i, double v) {
  if (bind_status_.ok()) bind_status_ = HCT_SQL(sqlite3_bind_double, s_, i, v);
  return *this;
}
Stmt& Stmt::BindBlob(int i, const void* data, size_t bytes) {
  if (bind_status_.ok())
    bind_status_ =
        HCT_SQL(sqlite3_bind_blob64, s_, i, data, bytes, SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::BindNull(int i) {
  if (bind_status_.ok()) bind_status_ = HCT_SQL(sqlite3_bind_null, s_, i);
  return *this;
}

Result<bool> Stmt::Step() {
  HCT_RETURN_IF_ERROR(bind_status_);
  int rc = sqlite3_step(s_);
  Status st = Sql(rc, "sqlite3_step");
  if (!st.ok()) {
    sqlite3_reset(s_);
    return db_->Annotate(std::move(st));
  }
  return rc == SQLITE_ROW;
}

Status Stmt::Run() {
  while (true) {
    HCT_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) {
      sqlite3_reset(s_);  // ready to be bound and run again
      return Status::OK();
    }
  }
}

namespace {
// file: URI of an absolute or relative path, for sqlite3_open_v2 with SQLITE_OPEN_URI.
std::string FileUri(const std::string& path, const char* query) {
  std::string u = "file:";
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
      u += static_cast<char>(c);
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", c);
      u += b;
    }
  }
  return u + "?" + query;
}
}  // namespace

Result<std::unique_ptr<Db>> Db::Open(const std::string& path, bool read_only,
                                     int busy_timeout_ms, bool immutable) {
  auto db = std::make_unique<Db>();
  db->path_ = path;
  int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
              SQLITE_OPEN_NOMUTEX;
  const bool uri = immutable && read_only;
  if (uri) flags |= SQLITE_OPEN_URI;
  int rc = sqlite3_open_v2(uri ? FileUri(path, "immutable=1").c_str() : path.c_str(), &db->db_,
                           flags, nullptr);
  Status st = Sql(rc, "sqlite3_open_v2");
  if (!st.ok()) return db->Annotate(std::move(st)).WithContext(path);
  HCT_RETURN_IF_ERROR(HCT_SQL(sqlite3_busy_timeout, db->db_, busy_timeout_ms));
  return db;
}

Db::~Db() {
  for (auto& [sql, s] : cache_) sqlite3_finalize(s);
  if (db_) sqlite3_close_v2(db_);
}

Status Db::Annotate(Status s) const {
  if (s.ok() || !db_) return s;
  return Status(s.code(), s.message() + " (" + sqlite3_errmsg(db_) + ")");
}

Result<Stmt> Db::Prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* s = nullptr;
    Status st = HCT_SQL(sqlite3_prepare_v3, db_, sql.c_str(), static_cast<int>(sql.size()),
                                   SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (!st.ok()) return Annotate(std::move(st)).WithContext(path_);
    it = cache_.emplace(sql, s).first;
  }
  sqlite3_reset(it->second);
  sqlite3_clear_bindings(it->second);
  return Stmt(it->second, this);
}

Status Db::Exec(std::string_view sql) {
  const char* p = sql.data();
  const char* end = sql.data() + sql.size();
  while (p < end) {
    sqlite3_stmt* s = nullptr;
    const char* tail = nullptr;
    Status st = HCT_SQL(sqlite3_prepare_v2, db_, p, static_cast<int>(end - p), &s, &tail);
    if (!st.ok()) return Annotate(std::move(st)).WithContext(path_);
    if (s == nullptr) break;  // only whitespace or comments left
    Status run;
    {
      Stmt stmt(s, this);
      run = stmt.Run();
    }
    sqlite3_finalize(s);
    if (!run.ok()) return run.WithContext(path_);
    p = tail;
  }
  return Status::OK();
}

Result<int64_t> Db::QueryInt(const std::string& sql) {
  HCT_ASSIGN_OR_RETURN(Stmt s, Prepare(sql));
  HCT_ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.Int(0) : 0;
}

Status Db::Begin(bool immediate) {
  HCT_ASSIGN_OR_RETURN(Stmt s, Prepare(immediate ? "BEGIN IMMEDIATE" : "BEGIN"));
  return s.Run().WithContext(path_);
}

Status Db::Commit() {
  HCT_ASSIGN_OR_RETURN(Stmt s, Prepare("COMMIT"));
  Status st = s.Run();
  if (!st.ok()) Rollback();
  return st.WithContext(path_);
}

void Db::Rollback() {
  auto s = Prepare("ROLLBACK");
  if (s.ok()) (void)s->Run();
}

}  // namespace hct::detail
