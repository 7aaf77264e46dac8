// runtime/detail/source_planner.h: resolves each tensor of a load to what is read -- its byte
// range (a plain file range or a leased cache entry) or its compressed HCT source -- into an
// immutable ReadPlan; and, after a corrupt cache entry, the plan that reads the same tensors
// from their compressed sources (internal).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "hct/runtime.h"
#include "runtime/detail/file_reader.h"
#include "runtime/detail/sources.h"

namespace hct::detail {

enum class ReadKind { kRange, kCompressed };

struct PlannedRead {
  const TensorSpec* spec = nullptr;
  ReadKind kind = ReadKind::kRange;
  const FileRange* range = nullptr;   // kRange: the bytes read
  const HctRef* hct = nullptr;        // kCompressed: the source; kRange: the fallback, or null
  const TensorSource* row = nullptr;  // kRange of a cache row: its access is recorded
  const OpenFile* file = nullptr;     // the file read (opened)
  const std::string& name() const { return spec->name; }
  uint64_t length() const { return spec->length; }
};

struct ReadPlan {
  std::vector<PlannedRead> reads;               // one per spec, in spec order
  std::vector<std::shared_ptr<void>> leases;    // cache entry files, held while loaded
  uint64_t fallbacks = 0;                       // cache rows read from their HCT source
};

class SourcePlanner {
 public:
  explicit SourcePlanner(FileTable& files) : files_(files) {}
  // A cache row whose entry file can be leased, or a plain range: kRange. A cache row whose
  // entry is gone (NotFound) with an HCT source, or an HCT source alone: kCompressed. Checks
  // every spec (shape x dtype = length, the range inside its file) and opens the files.
  Result<ReadPlan> Plan(std::span<const TensorSpec> specs);
  // Whether every read in `which` has a compressed source to fall back on.
  static bool CanFallBack(const ReadPlan& plan, std::span<const size_t> which);
  // `plan` with the reads in `which` on their compressed sources (after a corrupt entry).
  Result<ReadPlan> FallBack(const ReadPlan& plan, std::span<const size_t> which);

 private:
  Result<PlannedRead> Resolve(const TensorSpec& s, std::map<std::string, bool>& leased,
                              ReadPlan& plan);
  Status CheckRead(PlannedRead& r);
  FileTable& files_;
};

}  // namespace hct::detail
