// hct/cache.h: the warm cache, decoded tensors on fast local disk indexed by SQLite.
//
// A cache directory holds `index.db` (SQLite, WAL) and `entries/<model>/...safetensors`: standard
// safetensors files whose data section starts at a multiple of 4096 (O_DIRECT-friendly). One
// entry holds the tensors of one source shard that belong to one layer ("layers.N." / "h.N." /
// "blocks.N." / "layer.N." in the name), or the shard's non-layer tensors. See docs/cache.md for
// the on-disk protocol (atomic entry commit, leases, cleanup).
//
// Thread safety: a Cache may be used from several threads; its SQLite connection is serialized
// internally. Several processes may open the same directory at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hct/dtype.h"
#include "hct/status.h"
#include "hct/safetensors.h"  // LayerOfTensor: the one layer rule, in hct::formats
#include "hct/units.h"  // ParseSize: the one size parser, in hct::formats

namespace hct {

namespace detail {
struct CacheImpl;  // cache/detail/impl.h (internal)
}  // namespace detail

// Where the cache lives: `flag` when not empty, else $HCT_CACHE_DIR, else $XDG_CACHE_HOME/hct,
// else $HOME/.cache/hct. InvalidArgument when none of them can be determined.
Result<std::string> ResolveCacheDir(const std::string& flag);

// 1536 -> "1.5K"; the inverse of ParseSize up to rounding.
std::string FormatSize(uint64_t bytes);

// Block checksums: XXH3-64 of each kBlockHashBytes block of a tensor's bytes, counted from the
// tensor's first byte (the last block may be shorter; an empty tensor has none). Stored per tensor
// at warm time so that readers verify pieces of a tensor in parallel (docs/cache.md).
inline constexpr uint64_t kBlockHashBytes = 8ull << 20;
std::vector<uint64_t> BlockXxh3(std::span<const std::byte> bytes,
                                uint64_t block_bytes = kBlockHashBytes);

// Where one cached tensor is: bytes [offset, offset+length) of `path` (offset is from the start of
// the file), as dtype/shape, with the XXH3-64 of exactly those bytes.
struct TensorLocation {
  int64_t tensor_id = 0;
  int64_t entry_id = 0;
  std::string model;
  std::string name;
  std::string path;  // absolute path of the entry file
  uint64_t offset = 0;
  uint64_t length = 0;
  DType dtype = DType::kU8;
  std::vector<uint64_t> shape;
  uint64_t xxh3 = 0;
  // Identifies the source form: for safetensors sources the source bytes' XXH3-64 (== xxh3); for
  // HCT sources the container's tensor checksum (TensorEntry::decoded_xxh3).
  uint64_t source_xxh3 = 0;
  std::optional<int> layer;
  // XXH3-64 of each kBlockHashBytes block (BlockXxh3); empty for rows warmed before schema 3.
  std::vector<uint64_t> block_xxh3;
};

struct ModelInfo {
  std::string name;         // unique within the cache (basename of the source, deduplicated)
  std::string source;       // absolute path of the source file or folder
  std::string source_kind;  // "safetensors" or "hct"
  bool pinned = false;
  uint64_t entries = 0;
  uint64_t tensors = 0;
  uint64_t bytes = 0;          // cached bytes (entry file sizes)
  uint64_t access_count = 0;   // sum over its tensors
  int64_t last_access = 0;     // unix seconds, 0 = never
  int64_t warmed_at = 0;       // unix seconds of the newest entry
};

struct EntryInfo {
  int64_t id = 0;
  std::string model;
  std::string path;
  std::string source_file;
  std::optional<int> layer;  // nullopt: the shard's non-layer tensors
  uint64_t size = 0;
  uint64_t tensors = 0;
  bool pinned = false;
  int64_t warmed_at = 0;
  int64_t last_access = 0;
  uint64_t access_count = 0;
};

struct CacheStats {
  std::string dir;
  uint64_t models = 0, entries = 0, tensors = 0, bytes = 0;
  uint64_t pinned_bytes = 0;
  uint64_t access_count = 0;
  std::optional<uint64_t> max_size;  // budget from `config`, nullopt: unlimited
  int schema_version = 0;
};

struct OpenOptions {
  bool read_only = false;  // no writes at all: no cleanup, no access stats
  bool cleanup = true;     // on open: remove leftovers of interrupted warms, drop dangling rows
  int busy_timeout_ms = 10000;
};

// What Open's cleanup did (also what `gc` did).
struct CleanupReport {
  std::vector<std::string> temp_files_removed;
  std::vector<std::string> orphans_removed;       // entry files that no index row names
  std::vector<std::string> dangling_rows_dropped; // entry rows whose file was missing
  bool skipped_busy = false;  // a warm was running in another process: leftovers left alone
};

struct WarmProgress {
  uint64_t done_bytes = 0, total_bytes = 0;
  uint64_t done_tensors = 0, total_tensors = 0;
  std::string current;  // a tensor name
};

struct WarmOptions {
  std::string tensors;     // glob over tensor names ('*', '?', '[...]'); empty = all
  int threads = 0;         // 0 = hardware concurrency
  bool force = false;      // rewrite entries that are already warm
  std::string model_name;  // empty: derived from the source path
  std::function<void(const WarmProgress&)> progress;  // called from worker threads, serialized
};

struct WarmReport {
  std::string model;
  uint64_t entries_written = 0, entries_skipped = 0;
  uint64_t tensors_written = 0, tensors_skipped = 0;
  uint64_t bytes_written = 0;
  double seconds = 0;
  std::vector<std::string> evicted;  // entries evicted to stay within the budget
  bool over_budget = false;          // still above max_size after eviction
};

enum class VerifyMode { kQuick, kDeep };

struct VerifyOptions {
  std::string model;  // empty: all models
  VerifyMode mode = VerifyMode::kQuick;
  bool repair = false;
  int threads = 0;
  std::function<void(uint64_t done_bytes, uint64_t total_bytes)> progress;
};

struct VerifyProblem {
  enum Kind { kMissing, kCorrupt, kOrphan, kTemp };
  Kind kind;
  std::string path;    // the entry file (or orphan)
  std::string tensor;  // for kCorrupt on a tensor
  std::string detail;
  std::string action;  // with repair: "rewarmed", "removed from index", "deleted", or a failure
};

struct VerifyReport {
  uint64_t entries_checked = 0, tensors_checked = 0, bytes_checked = 0;
  double seconds = 0;
  std::vector<VerifyProblem> problems;
  bool ok() const { return problems.empty(); }
  bool repaired = false;  // every problem was repaired
};

struct EvictOptions {
  std::optional<uint64_t> max_size;  // evict LRU entries until the total is <= max_size
  std::string model;                 // evict this model's entries
  bool all = false;                  // evict every unpinned entry
  bool dry_run = false;
};

struct EvictReport {
  std::vector<EntryInfo> evicted;   // (would be) evicted, LRU first
  std::vector<std::string> leased;  // skipped: a reader holds a lease
  uint64_t pinned_skipped = 0;
  uint64_t bytes_freed = 0;
  uint64_t bytes_after = 0;
  bool target_reached = true;
};

// A shared lock on an entry file: while it is held, evict never deletes that file (see
// docs/cache.md). Read through fd(): it refers to the exact file the lease protects.
class Lease {
 public:
  // Opens `path`, takes flock(LOCK_SH) and checks that `path` still names the locked file (an
  // evict or re-warm may have replaced it). NotFound when the entry is gone.
  static Result<Lease> Acquire(const std::string& path);
  Lease() = default;
  Lease(Lease&& o) noexcept;
  Lease& operator=(Lease&& o) noexcept;
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  bool held() const { return fd_ >= 0; }
  void Release();

 private:
  int fd_ = -1;
  std::string path_;
};

class Cache {
 public:
  // Opens (creating when needed, unless read_only) the cache in `dir`. Clear errors: an
  // unwritable directory is IOError naming it; a file that is not an SQLite index is Corruption;
  // an index from a newer version is Unsupported.
  static Result<std::unique_ptr<Cache>> Open(const std::string& dir, const OpenOptions& opt = {});
  ~Cache();  // flushes recorded accesses
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  const std::string& dir() const;
  const CleanupReport& open_report() const;

  // Decodes SOURCE (a safetensors file, a Hugging Face folder of them, or an HCT model) into
  // entries. Skips entries that are already warm and whose source is unchanged.
  Result<WarmReport> Warm(const std::string& source, const WarmOptions& opt = {});
  Result<VerifyReport> Verify(const VerifyOptions& opt = {});
  Result<EvictReport> Evict(const EvictOptions& opt);
  // Removes orphan entry files and temp leftovers (when no warm is running).
  Result<CleanupReport> Gc();

  Status Pin(const std::string& model);
  Status Unpin(const std::string& model);

  Result<std::vector<ModelInfo>> ListModels();
  Result<std::vector<EntryInfo>> ListEntries(const std::string& model = "");
  Result<std::vector<TensorLocation>> ListTensors(const std::string& model = "");
  Result<CacheStats> Stat();

  Status SetMaxSize(std::optional<uint64_t> bytes);
  Result<std::optional<uint64_t>> MaxSize();

  // The runtime's queries (indexed). `model` may be empty when the name is unique in the cache
  // (InvalidArgument when several models have it).
  Result<TensorLocation> LookupTensor(const std::string& model, const std::string& name);
  Result<TensorLocation> LookupTensor(const std::string& name) { return LookupTensor("", name); }
  // Tensors of one layer of `model`, in entry-file order.
  Result<std::vector<TensorLocation>> TensorsOfLayer(const std::string& model, int layer);

  Result<Lease> LeaseEntry(const TensorLocation& t) { return Lease::Acquire(t.path); }

  // Counts one read of a tensor. Cheap (in memory, no I/O); counts reach the index in one
  // transaction by FlushAccess(), every `flush_interval` at the next RecordAccess, and at close.
  void RecordAccess(int64_t tensor_id);
  Status FlushAccess();

  int schema_version() const;

 private:
  explicit Cache(std::unique_ptr<detail::CacheImpl> impl);
  std::unique_ptr<detail::CacheImpl> impl_;
};

}  // namespace hct
