// Cache::Evict: least recently used entries first; never pinned, never leased.
#include <unistd.h>

#include <set>

#include "cache/detail/impl.h"
#include "hct/detail/file.h"

namespace hct {

using detail::FileLock;
using detail::Stmt;

Result<EvictReport> Cache::Evict(const EvictOptions& opt) {
  if (!opt.dry_run) HCT_RETURN_IF_ERROR(impl_->CheckWritable());
  int modes = (opt.max_size ? 1 : 0) + (opt.model.empty() ? 0 : 1) + (opt.all ? 1 : 0);
  if (modes != 1)
    return Status::InvalidArgument("evict needs exactly one of --max-size, --model, --all");
  return impl_->EvictImpl(opt, "");
}

Result<bool> detail::CacheImpl::RowListed(int64_t id, const std::string& rel) {
  std::lock_guard g(db_mu);
  HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare("SELECT 1 FROM files WHERE id = ?1 AND path = ?2"));
  return s.Bind(1, id).Bind(2, rel).Step();
}

Result<bool> detail::CacheImpl::DeleteRowFreeingSpace(int64_t id, const std::string& rel,
                                                 const std::string& abs) {
  auto del = [&]() -> Result<bool> {
    std::lock_guard g(db_mu);
    // By id and path: a concurrent re-warm may have replaced the entry meanwhile.
    HCT_ASSIGN_OR_RETURN(Stmt d, db->Prepare("DELETE FROM files WHERE id = ?1 AND path = ?2"));
    HCT_RETURN_IF_ERROR(d.Bind(1, id).Bind(2, rel).Run());
    return sqlite3_changes(db->raw()) > 0;
  };
  auto r = del();
  if (r.ok() || r.status().code() != Code::kResourceExhausted || abs.empty()) return r;
  // The disk is full: the delete needs room in the WAL. Free the file first (the caller holds its
  // exclusive lock, so no reader leases it); a crash right here leaves a row without a file,
  // which the next open's cleanup drops.
  if (::unlink(abs.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("unlink", abs, errno);
  return del();
}

Result<EvictReport> detail::CacheImpl::EvictImpl(const EvictOptions& opt,
                                           const std::string& protect_model) {
  EvictReport rep;
  // The model must exist when asked for; once the lock is ours another evict may have emptied it
  // meanwhile, which is no error (nothing left to evict).
  if (!opt.model.empty()) {
    std::lock_guard g(db_mu);
    HCT_RETURN_IF_ERROR(ModelId(opt.model).status());
  }
  // One evict at a time: two would take each other's per-file locks for readers' leases. On a
  // full disk that cannot even create the lock file, go on unserialized rather than fail.
  FileLock evict_lock;
  if (!opt.dry_run) {
    auto l = FileLock::Acquire(LocksDir() + "/evict.lock", true, /*wait=*/true);
    if (l.ok()) evict_lock = std::move(*l);
    else if (l.status().code() != Code::kResourceExhausted) return l.status();
  }
  std::vector<EntryInfo> cands;
  int64_t total = 0;
  {
    std::lock_guard g(db_mu);
    HCT_ASSIGN_OR_RETURN(total, db->QueryInt("SELECT coalesce(sum(size), 0) FROM files"));
    HCT_ASSIGN_OR_RETURN(int64_t pinned, db->QueryInt(
        "SELECT count(*) FROM files f JOIN models m ON m.id = f.model_id "
        "WHERE f.pinned != 0 OR m.pinned != 0"));
    rep.pinned_skipped = static_cast<uint64_t>(pinned);
    // LRU: an entry never read counts as used when it was warmed. Paths relative until
    // reported.
    HCT_ASSIGN_OR_RETURN(
        cands, EntryRows("WHERE f.pinned = 0 AND m.pinned = 0 AND (?1 = '' OR m.name = ?1) AND "
                         "m.name != ?2 ORDER BY max(f.last_access, f.warmed_at), f.id",
                         {opt.model, protect_model}));
  }
  if (opt.model.empty() && !opt.all && !opt.max_size)
    return Status::InvalidArgument("evict needs exactly one of --max-size, --model, --all");
  uint64_t cur = static_cast<uint64_t>(total);
  std::set<std::string> touched;
  std::set<std::string> dirs;
  for (EntryInfo& e : cands) {
    if (opt.max_size && cur <= *opt.max_size) break;
    const std::string rel = e.path;
    auto abs = EntryAbs(rel);
    detail::FileLock lk;
    bool file_gone = !abs.ok();  // a row naming a path outside entries/: drop it, never touch it
    if (abs.ok()) {
      // The exclusive lock fails while any reader holds its shared lease.
      auto l = FileLock::Acquire(*abs, true, false, /*create=*/false);
      if (!l.ok() && l.status().code() == Code::kBusy) {
        // Busy is a reader's lease, or a warm or repair replacing this very entry (it removed
        // the row first). Only an entry the index still lists is leased.
        HCT_ASSIGN_OR_RETURN(bool listed, RowListed(e.id, rel));
        if (listed) rep.leased.push_back(*abs);
        continue;
      }
      file_gone = !l.ok() && l.status().code() == Code::kNotFound;
      if (!l.ok() && !file_gone) return l.status();
      if (l.ok()) lk = std::move(*l);
    }
    e.path = abs.ok() ? *abs : rel;
    if (!opt.dry_run) {
      HCT_ASSIGN_OR_RETURN(bool deleted, DeleteRowFreeingSpace(e.id, rel, file_gone ? "" : *abs));
      if (!deleted) continue;  // a concurrent re-warm or evict got there first
      detail::CrashPoint("evict: rows deleted, file not yet");
      if (!file_gone && ::unlink(abs->c_str()) != 0 && errno != ENOENT)
        return Status::FromErrno("unlink", *abs, errno);
      if (!file_gone) dirs.insert(abs->substr(0, abs->rfind('/')));
      touched.insert(e.model);
    }
    cur -= std::min(cur, e.size);
    rep.bytes_freed += e.size;
    rep.evicted.push_back(std::move(e));
  }
  for (const auto& d : dirs) {
    // Another process may have removed the emptied model folder already: nothing to sync then.
    Status st = detail::SyncDir(d);
    if (!st.ok() && st.code() != Code::kNotFound) return st;
  }
  for (const auto& m : touched) HCT_RETURN_IF_ERROR(DeleteEmptyModel(m));
  rep.bytes_after = cur;
  rep.target_reached = opt.max_size ? cur <= *opt.max_size
                                    : rep.leased.empty();
  return rep;
}

}  // namespace hct
