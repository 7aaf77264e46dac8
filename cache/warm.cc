// Cache::Warm: decode a source into entry files, then commit them to the index.
#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cache/detail/impl.h"
#include "cache/detail/pool.h"
#include "cache/detail/source.h"
#include "hct/detail/file.h"
#include "hct/safetensors.h"

namespace hct {

namespace fs = std::filesystem;
using detail::FileLock;
using detail::SourceTensor;
using detail::Stmt;
using detail::Txn;

namespace {

constexpr uint64_t kEntryAlignment = 4096;
// Decoded bytes one entry's writer holds at once (besides a single larger tensor).
constexpr uint64_t kBatchBytes = 64u << 20;

struct Group {
  std::string key;  // "<source file stem>/L00012" or "<stem>/other"
  size_t file = 0;
  std::optional<int> layer;
  std::vector<size_t> tensors;  // indices into source tensors, in source order
  uint64_t bytes = 0;
  int64_t old_id = 0;  // existing entry to replace, 0 = none
};

struct TensorRow {
  const SourceTensor* t;
  uint64_t offset;  // absolute file offset
  uint64_t xxh3;
  uint64_t source_xxh3;
  std::vector<uint64_t> blocks;  // BlockXxh3 of the bytes
};

std::string RandomHex() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t seed = std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32);
  uint64_t v = XXH3_64bits_withSeed(&counter, sizeof counter, seed + counter.fetch_add(1));
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return std::string(buf, 10);
}

// Little-endian u64s (the block_xxh3 column).
std::string EncodeU64s(const std::vector<uint64_t>& v) {
  std::string out(v.size() * 8, '\0');
  for (size_t i = 0; i < v.size(); ++i)
    for (int b = 0; b < 8; ++b) out[i * 8 + b] = char(uint8_t(v[i] >> (8 * b)));
  return out;
}

std::string ShapeJson(const std::vector<uint64_t>& shape) { return nlohmann::json(shape).dump(); }

std::string ModelBaseName(const std::string& abs_source) {
  fs::path p(abs_source);
  std::string stem = fs::is_directory(p) ? p.filename().string() : p.stem().string();
  if (stem.empty()) stem = "model";
  return detail::SanitizeName(stem);
}

}  // namespace

Result<WarmReport> Cache::Warm(const std::string& source, const WarmOptions& opt) {
  HCT_RETURN_IF_ERROR(impl_->CheckWritable());
  return impl_->WarmImpl(source, opt, {});
}

namespace {

// One warm of one source: the steps of detail::CacheImpl::WarmImpl, each a method.
class Warmer {
 public:
  Warmer(detail::CacheImpl& c, const WarmOptions& opt, const std::set<std::string>& only_groups)
      : c_(c), opt_(opt), only_groups_(only_groups) {}
  Result<WarmReport> Run(const std::string& source_in);

 private:
  Status ChooseName();
  Status RegisterModel();
  // Groups the selected tensors by (source file, layer) into todo_, skipping warm ones.
  Status Plan();
  // Whether group `g` must be (re)written; restricts g.tensors to what the entry will hold.
  Result<bool> NeedsWrite(Group& g);
  Status MakeModelDir();
  Status WriteGroup(Group& g, const ParallelFor& pf);
  Status WriteTensors(const Group& g, SafetensorsWriter& w, const ParallelFor& pf,
                      std::vector<TensorRow>* rows, uint64_t* data_pos);
  // Replaces the group's entry row (and tensor rows) by the new file's; *old_path gets the
  // replaced entry's path, *dropped whether a repair found the entry evicted meanwhile.
  Status Commit(const Group& g, const std::string& rel, uint64_t size, uint64_t data_offset,
                const std::vector<TensorRow>& rows, std::string* old_path, bool* dropped);
  Status InsertTensorRows(int64_t file_id, const Group& g, uint64_t data_offset,
                          const std::vector<TensorRow>& rows);
  void ProgressOne(const SourceTensor& t);
  Status KeepBudget();

  detail::CacheImpl& c_;
  const WarmOptions& opt_;
  const std::set<std::string>& only_groups_;
  std::string source_, name_;
  std::unique_ptr<detail::TensorSource> src_;
  FileLock warm_lock_, model_lock_;
  int64_t model_id_ = 0;
  bool model_pinned_ = false;
  std::vector<Group> todo_;
  WarmReport rep_;
  std::mutex prog_mu_, rep_mu_;
  WarmProgress prog_;
  std::atomic<bool> failed_{false};
};

Result<WarmReport> Warmer::Run(const std::string& source_in) {
  auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  source_ = fs::absolute(source_in, ec).lexically_normal().string();
  while (source_.size() > 1 && source_.back() == '/') source_.pop_back();
  HCT_ASSIGN_OR_RETURN(src_, detail::OpenSource(source_));
  // Held for the whole warm: tells cleaners that uncommitted entry files may exist.
  HCT_ASSIGN_OR_RETURN(warm_lock_, FileLock::Acquire(c_.WarmLockPath(), false, true));
  HCT_RETURN_IF_ERROR(ChooseName());
  // One warm per model at a time: a second one waits, then finds the entries warm and skips.
  HCT_ASSIGN_OR_RETURN(model_lock_, FileLock::Acquire(c_.ModelLockPath(name_), true, true));
  HCT_RETURN_IF_ERROR(RegisterModel());
  rep_.model = name_;
  HCT_RETURN_IF_ERROR(Plan());
  if (!todo_.empty()) HCT_RETURN_IF_ERROR(MakeModelDir());

  Status first_error;
  std::mutex err_mu;
  int threads = opt_.threads > 0
                    ? opt_.threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  detail::RunJobs(threads, todo_.size(), [&](size_t i, const ParallelFor& pf) {
    if (failed_.load()) return;
    Status st = WriteGroup(todo_[i], pf);
    if (!st.ok()) {
      std::lock_guard lk(err_mu);
      if (first_error.ok())
        first_error = std::move(st).WithContext("warming " + source_ + " into " + c_.dir);
      failed_.store(true);
    }
  });
  if (!first_error.ok()) return first_error;
  HCT_RETURN_IF_ERROR(KeepBudget());
  rep_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return std::move(rep_);
}

// The model's name: the one it already has, else the source's base name made unique.
Status Warmer::ChooseName() {
  std::lock_guard g(c_.db_mu);
  HCT_ASSIGN_OR_RETURN(Stmt s, c_.db->Prepare("SELECT name FROM models WHERE source = ?1"));
  HCT_ASSIGN_OR_RETURN(bool row, s.Bind(1, source_).Step());
  if (row) {
    name_ = s.Text(0);
    if (!opt_.model_name.empty() && opt_.model_name != name_)
      return Status::AlreadyExists(source_ + ": already cached as model '" + name_ + "'");
    // A name from the index is data: it names a folder, so it must be a plain name.
    if (!detail::IsPlainModelName(name_))
      return Status::Corruption(c_.IndexPath() + ": model name '" + name_ +
                                "' is not a plain folder name");
    return Status::OK();
  }
  std::string base =
      opt_.model_name.empty() ? ModelBaseName(source_) : detail::SanitizeName(opt_.model_name);
  HCT_ASSIGN_OR_RETURN(Stmt q, c_.db->Prepare("SELECT source FROM models WHERE name = ?1"));
  for (int i = 1; name_.empty(); ++i) {
    std::string cand = i == 1 ? base : base + "-" + std::to_string(i);
    HCT_ASSIGN_OR_RETURN(bool taken, q.Bind(1, cand).Step());
    sqlite3_reset(q.raw());
    if (!taken)
      name_ = cand;
    else if (!opt_.model_name.empty())
      return Status::AlreadyExists("model name '" + cand + "' is taken by another source");
  }
  return Status::OK();
}

Status Warmer::RegisterModel() {
  std::lock_guard g(c_.db_mu);
  Txn txn(c_.db.get());
  HCT_RETURN_IF_ERROR(txn.Begin());
  HCT_ASSIGN_OR_RETURN(
      Stmt ins,
      c_.db->Prepare("INSERT OR IGNORE INTO models(name, source, source_kind, pinned, created_at) "
                     "VALUES(?1, ?2, ?3, 0, ?4)"));
  HCT_RETURN_IF_ERROR(ins.Bind(1, name_)
                          .Bind(2, source_)
                          .Bind(3, src_->kind())
                          .Bind(4, detail::NowMillis())
                          .Run());
  HCT_ASSIGN_OR_RETURN(
      Stmt sel, c_.db->Prepare("SELECT id, pinned FROM models WHERE source = ?1 AND name = ?2"));
  HCT_ASSIGN_OR_RETURN(bool row, sel.Bind(1, source_).Bind(2, name_).Step());
  if (!row) return Status::Busy("model name '" + name_ + "' was taken concurrently; retry");
  model_id_ = sel.Int(0);
  model_pinned_ = sel.Int(1) != 0;
  return txn.Commit();
}

Status Warmer::Plan() {
  const auto& tensors = src_->tensors();
  std::map<std::pair<size_t, int>, Group> by_key;  // layer -1 = non-layer tensors
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SourceTensor& t = tensors[i];
    std::optional<int> layer = LayerOfTensor(t.name);
    auto& g = by_key[{t.file, layer ? *layer : -1}];
    if (g.key.empty()) {
      char buf[32];
      if (layer) std::snprintf(buf, sizeof buf, "L%05d", *layer);
      g.key = src_->files()[t.file].stem + "/" + (layer ? std::string(buf) : std::string("other"));
      g.file = t.file;
      g.layer = layer;
    }
    g.tensors.push_back(i);  // all tensors of the group; the selection is applied below
  }
  uint64_t total_bytes = 0, total_tensors = 0;
  for (auto& [k, g] : by_key) {
    if (!only_groups_.empty() && !only_groups_.count(g.key)) continue;
    HCT_ASSIGN_OR_RETURN(bool write, NeedsWrite(g));
    if (!write) continue;
    total_bytes += g.bytes;
    total_tensors += g.tensors.size();
    todo_.push_back(std::move(g));
  }
  // Largest first: better balance across threads.
  std::stable_sort(todo_.begin(), todo_.end(),
                   [](const Group& a, const Group& b) { return a.bytes > b.bytes; });
  prog_.total_bytes = total_bytes;
  prog_.total_tensors = total_tensors;
  return Status::OK();
}

Result<bool> Warmer::NeedsWrite(Group& g) {
  const auto& tensors = src_->tensors();
  std::vector<size_t> selected;
  for (size_t i : g.tensors)
    if (opt_.tensors.empty() || detail::GlobMatch(opt_.tensors, tensors[i].name))
      selected.push_back(i);
  if (selected.empty()) return false;
  const detail::SourceFile& sf = src_->files()[g.file];
  // What the index already has for this group.
  std::set<std::string> have;
  bool valid = false;
  {
    std::lock_guard lk(c_.db_mu);
    HCT_ASSIGN_OR_RETURN(
        Stmt s, c_.db->Prepare("SELECT id, path, size, source_size, source_mtime_ns FROM files "
                               "WHERE model_id = ?1 AND group_key = ?2"));
    HCT_ASSIGN_OR_RETURN(bool row, s.Bind(1, model_id_).Bind(2, g.key).Step());
    // A repair restores entries the index lists; one evicted since verify looked stays gone.
    if (!row && !only_groups_.empty()) return false;
    if (row) {
      g.old_id = s.Int(0);
      struct stat st {};
      bool same_source = static_cast<uint64_t>(s.Int(3)) == sf.size && s.Int(4) == sf.mtime_ns;
      auto old_abs = c_.EntryAbs(s.Text(1));  // a row naming a path outside entries/ is rewritten
      valid = same_source && old_abs.ok() && ::stat(old_abs->c_str(), &st) == 0 &&
              static_cast<uint64_t>(st.st_size) == static_cast<uint64_t>(s.Int(2));
      if (same_source) {
        HCT_ASSIGN_OR_RETURN(Stmt n, c_.db->Prepare("SELECT name FROM tensors WHERE file_id = ?1"));
        n.Bind(1, g.old_id);
        while (true) {
          HCT_ASSIGN_OR_RETURN(bool r, n.Step());
          if (!r) break;
          have.insert(n.Text(0));
        }
      }
    }
  }
  bool complete = valid;
  for (size_t i : selected) complete = complete && have.count(tensors[i].name);
  if (complete && !opt_.force) {
    rep_.entries_skipped++;
    rep_.tensors_skipped += selected.size();
    return false;
  }
  // Rewrite with the union of what is selected now and what the entry already held.
  std::vector<size_t> keep;
  for (size_t i : g.tensors) {
    bool sel = std::find(selected.begin(), selected.end(), i) != selected.end();
    if (sel || have.count(tensors[i].name)) keep.push_back(i);
  }
  g.tensors = std::move(keep);
  g.bytes = 0;
  for (size_t i : g.tensors) g.bytes += tensors[i].nbytes;
  return true;
}

// entries/<model> must be a real folder of the cache: a symlink there (or at entries/) would
// make every entry file land outside the cache (docs/cache.md).
Status Warmer::MakeModelDir() {
  const std::string model_dir = c_.EntriesDir() + "/" + name_;
  if (::mkdir(model_dir.c_str(), 0755) != 0 && errno != EEXIST)
    return Status::FromErrno("mkdir", model_dir, errno);
  for (const std::string& d : {c_.EntriesDir(), model_dir}) {
    struct stat st {};
    if (::lstat(d.c_str(), &st) != 0) return Status::FromErrno("lstat", d, errno);
    if (!S_ISDIR(st.st_mode))
      return Status::Corruption(d + " is not a folder (a symlink?): entry files are written only "
                                    "inside the cache; move it away and warm again");
  }
  return Status::OK();
}

void Warmer::ProgressOne(const SourceTensor& t) {
  if (!opt_.progress) return;
  std::lock_guard lk(prog_mu_);
  prog_.done_bytes += t.nbytes;
  prog_.done_tensors += 1;
  prog_.current = t.name;
  opt_.progress(prog_);
}

// Tensors in batches of consecutive ones (up to kBatchBytes, at least one tensor): decoded and
// hashed in parallel (tensors, and the chunks of each tensor, through `pf`, so idle threads help
// with a large entry). Writes stay in order: one task of batch k+1's ParallelFor appends batch k
// while the other tasks decode (two batches in memory).
Status Warmer::WriteTensors(const Group& g, SafetensorsWriter& w, const ParallelFor& pf,
                            std::vector<TensorRow>* rows, uint64_t* data_pos) {
  const auto& tensors = src_->tensors();
  struct Batch {
    size_t begin = 0, end = 0;
    uint64_t bytes = 0;
    std::vector<std::vector<std::byte>> bufs;
    std::vector<Status> st;
    std::vector<uint64_t> sums, src_sums;
    std::vector<std::vector<uint64_t>> blocks;
  };
  Batch prev, cur;
  auto write_batch = [&](Batch& bt) -> Status {
    for (size_t k = 0; k < bt.end - bt.begin; ++k) {
      const SourceTensor& t = tensors[g.tensors[bt.begin + k]];
      // Zero-size tensors have no bytes to append; SafetensorsWriter::Write rejects them when
      // they follow other data (its position skips past empty tensors), so only declare them.
      if (t.nbytes > 0) HCT_RETURN_IF_ERROR(w.Write(t.name, bt.bufs[k]));
      rows->push_back({&t, *data_pos, bt.sums[k], bt.src_sums[k], bt.blocks[k]});
      *data_pos += t.nbytes;
      ProgressOne(t);
    }
    bt.end = bt.begin;  // written
    // Keep a normal batch's buffers for reuse; drop a huge tensor's at once.
    if (bt.bytes > kBatchBytes) bt.bufs.clear();
    return Status::OK();
  };
  auto decode = [&](size_t k) {
    const SourceTensor& t = tensors[g.tensors[cur.begin + k]];
    cur.bufs[k].resize(t.nbytes);
    auto r = src_->Decode(t, std::span<std::byte>(cur.bufs[k].data(), t.nbytes), pf);
    if (!r.ok()) {
      cur.st[k] = r.status();
      return;
    }
    cur.sums[k] = XXH3_64bits(cur.bufs[k].data(), t.nbytes);
    cur.blocks[k] = BlockXxh3(std::span<const std::byte>(cur.bufs[k].data(), t.nbytes));
    cur.src_sums[k] = r->value_or(cur.sums[k]);
  };
  for (size_t b = 0; b < g.tensors.size();) {
    if (failed_.load()) return Status::OK();  // another entry failed; stop early
    cur.begin = cur.end = b;
    cur.bytes = 0;
    while (cur.end < g.tensors.size() &&
           (cur.end == b || cur.bytes + tensors[g.tensors[cur.end]].nbytes <= kBatchBytes))
      cur.bytes += tensors[g.tensors[cur.end++]].nbytes;
    const size_t n = cur.end - cur.begin;
    if (cur.bufs.size() < n) cur.bufs.resize(n);
    cur.st.assign(n, Status::OK());
    cur.sums.assign(n, 0);
    cur.src_sums.assign(n, 0);
    cur.blocks.assign(n, {});
    const size_t w0 = prev.end > prev.begin ? 1 : 0;  // task 0 writes the previous batch
    Status write_st;
    pf(n + w0, [&](size_t i) {
      if (i < w0) write_st = write_batch(prev);
      else decode(i - w0);
    });
    HCT_RETURN_IF_ERROR(write_st);
    for (Status& st : cur.st) HCT_RETURN_IF_ERROR(st);
    std::swap(prev, cur);
    b = prev.end;
  }
  if (prev.end > prev.begin) HCT_RETURN_IF_ERROR(write_batch(prev));
  return Status::OK();
}

Status Warmer::WriteGroup(Group& g, const ParallelFor& pf) {
  const detail::SourceFile& sf = src_->files()[g.file];
  std::string rel = "entries/" + name_ + "/" + sf.stem + "." +
                    (g.layer ? g.key.substr(g.key.rfind('/') + 1) : std::string("other")) + "." +
                    RandomHex() + ".safetensors";
  std::string path = c_.Abs(rel);
  SafetensorsWriterOptions wo;
  wo.data_alignment = kEntryAlignment;
  HCT_ASSIGN_OR_RETURN(SafetensorsWriter w, SafetensorsWriter::Create(path, wo));
  HCT_RETURN_IF_ERROR(w.SetMetadata("format", "pt"));
  HCT_RETURN_IF_ERROR(w.SetMetadata("hct.model", name_));
  HCT_RETURN_IF_ERROR(w.SetMetadata("hct.source_file", sf.path));
  const auto& tensors = src_->tensors();
  for (size_t i : g.tensors)
    HCT_RETURN_IF_ERROR(w.Declare(tensors[i].name, tensors[i].dtype, tensors[i].shape));
  std::vector<TensorRow> rows;
  uint64_t data_pos = 0;
  HCT_RETURN_IF_ERROR(WriteTensors(g, w, pf, &rows, &data_pos));
  if (failed_.load()) return Status::OK();
  detail::CrashPoint("warm: entry written, not renamed");
  HCT_RETURN_IF_ERROR(w.Finish());
  detail::CrashPoint("warm: entry renamed, not committed");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("stat", path, errno);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < data_pos || (size - data_pos) % kEntryAlignment != 0)
    return Status::Internal(path + ": entry data section is not 4096-aligned");

  std::string old_path;
  bool dropped = false;
  HCT_RETURN_IF_ERROR(Commit(g, rel, size, size - data_pos, rows, &old_path, &dropped));
  if (dropped) {
    ::unlink(path.c_str());
    return Status::OK();
  }
  detail::CrashPoint("warm: committed, old entry not removed");
  if (!old_path.empty() && old_path != rel) {
    // The index no longer names the old file; a reader may still lease it (gc removes it).
    auto old_abs = c_.EntryAbs(old_path);  // never a file outside entries/
    auto lk = old_abs.ok() ? FileLock::Acquire(*old_abs, true, false, /*create=*/false)
                           : Result<FileLock>(old_abs.status());
    if (lk.ok()) ::unlink(old_abs->c_str());
  }
  std::lock_guard lk(rep_mu_);
  rep_.entries_written++;
  rep_.tensors_written += rows.size();
  rep_.bytes_written += size;
  return Status::OK();
}

Status Warmer::Commit(const Group& g, const std::string& rel, uint64_t size,
                      uint64_t data_offset, const std::vector<TensorRow>& rows,
                      std::string* old_path, bool* dropped) {
  const detail::SourceFile& sf = src_->files()[g.file];
  std::lock_guard lk(c_.db_mu);
  Txn txn(c_.db.get());
  HCT_RETURN_IF_ERROR(txn.Begin());
  int64_t last_access = 0, access_count = 0, old_id = 0;
  {
    HCT_ASSIGN_OR_RETURN(Stmt o,
                         c_.db->Prepare("SELECT id, path, last_access, access_count FROM files "
                                        "WHERE model_id = ?1 AND group_key = ?2"));
    HCT_ASSIGN_OR_RETURN(bool row, o.Bind(1, model_id_).Bind(2, g.key).Step());
    if (row) {
      old_id = o.Int(0);
      *old_path = o.Text(1);
      last_access = o.Int(2);
      access_count = o.Int(3);
    }
  }
  if (!old_id && !only_groups_.empty()) {
    // Repairing, but an evict removed the entry after the scan above: keep it removed (the
    // check is in the commit transaction, so it cannot race with the evict's row delete).
    *dropped = true;
    return Status::OK();  // rolled back
  }
  if (old_id) {
    HCT_ASSIGN_OR_RETURN(Stmt d, c_.db->Prepare("DELETE FROM files WHERE id = ?1"));
    HCT_RETURN_IF_ERROR(d.Bind(1, old_id).Run());
  }
  detail::CrashPoint("warm: inside the commit transaction");
  HCT_ASSIGN_OR_RETURN(
      Stmt f,
      c_.db->Prepare(
          "INSERT INTO files(model_id, path, group_key, source_file, source_size, "
          "source_mtime_ns, layer, size, data_offset, pinned, warmed_at, last_access, "
          "access_count) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"));
  HCT_RETURN_IF_ERROR(f.Bind(1, model_id_)
                          .Bind(2, rel)
                          .Bind(3, g.key)
                          .Bind(4, sf.path)
                          .Bind(5, detail::U64ToI64(sf.size))
                          .Bind(6, sf.mtime_ns)
                          .Bind(7, g.layer)
                          .Bind(8, detail::U64ToI64(size))
                          .Bind(9, detail::U64ToI64(data_offset))
                          .Bind(10, int64_t{model_pinned_})
                          .Bind(11, detail::NowMillis())
                          .Bind(12, last_access)
                          .Bind(13, access_count)
                          .Run());
  HCT_RETURN_IF_ERROR(
      InsertTensorRows(sqlite3_last_insert_rowid(c_.db->raw()), g, data_offset, rows));
  return txn.Commit();
}

Status Warmer::InsertTensorRows(int64_t file_id, const Group& g, uint64_t data_offset,
                                const std::vector<TensorRow>& rows) {
  HCT_ASSIGN_OR_RETURN(Stmt dt,
                       c_.db->Prepare("DELETE FROM tensors WHERE model_id = ?1 AND name = ?2"));
  HCT_ASSIGN_OR_RETURN(
      Stmt it,
      c_.db->Prepare(
          "INSERT INTO tensors(file_id, model_id, name, dtype, shape, offset, length, xxh3, "
          "source_xxh3, source_length, ord, layer, block_xxh3) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"));
  for (size_t k = 0; k < rows.size(); ++k) {
    const TensorRow& r = rows[k];
    HCT_RETURN_IF_ERROR(dt.Bind(1, model_id_).Bind(2, r.t->name).Run());
    HCT_RETURN_IF_ERROR(it.Bind(1, file_id)
                            .Bind(2, model_id_)
                            .Bind(3, r.t->name)
                            .Bind(4, DTypeName(r.t->dtype))
                            .Bind(5, ShapeJson(r.t->shape))
                            .Bind(6, detail::U64ToI64(data_offset + r.offset))
                            .Bind(7, detail::U64ToI64(r.t->nbytes))
                            .Bind(8, detail::U64ToI64(r.xxh3))
                            .Bind(9, detail::U64ToI64(r.source_xxh3))
                            .Bind(10, detail::U64ToI64(r.t->source_length))
                            .Bind(11, static_cast<int64_t>(k))
                            .Bind(12, g.layer ? g.layer : LayerOfTensor(r.t->name))
                            .BindBlob(13, EncodeU64s(r.blocks).data(), r.blocks.size() * 8)
                            .Run());
  }
  return Status::OK();
}

// Stay within the budget, evicting other models' entries first.
Status Warmer::KeepBudget() {
  if (!only_groups_.empty()) return Status::OK();  // a repair restores, it does not evict others
  std::optional<uint64_t> budget;
  {
    std::lock_guard lk(c_.db_mu);
    HCT_ASSIGN_OR_RETURN(budget, c_.MaxSizeLocked());
  }
  if (!budget) return Status::OK();
  model_lock_.Release();  // evict takes model locks to drop emptied models
  EvictOptions eo;
  eo.max_size = *budget;
  HCT_ASSIGN_OR_RETURN(EvictReport er, c_.EvictImpl(eo, name_));
  for (const auto& e : er.evicted) rep_.evicted.push_back(e.path);
  rep_.over_budget = !er.target_reached;
  return Status::OK();
}

}  // namespace

Result<WarmReport> detail::CacheImpl::WarmImpl(const std::string& source, const WarmOptions& opt,
                                               const std::set<std::string>& only_groups) {
  Warmer w(*this, opt, only_groups);
  return w.Run(source);
}

}  // namespace hct
