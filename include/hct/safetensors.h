// hct/safetensors.h: reading and writing safetensors files and Hugging Face model folders.
//
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
// N bytes of UTF-8 JSON (an object: tensor name -> {"dtype", "shape", "data_offsets": [b, e)},
// plus an optional "__metadata__" string->string map), then the data section. Offsets are
// relative to the data section, which starts at 8 + N and must be covered exactly by the tensors
// (no gaps, no overlaps, nothing after the last one).
//
// SafetensorsFile validates all of that on open, so every TensorInfo it hands out is safe to use:
// its byte range lies inside the file and matches shape x dtype. Errors name the file and the
// tensor: "x.safetensors: tensor 'a.weight': data_offsets [0, 10) do not match shape [2,3] x F32
// = 24 bytes".
//
// Error codes: kOutOfRange for sizes or offsets past an end (truncated file, header length past
// the end, offsets past the data section, shape products overflowing 64 bits); kUnsupported for an
// unknown dtype name; kCorruption for everything else malformed (bad JSON, bad header length
// > 100 MB, overlaps, gaps, wrong byte counts, bad metadata, duplicate names).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hct/dtype.h"
#include "hct/status.h"

namespace hct {

// Largest header accepted, as in the reference implementation.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// Product of the dimensions (1 for a scalar shape []); nullopt on 64-bit overflow.
std::optional<uint64_t> ElementCount(std::span<const uint64_t> shape);

// "[2,3]" for error messages and logs.
std::string ShapeString(std::span<const uint64_t> shape);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<uint64_t> shape;
  // Byte range [data_begin, data_end) relative to the start of the data section.
  uint64_t data_begin = 0;
  uint64_t data_end = 0;

  uint64_t num_bytes() const { return data_end - data_begin; }
  // Validated on parse, so this never overflows for a TensorInfo from SafetensorsFile.
  uint64_t num_elements() const { return ElementCount(shape).value_or(0); }
};

enum class SafetensorsAccess {
  kMmap,   // map the whole file; data() gives zero-copy spans. A file truncated while mapped
           // kills the process with SIGBUS on access: tools read with kPread.
  kPread,  // read only the header; tensor bytes come through Read()/ReadAt() (huge files, and
           // later O_DIRECT)
};

class SafetensorsFile {
 public:
  // Opens and validates `path`.
  static Result<SafetensorsFile> Open(const std::string& path,
                                      SafetensorsAccess access = SafetensorsAccess::kMmap);
  // Validates a whole file image held by the caller (no copy: `bytes` must outlive the result).
  // `name` is used in error messages. This is the fuzzing entry point.
  static Result<SafetensorsFile> Parse(std::span<const std::byte> bytes, std::string name);

  SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  // The path (or the name given to Parse).
  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  // N, the JSON header length (including any padding spaces).
  uint64_t header_size() const { return data_offset_ - 8; }
  // Absolute file offset of the data section (8 + N).
  uint64_t data_offset() const { return data_offset_; }
  uint64_t data_size() const { return file_size_ - data_offset_; }

  // Tensors in header (JSON) order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Indices into tensors(), ordered by data_begin (the order of the bytes in the file).
  const std::vector<size_t>& data_order() const { return data_order_; }
  // nullptr when absent.
  const TensorInfo* Find(std::string_view name) const;
  // The "__metadata__" map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Absolute file offset of a tensor's first byte.
  uint64_t file_offset(const TensorInfo& t) const { return data_offset_ + t.data_begin; }
  // Zero-copy view of a tensor's bytes. InvalidArgument when opened with kPread.
  Result<std::span<const std::byte>> data(const TensorInfo& t) const;
  // The whole data section (zero-copy); InvalidArgument when opened with kPread.
  Result<std::span<const std::byte>> data_section() const;
  // Copies dst.size() bytes of tensor `t` starting `offset` bytes into it (pread or memcpy).
  Status ReadAt(const TensorInfo& t, uint64_t offset, std::span<std::byte> dst) const;
  // Copies the whole tensor; dst.size() must equal t.num_bytes().
  Status Read(const TensorInfo& t, std::span<std::byte> dst) const;

 private:
  struct Backing;
  Status ParseHeader(std::span<const std::byte> json);
  Status CheckTensorOwned(const TensorInfo& t) const;

  std::string path_;
  uint64_t file_size_ = 0;
  uint64_t data_offset_ = 8;
  const std::byte* base_ = nullptr;  // whole file image (mmap or caller's buffer); null for pread
  std::unique_ptr<Backing> backing_;
  std::vector<TensorInfo> tensors_;
  std::vector<size_t> data_order_;
  std::map<std::string, size_t, std::less<>> by_name_;
  std::map<std::string, std::string> metadata_;
};

struct SafetensorsWriterOptions {
  // The data section starts at a multiple of this (a power of two >= 8): the JSON header is padded
  // with spaces, as the reference writer does for 8. Use 4096 so the cache can read the data with
  // O_DIRECT. Individual tensors cannot be padded (safetensors forbids gaps), so a tensor's offset
  // is aligned only when the sizes of the tensors before it are multiples of the alignment; callers
  // that want aligned tensors should declare such tensors first.
  uint64_t data_alignment = 8;
  bool overwrite = false;
};

// Streaming writer: declare every tensor (name, dtype, shape) and the metadata, then append the
// data tensor by tensor, in declaration order, in as many pieces as convenient; Finish() commits.
// Memory use is the header only. Writes go through a temporary file renamed on Finish(); if the
// writer is destroyed before, nothing appears at `path`. Declaration order is both the header
// order and the data order.
class SafetensorsWriter {
 public:
  static Result<SafetensorsWriter> Create(const std::string& path,
                                          SafetensorsWriterOptions options = {});
  SafetensorsWriter();
  SafetensorsWriter(SafetensorsWriter&&) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&&) noexcept;
  ~SafetensorsWriter();

  const std::string& path() const;

  // Before the first data is appended.
  Status SetMetadata(std::string key, std::string value);
  Status Declare(std::string name, DType dtype, std::vector<uint64_t> shape);
  // Declared tensors, with their data offsets.
  const std::vector<TensorInfo>& tensors() const;

  // Writes the whole tensor `name`, which must be the next one due.
  Status Write(std::string_view name, std::span<const std::byte> bytes);
  // Appends raw data-section bytes: the next bytes of the current tensor, possibly running into
  // the following ones. Fails when more than the declared total is appended.
  Status Append(std::span<const std::byte> bytes);
  // Checks that all declared bytes were appended, then syncs and renames into place.
  Status Finish();

 private:
  struct Impl;
  Status WriteHeader();
  std::unique_ptr<Impl> impl_;
};

// Writes a whole file from tensors already in memory (declaration order = vector order).
struct TensorData {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<uint64_t> shape;
  std::span<const std::byte> bytes;
};
Status WriteSafetensors(const std::string& path, std::span<const TensorData> tensors,
                        const std::map<std::string, std::string>& metadata = {},
                        SafetensorsWriterOptions options = {});

// A Hugging Face model folder: `model.safetensors`, or shards `model-0000N-of-0000M.safetensors`
// listed by `model.safetensors.index.json` (its "weight_map": tensor -> shard file), or, without
// an index, any *.safetensors files. Open() cross-checks the index against the shards.
// The one layer-numbering rule of the project (cache rows, runtime catalogs, layer streaming):
// the number after the first name component that is "layers", "h", "blocks" or "layer"
// ("model.layers.12.mlp.up_proj.weight" -> 12; "transformer.h.3.layers.5.w" -> 3, the outermost
// block). nullopt when no component matches or the number is missing or over 9 digits.
std::optional<int> LayerOfTensor(std::string_view name);

struct ModelTensor {
  size_t shard = 0;  // index into shards()
  TensorInfo info;
};

class ModelFolder {
 public:
  // `path` is a folder, or a single .safetensors file (then a one-shard model with no other
  // files). Errors: NotFound (no folder, no weights, a shard named by the index missing),
  // Corruption (bad index, tensor in two shards, index naming a tensor not in its shard, shard
  // tensor not in the index), plus any SafetensorsFile::Open error of a shard.
  static Result<ModelFolder> Open(const std::string& path,
                                  SafetensorsAccess access = SafetensorsAccess::kMmap);

  const std::string& dir() const { return dir_; }
  // Path of the index file, empty when there is none.
  const std::string& index_path() const { return index_path_; }
  // Shards sorted by file name.
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // Shard file names relative to dir(), parallel to shards().
  const std::vector<std::string>& shard_names() const { return shard_names_; }
  // All tensors: shard order, then data order within a shard (sequential reads).
  const std::vector<ModelTensor>& tensors() const { return tensors_; }
  const ModelTensor* Find(std::string_view name) const;
  const SafetensorsFile& file(const ModelTensor& t) const { return shards_[t.shard]; }
  // The index's "metadata" object as JSON text ("{}" when absent), e.g. {"total_size": ...}.
  const std::string& index_metadata_json() const { return index_metadata_json_; }
  // Files to copy alongside converted weights (config.json, tokenizer files...): every regular
  // file under dir() (recursively, relative paths, sorted) except the weights and the index;
  // hidden entries (".git", ".cache") are skipped.
  const std::vector<std::string>& other_files() const { return other_files_; }
  // *.safetensors files in dir() that an index exists but does not reference (e.g. a
  // consolidated copy); not loaded, not in other_files().
  const std::vector<std::string>& unreferenced_weight_files() const { return unreferenced_; }

 private:
  std::string dir_, index_path_, index_metadata_json_ = "{}";
  std::vector<SafetensorsFile> shards_;
  std::vector<std::string> shard_names_;
  std::vector<ModelTensor> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
  std::vector<std::string> other_files_, unreferenced_;
};

}  // namespace hct
