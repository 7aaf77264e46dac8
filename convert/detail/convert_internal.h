// Internals shared by the pipeline sources (convert/convert*.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "hct/convert.h"
#include "hct/detail/model_files.h"
#include "hct/status.h"

namespace hct::detail {

// Test hooks of Convert() (not public API; tests call ConvertWithHooks, Convert passes none).
struct ConvertHooks {
  // Called before each tensor is encoded; a non-OK Status aborts the conversion.
  std::function<Status(std::string_view tensor)> before_tensor;
  // Called with the staging folder once everything is written, before --verify.
  std::function<void(const std::string& staging_dir)> before_verify;
};
Result<ConvertReport> ConvertWithHooks(const std::string& input, const std::string& output,
                                       const ConvertOptions& options, const ConvertHooks& hooks);

// 0 -> all cores.
int ResolveThreads(int threads);

// What the reports say of a dctq codec's transform, read from its params (the JSON text of
// EncodedTensor::params / TensorEntry::codec_params): "dct" or "none" and the tile; "" and 0
// when the params hold none (or do not parse: inspect shows what it can of a damaged file).
struct DctqTransform {
  std::string transform;
  int tile_r = 0, tile_c = 0;
};
DctqTransform ParseDctqTransform(std::string_view params_json);

// Seconds since construction.
class Stopwatch {
 public:
  Stopwatch() : t0_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  std::chrono::steady_clock::time_point t0_;
};

// A folder built next to its final name ("<out>.tmp.<pid>") and renamed into place by Commit();
// removed (with everything in it) when destroyed uncommitted.
class StagingDir {
 public:
  // AlreadyExists when `final_path` exists and !force; InvalidArgument for an empty path.
  static Result<StagingDir> Create(const std::string& final_path, bool force);
  StagingDir() = default;
  StagingDir(StagingDir&& o) noexcept;
  StagingDir& operator=(StagingDir&& o) noexcept;
  ~StagingDir();

  const std::string& path() const { return tmp_; }
  const std::string& final_path() const { return final_; }
  // Moves an existing final_path aside (when force), renames, removes the old one, syncs.
  Status Commit();

 private:
  std::string tmp_, final_;
  bool force_ = false, committed_ = true;
};

// InvalidArgument when `output` overlaps `input` (hct/detail/paths.h: OutputOverlapsInput):
// convert and decode never write into, over or around what they read, however it is spelled.
Status CheckOutputOutsideInput(const std::string& input, const std::string& output);

// InvalidArgument when `output` is or holds one of the files dir/rel read (through symlinks: a
// hub-cache snapshot's weights live in ../../blobs/, which `--force` must not replace).
Status CheckOutputHoldsNoInputFile(const std::string& dir, const std::vector<std::string>& rels,
                                   const std::string& output);

// Copies src to dst (creating dst's parent folders) and fsyncs it.
Status CopyFileSynced(const std::string& src, const std::string& dst);

// Writes `text` to `path` (new file, fsynced).
Status WriteTextFile(const std::string& path, std::string_view text);

// Drops the pages of [p, p + n) from this process (file-backed read-only mappings re-read on
// the next access): keeps the resident set of a streamed conversion small.
void DropPages(const void* p, uint64_t n);

}  // namespace hct::detail
