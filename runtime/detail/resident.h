// runtime/detail/resident.h: the resident loader -- files mmapped and cudaHostRegister'ed
// (read-only) once within the resident budget, every load one cudaMemcpyAsync per tensor from
// the mapping; each tensor verified the first time it is read from it (internal).
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

  // Maps and registers `path` now. ResourceExhausted when it does not fit the budget; Internal
  // (with the CUDA error and RLIMIT_MEMLOCK) when registration fails.
  Status Add(const std::string& path);
  bool Has(const std::string& path) const { return map_.count(path) != 0; }
  // Whether loads of `path` are resident, making it so when there is a budget; a refusal is
  // remembered and reported in RuntimeStats::resident_fallback (never printed).
  bool Use(const std::string& path);
  // Unregisters and unmaps every file (waits for nothing).
  Status Release();
  // Verifies (first time) and copies the reads in `which` (kRange, resident files).
  Status Load(const ReadPlan& plan, std::span<const size_t> which, const Destination& dst);

 private:
  struct File {
    void* map = nullptr;
    uint64_t size = 0;
    uint64_t map_bytes = 0;  // page-rounded
    bool registered = false;
  };
  const std::byte* At(const PlannedRead& r) const;
  Status Verify(const ReadPlan& plan, std::span<const size_t> which, const Destination& dst);
  const LoadEnv& env_;
  FileTable& files_;
  std::map<std::string, File> map_;
  std::set<std::string> refused_;
  std::set<std::tuple<std::string, uint64_t, uint64_t>> verified_;
  uint64_t used_ = 0;
};

}  // namespace hct::detail
