// runtime/detail/resident.h: the resident files -- raw (safetensors, cache entries) and HCT files
// mmapped and cudaHostRegister'ed (read-only) within ONE resident budget, released least
// recently used first. Raw files: every load one cudaMemcpyAsync per tensor from the mapping,
// each tensor verified the first time it is read from it. HCT files: the compressed loader
// DMAs chunks straight from the mapping (At / Data) and verifies each tensor's chunks once per
// residency (Verified / MarkVerified) (internal).
#pragma once

#include <map>
#include <set>
#include <span>
#include <string>
#include <tuple>

#include "runtime/detail/file_reader.h"
#include "runtime/detail/load_env.h"
#include "runtime/detail/source_planner.h"

namespace hct::detail {

class ResidentFiles {
 public:
  ResidentFiles(const LoadEnv& env, FileTable& files) : env_(env), files_(files) {}
  ~ResidentFiles() { (void)Release(); }
  ResidentFiles(const ResidentFiles&) = delete;
  ResidentFiles& operator=(const ResidentFiles&) = delete;

  // A new load (or Prepare) begins: files used from now on are its own and are not released to
  // make room for others until the next one begins.
  void BeginLoad() { ++tick_; }
  // Maps and registers `path` now, releasing least recently used files of earlier loads (their
  // copies finished first) when it does not fit. ResourceExhausted when it does not fit even
  // then; Internal (with the CUDA error and RLIMIT_MEMLOCK) when registration fails.
  Status Add(const std::string& path);
  bool Has(const std::string& path) const { return map_.count(path) != 0; }
  // Whether loads of `path` are resident, making it so when there is a budget; a refusal is
  // reported in RuntimeStats::resident_fallback (never printed). A file that cannot be mapped or
  // registered, or is larger than the whole budget, is not tried again; one that does not fit
  // beside the files of the current load is tried again on a later load.
  bool Use(const std::string& path);
  // The mapping of a resident file (registered on the GPU path), or null.
  const std::byte* Data(const std::string& path) const;
  // Whether the HCT tensor whose chunks start at `first_chunk_offset` of resident file `path`
  // has been verified in this residency (mark it after checking every chunk).
  bool Verified(const std::string& path, uint64_t first_chunk_offset) const;
  void MarkVerified(const std::string& path, uint64_t first_chunk_offset);
  // Unregisters and unmaps every file (waits for nothing).
  Status Release();
  // Verifies (first time) and copies the reads in `which` (kRange, resident files).
  Status Load(const ReadPlan& plan, std::span<const size_t> which, const Destination& dst);
  uint64_t used() const { return used_; }

 private:
  struct File {
    void* map = nullptr;
    uint64_t size = 0;
    uint64_t map_bytes = 0;  // page-rounded
    bool registered = false;
    uint64_t last_use = 0;  // tick_ of the last load that used it
  };
  const std::byte* At(const PlannedRead& r) const;
  Status Verify(const ReadPlan& plan, std::span<const size_t> which, const Destination& dst);
  Status MakeRoom(const std::string& path, uint64_t bytes);
  Status Unmap(const std::string& path, File& f);
  const LoadEnv& env_;
  FileTable& files_;
  std::map<std::string, File> map_;
  std::set<std::string> refused_;
  // Raw: (path, offset, length) of verified tensors; HCT: (path, first chunk offset, 0).
  std::set<std::tuple<std::string, uint64_t, uint64_t>> verified_;
  uint64_t used_ = 0;
  uint64_t tick_ = 1;
};

}  // namespace hct::detail
