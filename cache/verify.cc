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

// One task of --deep: a whole tensor, or one block of a tensor with block checksums (so that one
// large tensor is hashed by every thread).
struct Unit {
  size_t item;
  uint64_t off, len;  // tensor-relative
  int64_t block;      // -1: the whole tensor against xxh3
};

std::string Hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

// XXH3-64 of bytes [offset, offset + length) of fd.
Result<uint64_t> HashRange(int fd, const std::string& path, uint64_t offset, uint64_t length,
                           std::vector<std::byte>& buf) {
  XXH3_state_t* st = XXH3_createState();
  if (!st) return Status::ResourceExhausted("XXH3_createState");
  XXH3_64bits_reset(st);
  uint64_t done = 0;
  while (done < length) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), length - done));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      XXH3_freeState(st);
      if (n == 0) return Status::OutOfRange(path + ": file ends inside a tensor");
      return Status::FromErrno("read", path, errno);
    }
    XXH3_64bits_update(st, buf.data(), static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
  }
  uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
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

// "" when the database passes SQLite's own check (quick_check for a quick verify, the full
// integrity_check for a deep one), else what the check reports (first lines).
Result<std::string> IntegrityProblems(detail::Db* db, VerifyMode mode) {
  HCT_ASSIGN_OR_RETURN(Stmt s, db->Prepare(mode == VerifyMode::kDeep
                                               ? "PRAGMA integrity_check(8)"
                                               : "PRAGMA quick_check(8)"));
  std::string out;
  while (true) {
    auto row = s.Step();
    if (!row.ok()) return "check failed: " + row.status().message();
    if (!*row) break;
    std::string line = s.Text(0);
    if (line == "ok") continue;
    out += (out.empty() ? "" : "; ") + line;
  }
  return out.empty() ? out : (mode == VerifyMode::kDeep ? "integrity_check: " : "quick_check: ") + out;
}

}  // namespace

Result<VerifyReport> Cache::Verify(const VerifyOptions& opt) {
  if (opt.repair) HCT_RETURN_IF_ERROR(impl_->CheckWritable());
  Impl* I = impl_.get();
  auto t0 = std::chrono::steady_clock::now();
  VerifyReport rep;

  struct Ent {
    int64_t id;
    std::string model, rel, group_key, source;
    uint64_t size;
    bool bad = false;
    std::string abs;  // "" when the row's path is not inside entries/
  };
  std::vector<Ent> ents;
  std::vector<Item> items;
  {
    std::lock_guard g(I->db_mu);
    if (!opt.model.empty()) HCT_RETURN_IF_ERROR(I->ModelId(opt.model).status());
    // The database itself first: a flipped bit can rename a tensor and still read back.
    HCT_ASSIGN_OR_RETURN(std::string integrity, IntegrityProblems(I->db.get(), opt.mode));
    if (!integrity.empty())
      rep.problems.push_back({VerifyProblem::kCorrupt, I->IndexPath(), "",
                              "index database " + integrity, ""});
    // Entries and tensors from one read transaction: one consistent snapshot of the index.
    HCT_RETURN_IF_ERROR(I->db->Begin(/*immediate=*/false));
    Status snap = [&]() -> Status {
      HCT_ASSIGN_OR_RETURN(Stmt s, I->db->Prepare(
          "SELECT f.id, m.name, f.path, f.group_key, m.source, f.size FROM files f "
          "JOIN models m ON m.id = f.model_id WHERE ?1 = '' OR m.name = ?1 ORDER BY f.path"));
      s.Bind(1, opt.model);
      std::map<int64_t, size_t> idx;
      while (true) {
        HCT_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        idx[s.Int(0)] = ents.size();
        ents.push_back({s.Int(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4),
                        static_cast<uint64_t>(s.Int(5))});
      }
      HCT_ASSIGN_OR_RETURN(
          Stmt t,
          I->db->Prepare(
              "SELECT t.file_id, t.name, t.offset, t.length, t.xxh3, t.block_xxh3, t.dtype, "
              "t.shape FROM tensors t JOIN files f ON f.id = t.file_id "
              "JOIN models m ON m.id = f.model_id "
              "WHERE ?1 = '' OR m.name = ?1 ORDER BY t.file_id, t.offset"));
      t.Bind(1, opt.model);
      while (true) {
        HCT_ASSIGN_OR_RETURN(bool row, t.Step());
        if (!row) break;
        auto it = idx.find(t.Int(0));
        if (it == idx.end()) continue;
        items.push_back({it->second, t.Text(1), static_cast<uint64_t>(t.Int(2)),
                         static_cast<uint64_t>(t.Int(3)), detail::I64ToU64(t.Int(4)), {},
                         t.Text(6), t.Text(7)});
        Item& item = items.back();
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
    }();
    I->db->Rollback();  // ends the read transaction (nothing was written)
    HCT_RETURN_IF_ERROR(snap);
  }
  rep.entries_checked = ents.size();

  // Problems of an entry count only while the index still lists it: a concurrent evict deletes
  // the row before the file, and a re-warm replaces both, so a file missing for a row that is no
  // longer listed is an entry that went away meanwhile, not a lost one.
  std::mutex mu;
  auto problem = [&](VerifyProblem p, size_t entry) {
    if (entry != SIZE_MAX) {
      auto listed = I->RowListed(ents[entry].id, ents[entry].rel);
      if (listed.ok() && !*listed) return;
    }
    std::lock_guard lk(mu);
    if (entry != SIZE_MAX) {
      if (ents[entry].bad && p.tensor.empty()) return;  // one entry-level problem per entry
      ents[entry].bad = true;
    }
    rep.problems.push_back(std::move(p));
  };
  // Quick: paths, presence and sizes, and every tensor row sane and inside its file.
  for (size_t i = 0; i < ents.size(); ++i) {
    auto abs = I->EntryAbs(ents[i].rel);
    if (!abs.ok()) {
      problem({VerifyProblem::kCorrupt, ents[i].rel, "", abs.status().message(), ""}, i);
      continue;
    }
    ents[i].abs = *abs;
    struct stat st {};
    if (::stat(abs->c_str(), &st) != 0) {
      problem({VerifyProblem::kMissing, *abs, "", "entry file is missing", ""}, i);
      continue;
    }
    if (static_cast<uint64_t>(st.st_size) != ents[i].size)
      problem({VerifyProblem::kCorrupt, *abs, "",
               "size " + std::to_string(st.st_size) + ", index says " +
                   std::to_string(ents[i].size), ""}, i);
  }
  std::vector<DType> dtypes(items.size(), DType::kU8);
  std::vector<std::vector<uint64_t>> shapes(items.size());
  for (size_t k = 0; k < items.size(); ++k) {
    const Item& it = items[k];
    if (ents[it.entry].bad) continue;
    std::string why = CheckRow(it, &dtypes[k], &shapes[k]);
    if (why.empty() && (it.offset > ents[it.entry].size || it.length > ents[it.entry].size - it.offset))
      why = "index range passes the end of the file";
    if (!why.empty())
      problem({VerifyProblem::kCorrupt, ents[it.entry].abs, it.name, why, ""}, it.entry);
  }
  // Deep: each entry file's own header must describe its tensors as the index does (a header
  // edit such as F32 -> I32 leaves the data, and so the checksums, unchanged).
  if (opt.mode == VerifyMode::kDeep) {
    size_t open_entry = SIZE_MAX;
    Result<SafetensorsFile> hdr = Status::NotFound("");
    for (size_t k = 0; k < items.size(); ++k) {
      const Item& it = items[k];
      if (ents[it.entry].bad) continue;
      if (open_entry != it.entry) {
        open_entry = it.entry;
        hdr = SafetensorsFile::Open(ents[it.entry].abs, SafetensorsAccess::kPread);
      }
      std::string why = hdr.ok() ? CheckHeader(*hdr, it, dtypes[k], shapes[k])
                                 : "entry header: " + hdr.status().message();
      if (!why.empty())
        problem({VerifyProblem::kCorrupt, ents[it.entry].abs, hdr.ok() ? it.name : "", why, ""},
                it.entry);
    }
  }

  if (opt.mode == VerifyMode::kDeep) {
    uint64_t total = 0;
    for (const Item& it : items) total += it.length;
    std::vector<Unit> units;
    for (size_t k = 0; k < items.size(); ++k) {
      const Item& it = items[k];
      if (it.blocks.empty()) {
        units.push_back({k, 0, it.length, -1});
        continue;
      }
      for (uint64_t b = 0; b < it.blocks.size(); ++b)
        units.push_back({k, b * kBlockHashBytes,
                         std::min<uint64_t>(kBlockHashBytes, it.length - b * kBlockHashBytes),
                         int64_t(b)});
    }
    std::vector<char> reported(items.size(), 0);  // one problem per tensor (guarded by mu)
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> done_bytes{0};
    int threads = opt.threads > 0 ? opt.threads
                                  : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, std::min<int>(threads, static_cast<int>(units.size())));
    std::mutex prog_mu;
    auto worker = [&] {
      std::vector<std::byte> buf(kReadBlock);
      int fd = -1;
      size_t fd_entry = SIZE_MAX;
      while (true) {
        size_t u = next.fetch_add(1);
        if (u >= units.size()) break;
        const Unit& un = units[u];
        const size_t k = un.item;
        const Item& it = items[k];
        if (ents[it.entry].bad) continue;
        const std::string& abs = ents[it.entry].abs;
        if (fd_entry != it.entry) {
          if (fd >= 0) ::close(fd);
          fd = ::open(abs.c_str(), O_RDONLY | O_CLOEXEC);
          fd_entry = it.entry;
          if (fd >= 0) ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        }
        if (fd < 0) {
          problem({VerifyProblem::kMissing, abs, "", std::string("open: ") + std::strerror(errno), ""},
                  it.entry);
          continue;
        }
        auto h = HashRange(fd, abs, it.offset + un.off, un.len, buf);
        const uint64_t want = un.block < 0 ? it.xxh3 : it.blocks[size_t(un.block)];
        auto report = [&](std::string detail) {
          {
            std::lock_guard lk(mu);
            if (reported[k]) return;
            reported[k] = 1;
          }
          problem({VerifyProblem::kCorrupt, abs, it.name, std::move(detail), ""}, it.entry);
        };
        if (!h.ok()) {
          report(h.status().ToString());
        } else if (*h != want) {
          report((un.block < 0
                      ? std::string()
                      : "block " + std::to_string(un.block) + " (bytes " + std::to_string(un.off) +
                            ".." + std::to_string(un.off + un.len) + "): ") +
                 "XXH3 " + Hex(*h) + ", index says " + Hex(want));
        }
        uint64_t d = done_bytes.fetch_add(un.len) + un.len;
        if (opt.progress) {
          std::lock_guard lk(prog_mu);
          opt.progress(d, total);
        }
      }
      if (fd >= 0) ::close(fd);
    };
    std::vector<std::thread> pool;
    for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    rep.bytes_checked = done_bytes.load();
    rep.tensors_checked = items.size();
  } else {
    rep.tensors_checked = items.size();
  }

  // Orphans and temp files (whole cache only; skipped while a warm runs, as it owns them).
  if (opt.model.empty()) {
    auto wl = detail::FileLock::Acquire(I->WarmLockPath(), true, false, /*create=*/true);
    if (wl.ok()) {
      std::set<std::string> known;
      {
        std::lock_guard g(I->db_mu);
        HCT_ASSIGN_OR_RETURN(Stmt s, I->db->Prepare("SELECT path FROM files"));
        while (true) {
          HCT_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          known.insert(s.Text(0));
        }
      }
      std::error_code ec;
      for (auto it = fs::recursive_directory_iterator(I->EntriesDir(), ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (!it->is_regular_file(ec)) continue;
        std::string rel = fs::relative(it->path(), I->dir, ec).string();
        bool temp = it->path().filename().string().find(detail::kTempMarker) != std::string::npos;
        if (!temp && known.count(rel)) continue;
        if (!StillLinked(it->path().string())) continue;  // an evict was removing it
        problem({temp ? VerifyProblem::kTemp : VerifyProblem::kOrphan, it->path().string(), "",
                 temp ? "leftover of an interrupted warm" : "file not in the index", ""},
                SIZE_MAX);
      }
    }
  }

  if (opt.repair && !rep.problems.empty()) {
    // Bad entries: re-warm their groups from the source when it is still there, else drop them.
    std::map<std::string, std::pair<std::string, std::set<std::string>>> by_model;  // model -> source, groups
    for (const Ent& e : ents)
      if (e.bad) {
        auto& m = by_model[e.model];
        m.first = e.source;
        m.second.insert(e.group_key);
      }
    std::map<std::string, std::string> outcome;  // model -> action
    for (auto& [model, sg] : by_model) {
      std::error_code ec;
      Status st = fs::exists(sg.first, ec)
                      ? [&]() -> Status {
                          WarmOptions wo;
                          wo.force = true;
                          wo.threads = opt.threads;
                          return I->WarmImpl(sg.first, wo, sg.second).status();
                        }()
                      : Status::NotFound(sg.first + ": source is gone");
      if (st.ok()) {
        outcome[model] = "rewarmed";
        continue;
      }
      outcome[model] = "removed from index (" + st.ToString() + ")";
      for (const Ent& e : ents)
        if (e.bad && e.model == model) HCT_RETURN_IF_ERROR(I->DropEntry(e.id, e.rel));
    }
    for (VerifyProblem& p : rep.problems) {
      if (p.kind == VerifyProblem::kOrphan || p.kind == VerifyProblem::kTemp) {
        auto lk = detail::FileLock::Acquire(p.path, true, false, /*create=*/false);
        if (lk.ok() && ::unlink(p.path.c_str()) == 0) p.action = "deleted";
        else p.action = "left (leased or gone)";
        continue;
      }
      for (const Ent& e : ents)
        if ((e.abs.empty() ? e.rel : e.abs) == p.path) p.action = outcome[e.model];
    }
    rep.repaired = true;
    for (const VerifyProblem& p : rep.problems)
      if (p.action.rfind("rewarmed", 0) != 0 && p.action.rfind("removed", 0) != 0 &&
          p.action != "deleted")
        rep.repaired = false;
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace hct
