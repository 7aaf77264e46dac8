// hct::Cache: opening, cleanup, queries, pins, config and access statistics.
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "cache/detail/impl.h"
#include "cache/detail/schema.h"
#include "hct/detail/check_host.h"
#include "hct/detail/file.h"

namespace hct {

namespace fs = std::filesystem;
using detail::Stmt;
using detail::Txn;

namespace detail {
int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
bool GlobMatch(const std::string& pattern, const std::string& name) {
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}
std::string SanitizeName(const std::string& s) {
  std::string o;
  for (char c : s) o += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                         c == '.') ? c : '_';
  if (o.empty() || o[0] == '.') o = "m" + o;
  return o;
}
}  // namespace detail

namespace {

constexpr int kFlushIntervalMs = 5000;

Status MakeDir(const std::string& d) {
  if (::mkdir(d.c_str(), 0755) == 0 || errno == EEXIST) return Status::OK();
  int e = errno;
  struct stat st {};
  if (::stat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return Status::OK();
  return Status(e == ENOENT ? Code::kNotFound : Code::kIOError,
                "cache directory " + d + " cannot be created: " + std::strerror(e) +
                    (e == EACCES || e == EROFS ? " (parent is not writable)" : ""));
}

Status MakeDirs(const std::string& d) {
  std::error_code ec;
  fs::path p(d);
  fs::path cur;
  for (const auto& part : p) {
    cur /= part;
    if (cur.string().empty() || cur == "/") continue;
    if (fs::is_directory(cur, ec)) continue;
    HCT_RETURN_IF_ERROR(MakeDir(cur.string()));
  }
  return Status::OK();
}

// Opens index.db, configures the connection and checks or migrates the schema.
Status OpenIndex(detail::CacheImpl* impl, bool immutable = false) {
  const OpenOptions& opt = impl->opt;
  HCT_ASSIGN_OR_RETURN(impl->db, detail::Db::Open(impl->IndexPath(), opt.read_only,
                                                  opt.busy_timeout_ms, immutable));
  HCT_RETURN_IF_ERROR(detail::ConfigureConnection(impl->db.get(), opt.read_only));
  if (opt.read_only) {
    HCT_ASSIGN_OR_RETURN(impl->schema_version, detail::SchemaVersion(impl->db.get()));
    if (impl->schema_version == 0)  // a 0-byte file: "migrate" would be the wrong advice
      return Status::Corruption("cache index " + impl->IndexPath() +
                                " is empty (no schema): truncated or not an hct cache index");
    if (impl->schema_version != detail::kSchemaVersion)
      return Status::Unsupported("cache index " + impl->IndexPath() + " has schema version " +
                                 std::to_string(impl->schema_version) + ", this build reads " +
                                 std::to_string(detail::kSchemaVersion) +
                                 " (open it read-write once to migrate)");
  } else {
    HCT_RETURN_IF_ERROR(detail::MigrateSchema(impl->db.get()));
    impl->schema_version = detail::kSchemaVersion;
  }
  // A dropped table would otherwise surface as an internal "no such table" SQL error.
  for (const char* t : {"models", "files", "tensors", "config"}) {
    HCT_ASSIGN_OR_RETURN(int64_t n, impl->db->QueryInt(
        std::string("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='") + t + "'"));
    if (n == 0)
      return Status::Corruption("cache index " + impl->IndexPath() + " has no table '" + t +
                                "': damaged; move it away to rebuild the cache");
  }
  return Status::OK();
}

bool WalIsEmpty(const std::string& index_path) {
  struct stat st {};
  return ::stat((index_path + "-wal").c_str(), &st) != 0 ? errno == ENOENT : st.st_size == 0;
}

// `st`, the first OpenIndex's result, or the result of a retry when the disk is full: SQLite
// cannot create its shared-memory and WAL files then, so nothing (evict and gc, stat, ls and
// verify included) could run. A read-only open of an index whose WAL is empty (every writer
// closed: all is in index.db) reads it as immutable, which needs no file and no byte of space;
// otherwise the space the cache keeps in reserve is given back and the open tried once more.
Status OpenIndexOnAFullDisk(detail::CacheImpl* impl, Status st) {
  if (st.ok() || (st.code() != Code::kIOError && st.code() != Code::kResourceExhausted))
    return st;
  if (impl->opt.read_only && WalIsEmpty(impl->IndexPath())) {
    impl->db.reset();
    return OpenIndex(impl, /*immutable=*/true);
  }
  if (impl->opt.read_only || ::unlink(impl->ReservePath().c_str()) != 0) return st;
  impl->db.reset();
  return OpenIndex(impl);
}

}  // namespace

void detail::CacheImpl::KeepReserve() {
  // Space set aside while there is room, so that a later open on a full disk can free it and
  // still evict (docs/cache.md). Best effort: without room there is simply no reserve yet.
  struct stat st {};
  if (::stat(ReservePath().c_str(), &st) == 0) return;
  std::string tmp = ReservePath() + detail::kTempMarker + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  bool ok = ::posix_fallocate(fd, 0, kReserveBytes) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), ReservePath().c_str()) != 0) ::unlink(tmp.c_str());
}

Result<std::string> detail::CacheImpl::EntryAbs(const std::string& rel, bool check_links) const {
  auto bad = [&](const char* why) {
    return Status::Corruption(IndexPath() + ": entry path '" + rel + "' " + why +
                              " (the index names only entries/<model>/<file>)");
  };
  if (rel.find('\0') != std::string::npos) return bad("holds a NUL byte");
  std::vector<std::string_view> parts;
  for (size_t b = 0;;) {
    size_t e = rel.find('/', b);
    parts.push_back(std::string_view(rel).substr(b, e == std::string::npos ? e : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  if (parts.size() != 3 || parts[0] != "entries") return bad("is not inside entries/");
  for (size_t i = 1; i < 3; ++i)
    if (parts[i].empty() || parts[i] == "." || parts[i] == "..")
      return bad("is not inside entries/");
  if (check_links) {
    std::string model_dir = EntriesDir() + "/" + std::string(parts[1]);
    struct stat st {};
    if (::lstat(model_dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      return bad("has a model folder that is not a folder (a symlink?)");
  }
  return Abs(rel);
}

Cache::Cache(std::unique_ptr<detail::CacheImpl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Cache>> Cache::Open(const std::string& dir_in, const OpenOptions& opt) {
  auto impl = std::make_unique<detail::CacheImpl>();
  std::error_code ec;
  impl->dir = fs::absolute(dir_in, ec).lexically_normal().string();
  while (impl->dir.size() > 1 && impl->dir.back() == '/') impl->dir.pop_back();
  impl->opt = opt;
  const std::string& dir = impl->dir;
  if (opt.read_only) {
    if (!fs::exists(impl->IndexPath(), ec))
      return Status::NotFound("no cache index at " + impl->IndexPath());
  } else {
    HCT_RETURN_IF_ERROR(MakeDirs(dir));
    HCT_RETURN_IF_ERROR(MakeDir(impl->EntriesDir()));
    HCT_RETURN_IF_ERROR(MakeDir(impl->LocksDir()));
    // Catch an unwritable directory up front, with its name, rather than deep inside SQLite.
    std::string probe = dir + "/.probe" + detail::kTempMarker + std::to_string(::getpid());
    int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && errno != ENOSPC) {  // a full disk is handled below (the space reserve)
      int e = errno;
      return Status(e == ENOSPC ? Code::kResourceExhausted : Code::kIOError,
                    "cache directory " + dir + " is not writable: " + std::strerror(e) +
                        " (use --cache-dir or HCT_CACHE_DIR for another location)");
    }
    if (fd >= 0) ::close(fd);
    ::unlink(probe.c_str());
  }
  HCT_RETURN_IF_ERROR(OpenIndexOnAFullDisk(impl.get(), OpenIndex(impl.get())));
  std::unique_ptr<Cache> cache(new Cache(std::move(impl)));
  detail::CacheImpl* I = cache->impl_.get();
  if (!opt.read_only && opt.cleanup) {
    HCT_ASSIGN_OR_RETURN(I->open_report, I->Cleanup(/*remove_orphans=*/true));
  }
  if (!opt.read_only) {
    I->flusher = std::thread([I] {
      std::unique_lock lk(I->acc_mu);
      while (!I->stop_flusher) {
        I->acc_cv.wait_for(lk, std::chrono::milliseconds(kFlushIntervalMs));
        if (I->pending.empty()) continue;
        lk.unlock();
        {
          std::lock_guard g(I->db_mu);
          (void)I->FlushLocked();  // a busy index keeps the counts for the next round
        }
        lk.lock();
      }
    });
  }
  if (!opt.read_only) I->KeepReserve();
  return cache;
}

Cache::~Cache() {
  if (impl_->flusher.joinable()) {
    {
      std::lock_guard lk(impl_->acc_mu);
      impl_->stop_flusher = true;
    }
    impl_->acc_cv.notify_all();
    impl_->flusher.join();
  }
  if (!impl_->opt.read_only) {
    std::lock_guard g(impl_->db_mu);
    (void)impl_->FlushLocked();
  }
}

const std::string& Cache::dir() const { return impl_->dir; }
const CleanupReport& Cache::open_report() const { return impl_->open_report; }
int Cache::schema_version() const { return impl_->schema_version; }

// ------------------------------------------------------------------------------- cleanup
Result<CleanupReport> detail::CacheImpl::Cleanup(bool remove_orphans) {
  CleanupReport rep;
  // 1. Rows whose file is gone. Safe at any time: a row is committed only after its file is in
  //    place, and evict deletes the row before the file.
  std::vector<std::pair<int64_t, std::string>> rows;
  {
    std::lock_guard g(db_mu);
    HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare("SELECT id, path FROM files"));
    while (true) {
      HCT_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      rows.emplace_back(s.Int(0), s.Text(1));
    }
  }
  std::set<std::string> known;
  for (auto& [id, rel] : rows) {
    known.insert(rel);
    // A row naming a path outside entries/ names no entry file: it dangles too.
    auto abs = EntryAbs(rel);
    struct stat st {};
    if (abs.ok() && ::stat(abs->c_str(), &st) == 0) continue;
    if (abs.ok() && errno != ENOENT) return Status::FromErrno("stat", *abs, errno);
    std::lock_guard g(db_mu);
    HCT_ASSIGN_OR_RETURN(Stmt d, db->Prepare("DELETE FROM files WHERE id = ?1 AND path = ?2"));
    HCT_RETURN_IF_ERROR(d.Bind(1, id).Bind(2, rel).Run());
    if (sqlite3_changes(db->raw()) > 0) rep.dangling_rows_dropped.push_back(abs.ok() ? *abs : rel);
  }
  if (!remove_orphans) return rep;

  // 2. Temp files and orphans: only while no warm runs (a warm's renamed-but-uncommitted entry
  //    looks like an orphan). Warms hold warm.lock shared; we need it exclusive.
  auto wl = detail::FileLock::Acquire(WarmLockPath(), /*exclusive=*/true, /*wait=*/false);
  if (!wl.ok()) {
    if (wl.status().code() != Code::kBusy) return wl.status();
    rep.skipped_busy = true;
    return rep;
  }
  // Re-read the index now that no warm can commit behind our back.
  known.clear();
  {
    std::lock_guard g(db_mu);
    HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare("SELECT path FROM files"));
    while (true) {
      HCT_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      known.insert(s.Text(0));
    }
  }
  std::error_code ec;
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(EntriesDir(), ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back(it->path());
  }
  if (ec) return Status::IOError("list " + EntriesDir() + ": " + ec.message());
  std::set<std::string> dirs;
  for (const fs::path& p : files) {
    std::string rel = fs::relative(p, dir, ec).string();
    dirs.insert(p.parent_path().string());
    bool temp = p.filename().string().find(detail::kTempMarker) != std::string::npos;
    if (!temp && known.count(rel)) continue;
    // An orphan may still be leased by a reader of a replaced entry: leave it for a later gc.
    auto lk = detail::FileLock::Acquire(p.string(), true, false, /*create=*/false);
    if (!lk.ok()) continue;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("unlink", p.string(), errno);
    (temp ? rep.temp_files_removed : rep.orphans_removed).push_back(p.string());
  }
  for (const std::string& d : dirs) {
    if (!rep.temp_files_removed.empty() || !rep.orphans_removed.empty())
      (void)detail::SyncDir(d);
    ::rmdir(d.c_str());  // only succeeds when empty
  }
  return rep;
}

Result<CleanupReport> Cache::Gc() {
  HCT_RETURN_IF_ERROR(impl_->CheckWritable());
  HCT_ASSIGN_OR_RETURN(CleanupReport rep, impl_->Cleanup(true));
  // Models left without entries (nobody warming them) go too.
  std::vector<std::string> names;
  {
    std::lock_guard g(impl_->db_mu);
    HCT_ASSIGN_OR_RETURN(Stmt s, impl_->db->Prepare(
        "SELECT name FROM models m WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.model_id = m.id)"));
    while (true) {
      HCT_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      names.push_back(s.Text(0));
    }
  }
  for (const auto& n : names) HCT_RETURN_IF_ERROR(impl_->DeleteEmptyModel(n));
  return rep;
}

Status detail::CacheImpl::DeleteEmptyModel(const std::string& name) {
  // A damaged name would steer the lock file and the rmdir outside the cache: the row stays.
  if (!IsPlainModelName(name)) return Status::OK();
  auto ml = detail::FileLock::Acquire(ModelLockPath(name), true, false);
  // Busy: a warm works on it. No room for the lock file (full disk): the empty model stays
  // listed until a later evict or gc; what was evicted is evicted either way.
  if (!ml.ok())
    return ml.status().code() == Code::kBusy || ml.status().code() == Code::kResourceExhausted
               ? Status::OK()
               : ml.status();
  {
    std::lock_guard g(db_mu);
    HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare(
        "DELETE FROM models WHERE name = ?1 AND pinned = 0 AND NOT EXISTS "
        "(SELECT 1 FROM files f WHERE f.model_id = models.id)"));
    Status st = s.Bind(1, name).Run();
    if (!st.ok() && st.code() != Code::kResourceExhausted) return st;  // full: a later gc does it
  }
  ::rmdir((EntriesDir() + "/" + name).c_str());
  return Status::OK();
}

Status detail::CacheImpl::DropEntry(int64_t entry_id, const std::string& rel) {
  {
    std::lock_guard g(db_mu);
    HCT_ASSIGN_OR_RETURN(Stmt d, db->Prepare("DELETE FROM files WHERE id = ?1"));
    HCT_RETURN_IF_ERROR(d.Bind(1, entry_id).Run());
  }
  detail::CrashPoint("drop: rows deleted, file not yet");
  auto abs = EntryAbs(rel);
  if (!abs.ok()) return Status::OK();  // the row named no entry file: nothing to delete
  auto lk = detail::FileLock::Acquire(*abs, true, false, /*create=*/false);
  if (!lk.ok()) return Status::OK();  // leased or already gone: gc removes it later
  if (::unlink(abs->c_str()) != 0 && errno != ENOENT)
    return Status::FromErrno("unlink", *abs, errno);
  return Status::OK();
}

Result<int64_t> detail::CacheImpl::ModelId(const std::string& name) {
  HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare("SELECT id FROM models WHERE name = ?1"));
  HCT_ASSIGN_OR_RETURN(bool row, s.Bind(1, name).Step());
  if (!row) return Status::NotFound("model '" + name + "' is not in the cache " + dir);
  return s.Int(0);
}

// ------------------------------------------------------------------------------- queries
namespace {
constexpr const char* kEntryCols =
    "SELECT f.id, m.name, f.path, f.source_file, f.layer, f.size, "
    "(SELECT count(*) FROM tensors t WHERE t.file_id = f.id), f.pinned, f.warmed_at, "
    "f.last_access, f.access_count FROM files f JOIN models m ON m.id = f.model_id ";
constexpr const char* kTensorCols =
    "SELECT t.id, t.file_id, m.name, t.name, f.path, t.offset, t.length, t.dtype, t.shape, "
    "t.xxh3, t.layer, t.source_xxh3, t.block_xxh3 FROM tensors t JOIN files f ON f.id = t.file_id "
    "JOIN models m ON m.id = t.model_id ";
}  // namespace

Result<std::vector<EntryInfo>> detail::CacheImpl::Entries(const std::string& model) {
  std::lock_guard g(db_mu);
  if (!model.empty()) HCT_RETURN_IF_ERROR(ModelId(model).status());
  HCT_ASSIGN_OR_RETURN(std::vector<EntryInfo> out,
                       model.empty() ? EntryRows("ORDER BY m.name, f.path", {})
                                     : EntryRows("WHERE m.name = ?1 ORDER BY m.name, f.path",
                                                 {model}));
  for (EntryInfo& e : out) {
    auto abs = EntryAbs(e.path, /*check_links=*/false);
    if (abs.ok()) e.path = std::move(*abs);  // else shown as stored; verify reports it
  }
  return out;
}

Result<std::vector<EntryInfo>> detail::CacheImpl::EntryRows(const std::string& where,
                                                            const std::vector<std::string>& args) {
  HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare(std::string(kEntryCols) + where));
  for (size_t i = 0; i < args.size(); ++i) s.Bind(static_cast<int>(i + 1), args[i]);
  std::vector<EntryInfo> out;
  while (true) {
    HCT_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    EntryInfo e;
    e.id = s.Int(0);
    e.model = s.Text(1);
    e.path = s.Text(2);
    e.source_file = s.Text(3);
    if (!s.IsNull(4)) e.layer = static_cast<int>(s.Int(4));
    e.size = static_cast<uint64_t>(s.Int(5));
    e.tensors = static_cast<uint64_t>(s.Int(6));
    e.pinned = s.Int(7) != 0;
    e.warmed_at = s.Int(8) / 1000;
    e.last_access = s.Int(9) / 1000;
    e.access_count = static_cast<uint64_t>(s.Int(10));
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<TensorLocation>> detail::CacheImpl::Tensors(const std::string& where,
                                                          const std::vector<std::string>& args) {
  std::string sql = std::string(kTensorCols) + where;
  std::lock_guard g(db_mu);
  HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare(sql));
  for (size_t i = 0; i < args.size(); ++i) s.Bind(static_cast<int>(i + 1), args[i]);
  std::vector<TensorLocation> out;
  while (true) {
    HCT_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    TensorLocation t;
    t.tensor_id = s.Int(0);
    t.entry_id = s.Int(1);
    t.model = s.Text(2);
    t.name = s.Text(3);
    // Readers open this path: a row naming a file outside entries/ is refused.
    auto abs = EntryAbs(s.Text(4), /*check_links=*/false);
    if (!abs.ok())
      return Status::Corruption(abs.status().message() + ", tensor '" + t.name + "'");
    t.path = std::move(*abs);
    t.offset = static_cast<uint64_t>(s.Int(5));
    t.length = static_cast<uint64_t>(s.Int(6));
    auto dt = ParseDType(s.Text(7));
    if (!dt) return Status::Corruption(db->path() + ": tensor '" + t.name + "': bad dtype '" +
                                       s.Text(7) + "' in the index");
    t.dtype = *dt;
    try {
      t.shape = nlohmann::json::parse(s.Text(8)).get<std::vector<uint64_t>>();
    } catch (const std::exception& e) {
      return Status::Corruption(db->path() + ": tensor '" + t.name + "': bad shape '" +
                                s.Text(8) + "' in the index");
    }
    t.xxh3 = detail::I64ToU64(s.Int(9));
    if (!s.IsNull(10)) t.layer = static_cast<int>(s.Int(10));
    t.source_xxh3 = detail::I64ToU64(s.Int(11));
    std::string_view blob = s.Blob(12);
    const uint64_t nblocks = (t.length + kBlockHashBytes - 1) / kBlockHashBytes;
    if (!blob.empty()) {
      // A list that does not cover the tensor exactly is ignored (the whole xxh3 still verifies).
      if (blob.size() == nblocks * 8) {
        t.block_xxh3.resize(nblocks);
        for (uint64_t i = 0; i < nblocks; ++i) {
          uint64_t v = 0;
          for (int b = 7; b >= 0; --b) v = (v << 8) | uint8_t(blob[i * 8 + b]);
          t.block_xxh3[i] = v;
        }
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

Result<std::vector<ModelInfo>> Cache::ListModels() {
  std::lock_guard g(impl_->db_mu);
  HCT_ASSIGN_OR_RETURN(Stmt s, impl_->db->Prepare(
      "SELECT m.name, m.source, m.source_kind, m.pinned, "
      "(SELECT count(*) FROM files f WHERE f.model_id = m.id), "
      "(SELECT count(*) FROM tensors t WHERE t.model_id = m.id), "
      "(SELECT coalesce(sum(size), 0) FROM files f WHERE f.model_id = m.id), "
      "(SELECT coalesce(sum(access_count), 0) FROM files f WHERE f.model_id = m.id), "
      "(SELECT coalesce(max(last_access), 0) FROM files f WHERE f.model_id = m.id), "
      "(SELECT coalesce(max(warmed_at), 0) FROM files f WHERE f.model_id = m.id) "
      "FROM models m ORDER BY m.name"));
  std::vector<ModelInfo> out;
  while (true) {
    HCT_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    ModelInfo m;
    m.name = s.Text(0);
    m.source = s.Text(1);
    m.source_kind = s.Text(2);
    m.pinned = s.Int(3) != 0;
    m.entries = static_cast<uint64_t>(s.Int(4));
    m.tensors = static_cast<uint64_t>(s.Int(5));
    m.bytes = static_cast<uint64_t>(s.Int(6));
    m.access_count = static_cast<uint64_t>(s.Int(7));
    m.last_access = s.Int(8) / 1000;
    m.warmed_at = s.Int(9) / 1000;
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<EntryInfo>> Cache::ListEntries(const std::string& model) {
  return impl_->Entries(model);
}

Result<std::vector<TensorLocation>> Cache::ListTensors(const std::string& model) {
  if (model.empty()) return impl_->Tensors("ORDER BY m.name, f.path, t.ord", {});
  {
    std::lock_guard g(impl_->db_mu);
    HCT_RETURN_IF_ERROR(impl_->ModelId(model).status());
  }
  return impl_->Tensors("WHERE m.name = ?1 ORDER BY f.path, t.ord", {model});
}

Result<TensorLocation> Cache::LookupTensor(const std::string& model, const std::string& name) {
  HCT_ASSIGN_OR_RETURN(auto v, model.empty()
                                   ? impl_->Tensors("WHERE t.name = ?1 LIMIT 2", {name})
                                   : impl_->Tensors("WHERE t.name = ?1 AND m.name = ?2", {name, model}));
  if (v.empty())
    return Status::NotFound("tensor '" + name + "' is not in the cache" +
                            (model.empty() ? std::string() : " for model '" + model + "'"));
  if (v.size() > 1)
    return Status::InvalidArgument("tensor '" + name + "' is cached for several models (" +
                                   v[0].model + ", " + v[1].model + "); name the model");
  return std::move(v[0]);
}

Result<std::vector<TensorLocation>> Cache::TensorsOfLayer(const std::string& model, int layer) {
  {
    std::lock_guard g(impl_->db_mu);
    HCT_RETURN_IF_ERROR(impl_->ModelId(model).status());
  }
  // Served by the tensors_by_layer index (model_id, layer, file_id, ord).
  return impl_->Tensors(
      "WHERE t.model_id = (SELECT id FROM models WHERE name = ?1) AND t.layer = ?2 "
      "ORDER BY t.file_id, t.ord",
      {model, std::to_string(layer)});
}

Result<CacheStats> Cache::Stat() {
  CacheStats st;
  st.dir = impl_->dir;
  st.schema_version = impl_->schema_version;
  HCT_ASSIGN_OR_RETURN(st.max_size, MaxSize());
  std::lock_guard g(impl_->db_mu);
  auto& db = *impl_->db;
  HCT_ASSIGN_OR_RETURN(int64_t models, db.QueryInt("SELECT count(*) FROM models"));
  HCT_ASSIGN_OR_RETURN(int64_t entries, db.QueryInt("SELECT count(*) FROM files"));
  HCT_ASSIGN_OR_RETURN(int64_t tensors, db.QueryInt("SELECT count(*) FROM tensors"));
  HCT_ASSIGN_OR_RETURN(int64_t bytes, db.QueryInt("SELECT coalesce(sum(size), 0) FROM files"));
  HCT_ASSIGN_OR_RETURN(int64_t pinned,
                       db.QueryInt("SELECT coalesce(sum(size), 0) FROM files WHERE pinned != 0"));
  HCT_ASSIGN_OR_RETURN(int64_t acc,
                       db.QueryInt("SELECT coalesce(sum(access_count), 0) FROM files"));
  st.models = static_cast<uint64_t>(models);
  st.entries = static_cast<uint64_t>(entries);
  st.tensors = static_cast<uint64_t>(tensors);
  st.bytes = static_cast<uint64_t>(bytes);
  st.pinned_bytes = static_cast<uint64_t>(pinned);
  st.access_count = static_cast<uint64_t>(acc);
  return st;
}

// ------------------------------------------------------------------------- pins, config
namespace {
Status SetPinned(detail::CacheImpl* I, const std::string& model, bool pinned) {
  HCT_RETURN_IF_ERROR(I->CheckWritable());
  std::lock_guard g(I->db_mu);
  Txn txn(I->db.get());
  HCT_RETURN_IF_ERROR(txn.Begin());
  HCT_ASSIGN_OR_RETURN(int64_t id, I->ModelId(model));
  HCT_ASSIGN_OR_RETURN(Stmt a, I->db->Prepare("UPDATE models SET pinned = ?2 WHERE id = ?1"));
  HCT_RETURN_IF_ERROR(a.Bind(1, id).Bind(2, int64_t{pinned}).Run());
  HCT_ASSIGN_OR_RETURN(Stmt b, I->db->Prepare("UPDATE files SET pinned = ?2 WHERE model_id = ?1"));
  HCT_RETURN_IF_ERROR(b.Bind(1, id).Bind(2, int64_t{pinned}).Run());
  return txn.Commit();
}
}  // namespace

Status Cache::Pin(const std::string& model) { return SetPinned(impl_.get(), model, true); }
Status Cache::Unpin(const std::string& model) { return SetPinned(impl_.get(), model, false); }

Status Cache::SetMaxSize(std::optional<uint64_t> bytes) {
  HCT_RETURN_IF_ERROR(impl_->CheckWritable());
  std::lock_guard g(impl_->db_mu);
  if (!bytes) {
    HCT_ASSIGN_OR_RETURN(Stmt s, impl_->db->Prepare("DELETE FROM config WHERE key = 'max_size'"));
    return s.Run();
  }
  HCT_ASSIGN_OR_RETURN(Stmt s, impl_->db->Prepare(
      "INSERT INTO config(key, value) VALUES('max_size', ?1) "
      "ON CONFLICT(key) DO UPDATE SET value = excluded.value"));
  return s.Bind(1, std::to_string(*bytes)).Run();
}

Result<std::optional<uint64_t>> Cache::MaxSize() {
  std::lock_guard g(impl_->db_mu);
  return impl_->MaxSizeLocked();
}

Result<std::optional<uint64_t>> detail::CacheImpl::MaxSizeLocked() {
  HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare("SELECT value FROM config WHERE key = 'max_size'"));
  HCT_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<uint64_t>();
  // SetMaxSize stores a decimal byte count; anything else ("abc", "-5") is a damaged index.
  const std::string v = s.Text(0);
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size())
    return Status::Corruption(db->path() + ": config max_size '" + v +
                              "' is not a number of bytes");
  return std::optional<uint64_t>(n);
}

// ------------------------------------------------------------------------- access stats
void Cache::RecordAccess(int64_t tensor_id) {
  if (impl_->opt.read_only) return;
  int64_t now = detail::NowMillis();
  std::lock_guard lk(impl_->acc_mu);
  auto& p = impl_->pending[tensor_id];
  p.first += 1;
  p.second = now;
}

Status Cache::FlushAccess() {
  if (impl_->opt.read_only) return Status::OK();
  std::lock_guard g(impl_->db_mu);
  return impl_->FlushLocked();
}

Status detail::CacheImpl::FlushLocked() {
  std::unordered_map<int64_t, std::pair<uint64_t, int64_t>> batch;
  {
    std::lock_guard lk(acc_mu);
    batch.swap(pending);
  }
  if (batch.empty()) return Status::OK();
  auto restore = [&] {
    std::lock_guard lk(acc_mu);
    for (auto& [id, p] : batch) {
      auto& q = pending[id];
      q.first += p.first;
      q.second = std::max(q.second, p.second);
    }
  };
  Status st = [&]() -> Status {
    Txn txn(db.get());
    HCT_RETURN_IF_ERROR(txn.Begin());
    HCT_ASSIGN_OR_RETURN(Stmt t, db->Prepare(
        "UPDATE tensors SET access_count = access_count + ?2, "
        "last_access = max(last_access, ?3) WHERE id = ?1"));
    for (auto& [id, p] : batch) {
      HCT_RETURN_IF_ERROR(t.Bind(1, id).Bind(2, static_cast<int64_t>(p.first)).Bind(3, p.second).Run());
      sqlite3_reset(t.raw());
    }
    // Entry-level counters (what LRU eviction orders by) follow from the tensors of each entry.
    HCT_ASSIGN_OR_RETURN(Stmt f, db->Prepare(
        "UPDATE files SET access_count = access_count + ?2, last_access = max(last_access, ?3) "
        "WHERE id = (SELECT file_id FROM tensors WHERE id = ?1)"));
    for (auto& [id, p] : batch) {
      HCT_RETURN_IF_ERROR(f.Bind(1, id).Bind(2, static_cast<int64_t>(p.first)).Bind(3, p.second).Run());
      sqlite3_reset(f.raw());
    }
    return txn.Commit();
  }();
  if (!st.ok()) restore();
  return st;
}

}  // namespace hct
