// detail::CacheImpl, the state behind hct::Cache, shared by the cache/*.cc files (internal).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cache/detail/db.h"
#include "cache/detail/locks.h"
#include "hct/cache.h"

namespace hct::detail {

struct CacheImpl {
  std::string dir;  // absolute
  OpenOptions opt;
  std::unique_ptr<detail::Db> db;
  std::mutex db_mu;  // serializes use of `db`
  CleanupReport open_report;
  int schema_version = 0;

  // Recorded accesses not yet in the index: tensor id -> (count, last access unix ms).
  std::mutex acc_mu;
  std::condition_variable acc_cv;
  std::unordered_map<int64_t, std::pair<uint64_t, int64_t>> pending;
  bool stop_flusher = false;
  std::thread flusher;

  std::string IndexPath() const { return dir + "/index.db"; }
  std::string EntriesDir() const { return dir + "/entries"; }
  std::string LocksDir() const { return dir + "/locks"; }
  // A preallocated file that an open on a full disk deletes to make room (KeepReserve).
  std::string ReservePath() const { return LocksDir() + "/space.reserve"; }
  static constexpr off_t kReserveBytes = 1 << 20;
  void KeepReserve();
  std::string WarmLockPath() const { return LocksDir() + "/warm.lock"; }
  std::string ModelLockPath(const std::string& model) const {
    return LocksDir() + "/model-" + model + ".lock";
  }
  std::string Abs(const std::string& rel) const { return dir + "/" + rel; }
  // The absolute path of an entry file the index names, or Corruption when `rel` is not
  // "entries/<model>/<file>" (no "..", no ".", nothing else) or, with `check_links`, when
  // entries/<model> is a symlink. Index rows are data: a damaged or crafted row must never make
  // the cache open, write or delete a file outside entries/. Every path read from the index goes
  // through here before it is used.
  Result<std::string> EntryAbs(const std::string& rel, bool check_links = true) const;

  Status CheckWritable() const {
    if (opt.read_only)
      return Status::InvalidArgument(dir + ": cache opened read-only");
    return Status::OK();
  }

  // Removes temp files and orphans when no warm runs, drops rows whose file is missing.
  // Caller must not hold db_mu.
  Result<CleanupReport> Cleanup(bool remove_orphans);
  // Rows of entries (optionally of one model), paths absolute.
  Result<std::vector<EntryInfo>> Entries(const std::string& model);
  // The entry rows that `where_sql` selects (conditions and ORDER BY over "files f JOIN models
  // m", `args` bound as ?1, ?2, ...), paths as the index stores them (relative, unchecked: pass
  // them through EntryAbs). The one reader of entry rows. db_mu held.
  Result<std::vector<EntryInfo>> EntryRows(const std::string& where_sql,
                                           const std::vector<std::string>& args);
  Result<std::vector<TensorLocation>> Tensors(const std::string& where_sql,
                                              const std::vector<std::string>& args);
  // Deletes an entry's rows, then its file (unless a reader leases it: then gc removes it later).
  Status DropEntry(int64_t entry_id, const std::string& rel_path);
  Status FlushLocked();  // db_mu held
  // The size budget (`config max_size`), nullopt when unlimited; Corruption when the stored
  // value is not a decimal byte count. db_mu held.
  Result<std::optional<uint64_t>> MaxSizeLocked();
  Result<int64_t> ModelId(const std::string& name);  // db_mu held
  Status DeleteEmptyModel(const std::string& name);   // db_mu not held

  // Warm restricted to the given group keys (empty = all) — used by verify --repair.
  Result<WarmReport> WarmImpl(const std::string& source, const WarmOptions& opt,
                              const std::set<std::string>& only_groups);
  // Is the entry row (id, path) still in the index? db_mu not held.
  Result<bool> RowListed(int64_t id, const std::string& rel);
  // Deletes the entry row (id, path); false when it was gone. On a full disk (no room for the
  // transaction) unlinks `abs` first, when given, and retries. db_mu not held.
  Result<bool> DeleteRowFreeingSpace(int64_t id, const std::string& rel, const std::string& abs);
  Result<EvictReport> EvictImpl(const EvictOptions& opt, const std::string& protect_model);
};

// The index stores times as unix milliseconds (LRU needs better than seconds).
int64_t NowMillis();
// fnmatch-style glob without special treatment of '/' or '.'.
bool GlobMatch(const std::string& pattern, const std::string& name);
std::string SanitizeName(const std::string& s);
// A model name from the index names folders and lock files: only what SanitizeName makes is one
// (no '/', no "..", no control characters).
inline bool IsPlainModelName(const std::string& s) { return !s.empty() && SanitizeName(s) == s; }
inline int64_t U64ToI64(uint64_t v) { return static_cast<int64_t>(v); }
inline uint64_t I64ToU64(int64_t v) { return static_cast<uint64_t>(v); }

}  // namespace hct::detail
