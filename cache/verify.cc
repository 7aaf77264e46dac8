// Cache::Verify: quick (presence and sizes) or deep (XXH3 of every tensor, in parallel).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include "cache/detail/impl.h"
#include "hct/detail/file.h"
#include "hct/safetensors.h"
#include <nlohmann/json.hpp>

namespace hct {

namespace fs = std::filesystem;
using detail::Stmt;

namespace {

constexpr size_t kReadBlock = 8u << 20;  // large preads keep XXH3 (>10 GB/s) the bottleneck

struct Item {
  size_t entry;  // index into entries
  std::string name;
  uint64_t offset, length, xxh3;
  std::vector<uint64_t> blocks;  // block checksums (kBlockHashBytes), empty when not stored
  std::string dtype, shape;      // as the index stores them
};

// What is wrong with a tensor row on its own (dtype, shape and length agree), "" when nothing.
// The parsed dtype and shape go to *dt / *shape.
std::string CheckRow(const Item& it, DType* dt, std::vector<uint64_t>* shape) {
  auto d = ParseDType(it.dtype);
  if (!d) return "index dtype '" + it.dtype + "' is not a dtype";
  auto js = nlohmann::json::parse(it.shape, nullptr, /*allow_exceptions=*/false);
  if (!js.is_array()) return "index shape '" + it.shape + "' is not a list";
  shape->clear();
  for (const auto& v : js) {
    if (!v.is_number_unsigned()) return "index shape '" + it.shape + "' is not a list of sizes";
    shape->push_back(v.get<uint64_t>());
  }
  auto n = ElementCount(*shape);
  auto bytes = n ? DTypeBytes(*d, *n) : std::nullopt;
  if (!bytes || *bytes != it.length)
    return "index length " + std::to_string(it.length) + " does not match " + it.dtype + " " +
           it.shape;
  *dt = *d;
  return "";
}

// Does the entry file's own safetensors header describe `it` as the index does? "" when so.
std::string CheckHeader(const SafetensorsFile& f, const Item& it, DType dt,
                        const std::vector<uint64_t>& shape) {
  const TensorInfo* h = f.Find(it.name);
  if (!h) return "entry header does not list the tensor";
  if (h->dtype != dt)
    return std::string("entry header says dtype ") + std::string(DTypeName(h->dtype)) +
           ", index says " + it.dtype;
  if (h->shape != shape) return "entry header shape differs from the index's " + it.shape;
  if (f.file_offset(*h) != it.offset || h->num_bytes() != it.length)
    return "entry header places it at " + std::to_string(f.file_offset(*h)) + "+" +
           std::to_string(h->num_bytes()) + ", index says " + std::to_string(it.offset) + "+" +
           std::to_string(it.length);
  return "";
}

std::string Hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

// XXH3-64 of bytes [offset, offset + length) of fd, and into *blocks the XXH3-64 of each
// kBlockHashBytes block of them (counted from `offset`) when `want_blocks`. One pass: the whole
// checksum (the tensor's identity, tensors.xxh3) and the block checksums readers verify are both
// checked against the same bytes.
Result<uint64_t> HashRange(int fd, const std::string& path, uint64_t offset, uint64_t length,
                           std::vector<std::byte>& buf, bool want_blocks,
                           std::vector<uint64_t>* blocks) {
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> whole(XXH3_createState(),
                                                                  &XXH3_freeState);
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> block(XXH3_createState(),
                                                                  &XXH3_freeState);
  if (!whole || !block) return Status::ResourceExhausted("XXH3_createState");
  XXH3_64bits_reset(whole.get());
  XXH3_64bits_reset(block.get());
  blocks->clear();
  uint64_t done = 0;
  while (done < length) {
    const uint64_t in_block = kBlockHashBytes - done % kBlockHashBytes;
    size_t want = static_cast<size_t>(std::min<uint64_t>({buf.size(), length - done, in_block}));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) return Status::OutOfRange(path + ": file ends inside a tensor");
      return Status::FromErrno("read", path, errno);
    }
    XXH3_64bits_update(whole.get(), buf.data(), static_cast<size_t>(n));
    if (want_blocks) XXH3_64bits_update(block.get(), buf.data(), static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
    if (want_blocks && (done % kBlockHashBytes == 0 || done == length)) {
      blocks->push_back(XXH3_64bits_digest(block.get()));
      XXH3_64bits_reset(block.get());
    }
  }
  return XXH3_64bits_digest(whole.get());
}

// An unlisted file in entries/ may be one an evict is deleting right now (it deletes the row,
// then the file, holding the file's exclusive lock throughout): wait for a shared lock, then see
// whether the file is still there. False when it is gone.
bool StillLinked(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;
  int rc;
  do {
    rc = ::flock(fd, LOCK_SH);
  } while (rc != 0 && errno == EINTR);
  struct stat st {};
  bool linked = ::fstat(fd, &st) != 0 || st.st_nlink > 0;
  ::close(fd);
  return linked;
}

// "" when the database passes SQLite's own check, else what the check reports (first lines).
Result<std::string> IntegrityProblems(detail::Db* db) {
  // quick_check skips the comparison of indexes with their tables, which is exactly what a
  // flipped bit in a tensor name breaks ("row 1 missing from index tensors_by_name"): both
  // modes run the full integrity_check (a few ms for an index of 100k tensors).
  HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare("PRAGMA integrity_check(8)"));
  std::string out;
  while (true) {
    auto row = s.Step();
    if (!row.ok()) return "check failed: " + row.status().message();
    if (!*row) break;
    std::string line = s.Text(0);
    if (line == "ok") continue;
    out += (out.empty() ? "" : "; ") + line;
  }
  return out.empty() ? out : "integrity_check: " + out;
}

// One verification: the steps of Cache::Verify, each a method.
class Verifier {
 public:
  Verifier(detail::CacheImpl& c, const VerifyOptions& opt) : c_(c), opt_(opt) {}
  Result<VerifyReport> Run();

 private:
  struct Ent {
    int64_t id;
    std::string model, rel, group_key, source;
    uint64_t size;
    bool bad = false;
    uint64_t tensors = 0;  // rows of the index for this entry
    std::string abs;       // "" when the row's path is not inside entries/
  };
  // Entries and tensors from one read transaction: one consistent snapshot of the index.
  Status Snapshot();
  Status ReadEntries(std::map<int64_t, size_t>* idx);
  Status ReadTensors(const std::map<int64_t, size_t>& idx);
  // Problems of an entry count only while the index still lists it: a concurrent evict deletes
  // the row before the file, and a re-warm replaces both, so a file missing for a row that is
  // no longer listed is an entry that went away meanwhile, not a lost one.
  void Problem(VerifyProblem p, size_t entry);
  void CheckFiles();    // paths, presence and sizes
  void CheckRows();     // every tensor row sane and inside its file
  void CheckHeaders();  // deep: each entry file's header describes its tensors as the index does
  void HashAll();       // deep: every tensor's bytes against xxh3 and its block checksums
  void HashOne(size_t k, int* fd, size_t* fd_entry, std::vector<std::byte>& buf);
  Status ScanOrphans();
  Status Repair();

  detail::CacheImpl& c_;
  const VerifyOptions& opt_;
  VerifyReport rep_;
  std::vector<Ent> ents_;
  std::vector<Item> items_;
  std::vector<DType> dtypes_;
  std::vector<std::vector<uint64_t>> shapes_;
  std::mutex mu_;
  std::atomic<uint64_t> done_bytes_{0};
  uint64_t total_bytes_ = 0;
  std::mutex prog_mu_;
};

Result<VerifyReport> Verifier::Run() {
  auto t0 = std::chrono::steady_clock::now();
  HCT_RETURN_IF_ERROR(Snapshot());
  rep_.entries_checked = ents_.size();
  rep_.tensors_checked = items_.size();
  CheckFiles();
  CheckRows();
  if (opt_.mode == VerifyMode::kDeep) {
    CheckHeaders();
    HashAll();
  }
  // Orphans and temp files (whole cache only; skipped while a warm runs, as it owns them).
  if (opt_.model.empty()) HCT_RETURN_IF_ERROR(ScanOrphans());
  if (opt_.repair && !rep_.problems.empty()) HCT_RETURN_IF_ERROR(Repair());
  rep_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return std::move(rep_);
}

Status Verifier::Snapshot() {
  std::lock_guard g(c_.db_mu);
  if (!opt_.model.empty()) HCT_RETURN_IF_ERROR(c_.ModelId(opt_.model).status());
  // The database itself first: a flipped bit can rename a tensor and still read back.
  HCT_ASSIGN_OR_RETURN(std::string integrity, IntegrityProblems(c_.db.get()));
  if (!integrity.empty())
    rep_.problems.push_back({VerifyProblem::kCorrupt, c_.IndexPath(), "",
                             "index database " + integrity, ""});
  HCT_RETURN_IF_ERROR(c_.db->Begin(/*immediate=*/false));
  std::map<int64_t, size_t> idx;
  Status snap = ReadEntries(&idx);
  if (snap.ok()) snap = ReadTensors(idx);
  c_.db->Rollback();  // ends the read transaction (nothing was written)
  return snap;
}

Status Verifier::ReadEntries(std::map<int64_t, size_t>* idx) {
  HCT_ASSIGN_OR_RETURN(Stmt s, c_.db->Prepare(
      "SELECT f.id, m.name, f.path, f.group_key, m.source, f.size FROM files f "
      "JOIN models m ON m.id = f.model_id WHERE ?1 = '' OR m.name = ?1 ORDER BY f.path"));
  s.Bind(1, opt_.model);
  while (true) {
    HCT_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    (*idx)[s.Int(0)] = ents_.size();
    ents_.push_back({s.Int(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4),
                     static_cast<uint64_t>(s.Int(5))});
  }
  return Status::OK();
}

Status Verifier::ReadTensors(const std::map<int64_t, size_t>& idx) {
  HCT_ASSIGN_OR_RETURN(
      Stmt t,
      c_.db->Prepare(
          "SELECT t.file_id, t.name, t.offset, t.length, t.xxh3, t.block_xxh3, t.dtype, "
          "t.shape FROM tensors t JOIN files f ON f.id = t.file_id "
          "JOIN models m ON m.id = f.model_id "
          "WHERE ?1 = '' OR m.name = ?1 ORDER BY t.file_id, t.offset"));
  t.Bind(1, opt_.model);
  while (true) {
    HCT_ASSIGN_OR_RETURN(bool row, t.Step());
    if (!row) break;
    auto it = idx.find(t.Int(0));
    if (it == idx.end()) continue;
    ents_[it->second].tensors++;
    items_.push_back({it->second, t.Text(1), static_cast<uint64_t>(t.Int(2)),
                      static_cast<uint64_t>(t.Int(3)), detail::I64ToU64(t.Int(4)), {},
                      t.Text(6), t.Text(7)});
    Item& item = items_.back();
    std::string_view blob = t.Blob(5);
    if (!blob.empty() &&
        blob.size() == (item.length + kBlockHashBytes - 1) / kBlockHashBytes * 8) {
      item.blocks.resize(blob.size() / 8);
      for (size_t i = 0; i < item.blocks.size(); ++i)
        for (int b = 7; b >= 0; --b)
          item.blocks[i] = (item.blocks[i] << 8) | uint8_t(blob[i * 8 + size_t(b)]);
    }
  }
  return Status::OK();
}

void Verifier::Problem(VerifyProblem p, size_t entry) {
  if (entry != SIZE_MAX) {
    auto listed = c_.RowListed(ents_[entry].id, ents_[entry].rel);
    if (listed.ok() && !*listed) return;
  }
  std::lock_guard lk(mu_);
  if (entry != SIZE_MAX) {
    if (ents_[entry].bad && p.tensor.empty()) return;  // one entry-level problem per entry
    ents_[entry].bad = true;
  }
  rep_.problems.push_back(std::move(p));
}

void Verifier::CheckFiles() {
  for (size_t i = 0; i < ents_.size(); ++i) {
    auto abs = c_.EntryAbs(ents_[i].rel);
    if (!abs.ok()) {
      Problem({VerifyProblem::kCorrupt, ents_[i].rel, "", abs.status().message(), ""}, i);
      continue;
    }
    ents_[i].abs = *abs;
    struct stat st {};
    if (::stat(abs->c_str(), &st) != 0) {
      Problem({VerifyProblem::kMissing, *abs, "", "entry file is missing", ""}, i);
      continue;
    }
    if (static_cast<uint64_t>(st.st_size) != ents_[i].size)
      Problem({VerifyProblem::kCorrupt, *abs, "",
               "size " + std::to_string(st.st_size) + ", index says " +
                   std::to_string(ents_[i].size), ""}, i);
  }
}

void Verifier::CheckRows() {
  dtypes_.assign(items_.size(), DType::kU8);
  shapes_.assign(items_.size(), {});
  for (size_t k = 0; k < items_.size(); ++k) {
    const Item& it = items_[k];
    const Ent& e = ents_[it.entry];
    if (e.bad) continue;
    std::string why = CheckRow(it, &dtypes_[k], &shapes_[k]);
    if (why.empty() && (it.offset > e.size || it.length > e.size - it.offset))
      why = "index range passes the end of the file";
    if (!why.empty()) Problem({VerifyProblem::kCorrupt, e.abs, it.name, why, ""}, it.entry);
  }
}

// A header edit such as F32 -> I32 leaves the data, and so the checksums, unchanged; a tensor
// added to the header only is one the index does not know.
void Verifier::CheckHeaders() {
  size_t open_entry = SIZE_MAX;
  Result<SafetensorsFile> hdr = Status::NotFound("");
  for (size_t k = 0; k < items_.size(); ++k) {
    const Item& it = items_[k];
    const Ent& e = ents_[it.entry];
    if (e.bad) continue;
    std::string why;
    if (open_entry != it.entry) {
      open_entry = it.entry;
      hdr = SafetensorsFile::Open(e.abs, SafetensorsAccess::kPread);
      if (hdr.ok() && hdr->tensors().size() != e.tensors)
        why = "entry header lists " + std::to_string(hdr->tensors().size()) +
              " tensors, the index " + std::to_string(e.tensors);
    }
    if (why.empty())
      why = hdr.ok() ? CheckHeader(*hdr, it, dtypes_[k], shapes_[k])
                     : "entry header: " + hdr.status().message();
    if (!why.empty())
      Problem({VerifyProblem::kCorrupt, e.abs, hdr.ok() ? it.name : "", why, ""}, it.entry);
  }
}

void Verifier::HashOne(size_t k, int* fd, size_t* fd_entry, std::vector<std::byte>& buf) {
  const Item& it = items_[k];
  if (ents_[it.entry].bad) return;
  const std::string& abs = ents_[it.entry].abs;
  if (*fd_entry != it.entry) {
    if (*fd >= 0) ::close(*fd);
    *fd = ::open(abs.c_str(), O_RDONLY | O_CLOEXEC);
    *fd_entry = it.entry;
    if (*fd >= 0) ::posix_fadvise(*fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  if (*fd < 0) {
    Problem({VerifyProblem::kMissing, abs, "", std::string("open: ") + std::strerror(errno), ""},
            it.entry);
    return;
  }
  std::vector<uint64_t> blocks;
  auto h = HashRange(*fd, abs, it.offset, it.length, buf, !it.blocks.empty(), &blocks);
  // The first bad block names where the bytes changed; with every block right, a wrong whole
  // checksum is an index whose identity of the tensor is wrong.
  std::string why;
  if (!h.ok()) why = h.status().ToString();
  for (size_t b = 0; h.ok() && b < it.blocks.size() && why.empty(); ++b)
    if (blocks[b] != it.blocks[b])
      why = "block " + std::to_string(b) + " (bytes " + std::to_string(b * kBlockHashBytes) +
            ".." + std::to_string(std::min<uint64_t>((b + 1) * kBlockHashBytes, it.length)) +
            "): XXH3 " + Hex(blocks[b]) + ", index says " + Hex(it.blocks[b]);
  if (h.ok() && why.empty() && *h != it.xxh3)
    why = "XXH3 " + Hex(*h) + ", index says " + Hex(it.xxh3);
  if (!why.empty()) Problem({VerifyProblem::kCorrupt, abs, it.name, std::move(why), ""}, it.entry);
  uint64_t d = done_bytes_.fetch_add(it.length) + it.length;
  if (opt_.progress) {
    std::lock_guard lk(prog_mu_);
    opt_.progress(d, total_bytes_);
  }
}

void Verifier::HashAll() {
  for (const Item& it : items_) total_bytes_ += it.length;
  std::atomic<size_t> next{0};
  int threads = opt_.threads > 0
                    ? opt_.threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::max(1, std::min<int>(threads, static_cast<int>(items_.size())));
  auto worker = [&] {
    std::vector<std::byte> buf(kReadBlock);
    int fd = -1;
    size_t fd_entry = SIZE_MAX;
    for (size_t k; (k = next.fetch_add(1)) < items_.size();) HashOne(k, &fd, &fd_entry, buf);
    if (fd >= 0) ::close(fd);
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  rep_.bytes_checked = done_bytes_.load();
}

Status Verifier::ScanOrphans() {
  auto wl = detail::FileLock::Acquire(c_.WarmLockPath(), true, false, /*create=*/true);
  if (!wl.ok()) return Status::OK();
  std::set<std::string> known;
  {
    std::lock_guard g(c_.db_mu);
    HCT_ASSIGN_OR_RETURN(Stmt s, c_.db->Prepare("SELECT path FROM files"));
    while (true) {
      HCT_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      known.insert(s.Text(0));
    }
  }
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(c_.EntriesDir(), ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::string rel = fs::relative(it->path(), c_.dir, ec).string();
    bool temp = it->path().filename().string().find(detail::kTempMarker) != std::string::npos;
    if (!temp && known.count(rel)) continue;
    if (!StillLinked(it->path().string())) continue;  // an evict was removing it
    Problem({temp ? VerifyProblem::kTemp : VerifyProblem::kOrphan, it->path().string(), "",
             temp ? "leftover of an interrupted warm" : "file not in the index", ""},
            SIZE_MAX);
  }
  return Status::OK();
}

// Bad entries: re-warm their groups from the source when it is still there, else drop them;
// orphans and temp files are deleted.
Status Verifier::Repair() {
  std::map<std::string, std::pair<std::string, std::set<std::string>>> by_model;  // source, groups
  for (const Ent& e : ents_)
    if (e.bad) {
      auto& m = by_model[e.model];
      m.first = e.source;
      m.second.insert(e.group_key);
    }
  std::map<std::string, std::string> outcome;  // model -> action
  for (auto& [model, sg] : by_model) {
    std::error_code ec;
    Status st = Status::NotFound(sg.first + ": source is gone");
    if (fs::exists(sg.first, ec)) {
      WarmOptions wo;
      wo.force = true;
      wo.threads = opt_.threads;
      st = c_.WarmImpl(sg.first, wo, sg.second).status();
    }
    if (st.ok()) {
      outcome[model] = "rewarmed";
      continue;
    }
    outcome[model] = "removed from index (" + st.ToString() + ")";
    for (const Ent& e : ents_)
      if (e.bad && e.model == model) HCT_RETURN_IF_ERROR(c_.DropEntry(e.id, e.rel));
  }
  for (VerifyProblem& p : rep_.problems) {
    if (p.kind == VerifyProblem::kOrphan || p.kind == VerifyProblem::kTemp) {
      auto lk = detail::FileLock::Acquire(p.path, true, false, /*create=*/false);
      if (lk.ok() && ::unlink(p.path.c_str()) == 0) p.action = "deleted";
      else p.action = "left (leased or gone)";
      continue;
    }
    for (const Ent& e : ents_)
      if ((e.abs.empty() ? e.rel : e.abs) == p.path) p.action = outcome[e.model];
  }
  rep_.repaired = true;
  for (const VerifyProblem& p : rep_.problems)
    if (p.action.rfind("rewarmed", 0) != 0 && p.action.rfind("removed", 0) != 0 &&
        p.action != "deleted")
      rep_.repaired = false;
  return Status::OK();
}

}  // namespace

Result<VerifyReport> Cache::Verify(const VerifyOptions& opt) {
  if (opt.repair) HCT_RETURN_IF_ERROR(impl_->CheckWritable());
  Verifier v(*impl_, opt);
  return v.Run();
}

}  // namespace hct
