// The seam between the cache and what it warms from (internal): "decode a source tensor into
// bytes". Implementations: plain safetensors (file or Hugging Face folder) and HCT models.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hct/codec.h"
#include "hct/dtype.h"
#include "hct/status.h"

namespace hct::detail {

struct SourceFile {
  std::string path;  // absolute
  std::string stem;  // file name without extension, used to name entries
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

struct SourceTensor {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<uint64_t> shape;
  uint64_t nbytes = 0;         // decoded (cached) size
  uint64_t source_length = 0;  // bytes it takes in the source file
  size_t file = 0;             // index into TensorSource::files()
  size_t handle = 0;           // implementation's own index
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual const char* kind() const = 0;  // "safetensors" or "hct"
  const std::string& path() const { return path_; }
  const std::vector<SourceFile>& files() const { return files_; }
  // Source-file order, then byte order within a file.
  const std::vector<SourceTensor>& tensors() const { return tensors_; }
  // Decodes tensor `t` into `out` (out.size() == t.nbytes). Thread-safe. Pieces (chunks, large
  // read ranges) may go through `pf` (empty: serial). Returns the XXH3-64 checksum that
  // identifies the tensor's source form, or nullopt when the source bytes are the decoded bytes
  // (the caller then records the cached checksum as the source checksum).
  virtual Result<std::optional<uint64_t>> Decode(const SourceTensor& t, std::span<std::byte> out,
                                                 const ParallelFor& pf = {}) const = 0;

 protected:
  std::string path_;
  std::vector<SourceFile> files_;
  std::vector<SourceTensor> tensors_;
};

// Opens `path`: a .safetensors file, a folder of them (Hugging Face layout), a .hct file or an
// HCT model folder (hct-convert's output: *.hct + model.hct.index.json, or just *.hct files). NotFound when it holds none of these.
Result<std::unique_ptr<TensorSource>> OpenSource(const std::string& path);

Result<std::unique_ptr<TensorSource>> OpenSafetensorsSource(const std::string& path);
Result<std::unique_ptr<TensorSource>> OpenHctSource(const std::string& path);

// Makes every file's stem unique within its source: the stem names the source file's entries
// and groups, so two files with one stem ("a/model.hct", "b/model.hct") would share them. Later
// files get "<stem>-2", "-3", ... (stable: file order is the source's own order).
void MakeStemsUnique(std::vector<SourceFile>& files);

// Size and modification time (ns) of a file; the cheap "has the source changed" fingerprint.
Status StatFile(const std::string& path, uint64_t* size, int64_t* mtime_ns);

}  // namespace hct::detail
