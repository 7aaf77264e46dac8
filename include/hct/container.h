// hct/container.h: the HCT container file (spec: docs/hct-format.md, man/hct.5).
//
// An HCT file holds many tensors. Each tensor is a codec name, a JSON object of codec
// parameters (kept as its JSON text: the container does not interpret it) and a table of chunks;
// a chunk is opaque stored bytes at a 4096-aligned offset, decodable on its own. The container
// knows one codec itself, "raw" (stored == decoded bytes); the others live in codec/ (hct/codec.h).
//
//   HCT_ASSIGN_OR_RETURN(hct::HctFile f, hct::HctFile::Open("model.hct"));
//   for (const hct::TensorEntry& t : f.tensors())
//     for (size_t i = 0; i < t.chunks.size(); ++i) {
//       std::vector<std::byte> buf(t.chunks[i].stored_size);
//       HCT_RETURN_IF_ERROR(f.ReadChunk(t, i, buf));  // stored bytes, checksum verified
//     }
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hct/dtype.h"
#include "hct/status.h"

namespace hct {

namespace detail {
class ReadFile;  // the open file of HctFile::Open (opaque here)
}  // namespace detail

// Format constants (docs/hct-format.md, "Byte layout").
inline constexpr uint16_t kHctMajorVersion = 1;
inline constexpr uint16_t kHctMinorVersion = 0;
inline constexpr uint64_t kHctAlignment = 4096;  // chunk offsets and the header size
inline constexpr uint64_t kHctHeaderSize = 4096;
inline constexpr uint64_t kHctFooterSize = 48;
inline constexpr uint64_t kHctMaxIndexSize = 1ull << 30;  // readers refuse larger indexes
// Most bytes one chunk may decode to, and most bytes of its elements: bounds what a decoder
// allocates per chunk whatever a crafted index claims (the reference writer's chunks are MiBs).
inline constexpr uint64_t kHctMaxChunkBytes = 1ull << 32;
inline constexpr unsigned char kHctMagic[8] = {0x89, 'H', 'C', 'T', '\r', '\n', 0x1a, '\n'};
// The codec the container implements itself: stored bytes are the decoded bytes.
inline constexpr std::string_view kRawCodec = "raw";

struct HctVersion {
  uint16_t major = kHctMajorVersion;
  uint16_t minor = kHctMinorVersion;
};

struct ChunkEntry {
  uint64_t offset = 0;        // file offset of the stored bytes; a multiple of 4096
  uint64_t stored_size = 0;   // > 0
  uint64_t xxh3 = 0;          // XXH3-64 (seed 0) of the stored bytes
  uint64_t decoded_size = 0;  // bytes the codec decodes this chunk to
  uint64_t decoded_xxh3 = 0;  // XXH3-64 of those decoded bytes (quantized symbols if lossy)
  uint64_t elem_offset = 0;   // first element covered, row-major
  uint64_t elem_count = 0;    // > 0
};

struct TensorEntry {
  std::string name;
  DType dtype = DType::kU8;        // original dtype (safetensors name in the file)
  std::vector<uint64_t> shape;     // [] is a scalar
  uint64_t num_elements = 0;       // product of shape (checked for overflow)
  std::string codec;               // "raw", "bytesplit-zstd", "dctq-zstd", ...
  // The codec's parameters: the text of a JSON object, compact with its keys sorted ("{}" when
  // there are none). Pass it on to ChunkDecoder::Create.
  std::string codec_params = "{}";
  std::vector<ChunkEntry> chunks;  // in element order, covering [0, num_elements) exactly
  uint64_t decoded_size = 0;       // sum of chunk decoded sizes
  // XXH3-64 of the concatenated little-endian 8-byte decoded_xxh3 of the chunks, in order.
  uint64_t decoded_xxh3 = 0;
  std::map<std::string, std::string> metadata;  // optional per-tensor strings
};

// Tensor-level checksum from chunk decoded checksums (the definition writers and readers share).
uint64_t TensorDecodedXxh3(std::span<const ChunkEntry> chunks);

// A parsed, validated HCT file. Opening reads only the header, footer and index; the index is
// checksummed and every offset, size, alignment and element range checked before use.
class HctFile {
 public:
  // pread-based: reads header + footer + index. The file stays open for ReadChunk.
  static Result<HctFile> Open(const std::string& path);
  // Parses a whole file held in memory (the fuzzer's entry). `bytes` must outlive the result.
  static Result<HctFile> Parse(std::span<const std::byte> bytes, std::string name = "<memory>");

  HctFile(HctFile&&) noexcept;
  HctFile& operator=(HctFile&&) noexcept;
  ~HctFile();

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  HctVersion version() const { return version_; }
  uint64_t index_offset() const { return index_offset_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorEntry* Find(std::string_view name) const;

  // Reads chunk i's stored bytes into dst (dst.size() must equal stored_size) and verifies their
  // XXH3-64: Corruption naming file, tensor and chunk on mismatch.
  Status ReadChunk(const TensorEntry& t, size_t i, std::span<std::byte> dst) const;
  Result<std::vector<std::byte>> ReadChunk(const TensorEntry& t, size_t i) const;
  // Reads and decodes a whole "raw" tensor into dst (dst.size() == t.decoded_size), checking
  // stored and decoded checksums. Unsupported ("unknown codec 'x'") for any other codec.
  Status ReadRawTensor(const TensorEntry& t, std::span<std::byte> dst) const;
  // Reads every chunk and checks its checksum (and, for raw tensors, the decoded checksums).
  // The index itself was fully verified by Open/Parse.
  Status VerifyData() const;

 private:
  HctFile();
  Status ReadAt(uint64_t offset, std::span<std::byte> dst) const;
  static Result<HctFile> Load(HctFile f);

  std::string path_;
  uint64_t file_size_ = 0;
  std::unique_ptr<detail::ReadFile> file_;  // Open()
  std::span<const std::byte> mem_;          // Parse()
  HctVersion version_;
  uint64_t index_offset_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorEntry> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

// Streams an HCT file: header, then chunks as they come, then index + footer on Finish().
// Writes to a temporary name and renames on Finish(); nothing is left behind on failure.
// Output is a function of the inputs only (byte-identical for identical calls).
//
//   HCT_ASSIGN_OR_RETURN(auto w, HctWriter::Create("m.hct", /*overwrite=*/false));
//   HCT_RETURN_IF_ERROR(w.BeginTensor("w", DType::kBF16, {4096, 4096}, "raw", {}));
//   HCT_RETURN_IF_ERROR(w.AppendChunk(bytes, bytes.size(), XXH3_64bits(...), 0, n));
//   HCT_RETURN_IF_ERROR(w.EndTensor());
//   HCT_RETURN_IF_ERROR(w.Finish());
class HctWriter {
 public:
  static Result<HctWriter> Create(const std::string& path, bool overwrite);
  HctWriter(HctWriter&&) noexcept;
  HctWriter& operator=(HctWriter&&) noexcept;
  ~HctWriter();  // without Finish(), the temporary file is removed

  // File-level strings (source file name and checksum, converter version...). Before Finish().
  Status SetMetadata(std::string key, std::string value);

  // codec_params: the text of a JSON object (EncodedTensor::params); "" is taken as "{}".
  // InvalidArgument when it is not a JSON object. It is written to the index re-serialised
  // (compact, keys sorted), so equal objects give identical files.
  Status BeginTensor(std::string name, DType dtype, std::vector<uint64_t> shape, std::string codec,
                     std::string codec_params = "{}");
  // Appends one chunk at the next 4096 multiple. Chunks come in element order and must be
  // contiguous: elem_offset == the previous chunk's end. For "raw", decoded_size must equal
  // stored.size() (and the dtype's byte size of elem_count) and decoded_xxh3 its XXH3-64.
  Status AppendChunk(std::span<const std::byte> stored, uint64_t decoded_size,
                     uint64_t decoded_xxh3, uint64_t elem_offset, uint64_t elem_count);
  // Convenience for the raw codec: computes the checksums itself.
  Status AppendRawChunk(std::span<const std::byte> bytes, uint64_t elem_offset,
                        uint64_t elem_count);
  // Checks that the chunks cover the tensor exactly; records optional per-tensor strings.
  Status EndTensor(std::map<std::string, std::string> metadata = {});
  // Whole raw tensor in one call, split into chunks of at most chunk_elems elements (0: one).
  Status AddRawTensor(std::string name, DType dtype, std::vector<uint64_t> shape,
                      std::span<const std::byte> data, uint64_t chunk_elems = 0);

  // Writes index + footer, fsyncs and renames into place.
  Status Finish();

  const std::string& path() const;
  uint64_t bytes_written() const;  // so far

 private:
  struct State;
  explicit HctWriter(std::unique_ptr<State> s);
  Status AddRawChunks(DType dtype, std::span<const std::byte> data, uint64_t chunk_elems);
  std::unique_ptr<State> s_;
};

}  // namespace hct
