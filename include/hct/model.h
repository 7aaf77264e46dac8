// hct/model.h: HCT model folders (hct::formats) and the one rule for what kind of model a path
// holds, used by the runtime (hct_open, Catalog::Open), the cache (hct-cache warm) and the
// converter (hct-convert inspect).
//
// DetectModelKind(path):
//   - a regular file is HCT when its name ends in ".hct" or it begins with the HCT magic
//     (docs/hct-format.md §2); any other file is safetensors;
//   - a folder is HCT when it holds model.hct.index.json or any regular *.hct file (symlinks
//     followed), else safetensors when it holds a *.safetensors file, else neither;
//   - a folder with both *.hct and *.safetensors files is HCT: the compressed files win. Such a
//     folder is what one gets by converting into (or copying the .hct files next to) the
//     original shards, and the HCT files are what it was made for; to load the originals, open
//     the .safetensors file itself or a folder without .hct files.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "hct/container.h"
#include "hct/status.h"

namespace hct {

inline constexpr std::string_view kHctModelIndexName = "model.hct.index.json";

enum class ModelKind {
  kNone,         // no such path, or a folder with neither kind of weight file
  kSafetensors,  // a safetensors file or Hugging Face folder (hct::ModelFolder)
  kHct,          // an .hct file or HCT model folder (hct::HctModel)
};
ModelKind DetectModelKind(const std::string& path);

// An HCT model folder (or a single .hct file, as a one-file model).
class HctModel {
 public:
  static Result<HctModel> Open(const std::string& path);

  const std::string& dir() const { return dir_; }
  const std::vector<std::string>& file_names() const { return names_; }  // relative to dir()
  const std::vector<HctFile>& files() const { return files_; }
  // Original shard names ("model-00001-of-00004.safetensors"), parallel to files().
  const std::vector<std::string>& source_names() const { return sources_; }
  // Every non-weight file in dir() (relative, sorted), as for ModelFolder.
  const std::vector<std::string>& other_files() const { return other_files_; }
  // The index's "metadata" object as JSON text ("" without an index or metadata).
  const std::string& index_metadata_json() const { return index_metadata_json_; }
  struct Ref {
    size_t file = 0;
    const TensorEntry* entry = nullptr;
  };
  // All tensors: file order, then the file's order.
  const std::vector<Ref>& tensors() const { return refs_; }
  const Ref* Find(std::string_view name) const;

 private:
  std::string dir_;
  std::vector<std::string> names_, sources_, other_files_;
  std::vector<HctFile> files_;
  std::string index_metadata_json_;
  std::vector<Ref> refs_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

}  // namespace hct
