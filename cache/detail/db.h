// Thin SQLite helpers for the cache index (internal): one connection, prepared statements cached
// by SQL text, every call checked through HCT_CHECK(sqlite, ...).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "hct/status.h"

namespace hct::detail {

class Db;

// A use of a prepared statement (owned by Db); reset when this object goes away.
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* s, Db* db) : s_(s), db_(db) {}
  Stmt(Stmt&& o) noexcept : bind_status_(std::move(o.bind_status_)), s_(o.s_), db_(o.db_) {
    o.s_ = nullptr;
  }
  Stmt& operator=(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  // Resets the statement so that it never holds a read snapshot open past its use.
  ~Stmt() {
    if (s_) sqlite3_reset(s_);
  }
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, const std::string& v);
  Stmt& Bind(int i, std::string_view v);
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, double v);
  Stmt& BindNull(int i);
  Stmt& BindBlob(int i, const void* data, size_t bytes);
  Stmt& Bind(int i, std::optional<int> v) {
    return v ? Bind(i, static_cast<int64_t>(*v)) : BindNull(i);
  }
  // Steps once: true when a row is available, false when done.
  Result<bool> Step();
  // Steps to completion (for statements without rows).
  Status Run();
  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  double Real(int col) const { return sqlite3_column_double(s_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(s_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(s_, col))
             : std::string();
  }
  std::string_view Blob(int col) const {
    const void* p = sqlite3_column_blob(s_, col);
    return p ? std::string_view(static_cast<const char*>(p), sqlite3_column_bytes(s_, col))
             : std::string_view();
  }
  sqlite3_stmt* raw() const { return s_; }

 private:
  Status bind_status_;
  sqlite3_stmt* s_;
  Db* db_;
};

class Db {
 public:
  // `immutable` (read-only only): SQLite's immutable=1, no locks and no -shm file. Only correct
  // while nobody writes the file and its WAL is empty (a full disk; see Cache::Open).
  static Result<std::unique_ptr<Db>> Open(const std::string& path, bool read_only,
                                          int busy_timeout_ms, bool immutable = false);
  ~Db();
  sqlite3* raw() const { return db_; }
  const std::string& path() const { return path_; }

  // Returns the cached prepared statement for `sql`, reset and with bindings cleared.
  Result<Stmt> Prepare(const std::string& sql);
  // Prepares and runs every statement of `sql` in turn (for DDL scripts; no rows expected).
  Status Exec(std::string_view sql);
  // Runs a single-value query and returns column 0 as an integer.
  Result<int64_t> QueryInt(const std::string& sql);

  Status Begin(bool immediate = true);
  Status Commit();
  void Rollback();
  // Adds the connection's error text to a failed Status.
  Status Annotate(Status s) const;

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
  std::map<std::string, sqlite3_stmt*, std::less<>> cache_;
};

// A write transaction that rolls back unless committed.
class Txn {
 public:
  explicit Txn(Db* db) : db_(db) {}
  Status Begin() {
    HCT_RETURN_IF_ERROR(db_->Begin(true));
    open_ = true;
    return Status::OK();
  }
  Status Commit() {
    open_ = false;
    return db_->Commit();
  }
  ~Txn() {
    if (open_) db_->Rollback();
  }

 private:
  Db* db_;
  bool open_ = false;
};

}  // namespace hct::detail
