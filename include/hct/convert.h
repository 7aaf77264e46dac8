// hct/convert.h: the conversion pipeline behind `hct-convert` (man/hct-convert.1).
//
// Convert() turns a safetensors file or a Hugging Face model folder into an HCT model folder:
//
//   <out>/model-00001-of-00004.hct     one HCT file per input shard, same stem (grouping 1:1:
//   <out>/model-00002-of-00004.hct     "x.safetensors" -> "x.hct"), tensors in the shard's data
//   ...                                order
//   <out>/model.hct.index.json         tensor -> HCT file, per-file sizes, totals (below)
//   <out>/config.json, tokenizer*...   every non-weight file of the input, copied unchanged
//
// The folder is built as "<out>.tmp.<pid>" and renamed into place when complete (after --verify
// when asked), so <out> either does not exist or is whole. DecodeModel() goes back to a Hugging
// Face folder of safetensors with the same shard names and model.safetensors.index.json.
//
// Memory: input shards are mmap'd and read tensor by tensor (pages dropped after each tensor).
// Tensors larger than one chunk are encoded one at a time, chunks in parallel; smaller tensors
// are encoded several at once (at most `threads` x chunk size of input in flight). The lossy
// encoder holds the tensor being encoded in float twice (8 bytes per element) plus the encoded
// chunks, so peak memory is about threads x chunk x 8 bytes + 10 bytes x the largest tensor's
// elements, independent of the model size.
//
// model.hct.index.json:
//   {"format": "hct-model", "version": 1,
//    "metadata": {"total_size": <decoded bytes>, "total_stored_size": <HCT files' bytes>,
//                 "num_tensors": N, "converter": "hct-convert 0.1.0",
//                 "source_index_metadata": {<the input index's "metadata", if any>}},
//    "files": [{"file": "model-00001-of-00004.hct", "source": "model-00001-of-00004.safetensors",
//               "size": <bytes>, "num_tensors": n, "decoded_size": <bytes>}, ...],
//    "weight_map": {"<tensor>": "model-00001-of-00004.hct", ...}}
// Each HCT file's metadata holds "source_file" and "safetensors_metadata" (the shard's
// "__metadata__" as JSON text), so a decode restores the shard exactly (lossless tensors
// bit-exact, the same header order and metadata).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "hct/codec.h"
#include "hct/container.h"
#include "hct/dtype.h"
#include "hct/model.h"  // HctModel, kHctModelIndexName (hct::formats)
#include "hct/status.h"

namespace hct {

inline constexpr std::string_view kConverterName = "hct-convert 0.1.0";

// The documented default quality target: an average of kDefaultBits bits per weight for each
// lossy tensor (the quantization step is solved per tensor). Measured on kdoc-lm-25m
// (docs/QUALITY.md): 4.13x smaller than BF16 and +0.43% bits per byte, where a uniform error
// target of the same size (--max-error 0.085) cost +1.12%. kDefaultMaxError is the target used
// when --max-error is given without a value elsewhere (e.g. the measurement scripts).
inline constexpr double kDefaultBits = 3.8;
inline constexpr double kDefaultMaxError = 0.085;
// Default symbols (weights) per chunk and zstd level: see man/hct-convert.1.
inline constexpr uint64_t kDefaultChunkElems = 1u << 20;
inline constexpr int kDefaultZstdLevel = 1;

// Progress of a long operation, delivered from the calling thread between tensors.
struct Progress {
  std::string phase;  // "convert", "verify", "decode"
  uint64_t tensors_done = 0, tensors_total = 0;
  uint64_t bytes_done = 0, bytes_total = 0;  // input (convert) or output (decode) bytes
  std::string current;                       // tensor just finished
  double elapsed_s = 0;
};
using ProgressFn = std::function<void(const Progress&)>;

struct ConvertOptions {
  // Lossy knobs (mode, max_error/bits/retention, transform, tile, dead zone). chunk_symbols and
  // zstd_level are overwritten from chunk_elems / zstd_level below.
  LossyOptions lossy = [] {
    LossyOptions o;
    o.mode = RateMode::kBits;
    o.bits = kDefaultBits;
    o.max_error = kDefaultMaxError;
    return o;
  }();
  // Which tensors stay lossless (--lossless, --keep, norms, biases, 1-D, small, non-float).
  PolicyOptions policy;
  uint64_t chunk_elems = kDefaultChunkElems;  // elements per chunk (lossy and lossless)
  int zstd_level = kDefaultZstdLevel;
  // Lossless BF16 tensors: kHuffman = "bf16-huff" (GPU-decoded, the default), kZstd =
  // "bytesplit-zstd".
  Entropy lossless_entropy = LosslessOptions{}.entropy;
  int threads = 0;      // 0: all cores
  bool force = false;   // replace an existing output folder
  bool verify = false;  // decode what was written and check it before the rename
  ProgressFn progress;  // optional
};

struct TensorReport {
  std::string name;
  std::string file;  // HCT file (relative to the output folder)
  DType dtype = DType::kU8;
  std::vector<uint64_t> shape;
  std::string codec;      // "raw", "bytesplit-zstd", "dctq-zstd"
  std::string transform;  // "dct", "none" (dctq-zstd), "" otherwise
  int tile_r = 0, tile_c = 0;
  std::string reason;  // policy: "lossy", "norm", "1-D", "--keep 'x'", ...
  std::string note;    // codec fallback ("lossless: tensor holds NaN or Inf") or ""
  uint64_t input_bytes = 0;
  uint64_t chunks = 0;
  QualityMetrics metrics;  // stored_bytes = chunk payload bytes
  double sum_sq = 0;       // ||x||^2 (float dtypes), for the aggregate error
};

struct ConvertTotals {
  uint64_t tensors = 0, lossy_tensors = 0;
  uint64_t elements = 0;
  uint64_t input_bytes = 0;            // tensor bytes read (safetensors data sections)
  uint64_t stored_bytes = 0;           // chunk payload bytes
  uint64_t output_bytes = 0;           // HCT files on disk (headers, padding and indexes included)
  double ratio = 0;                    // input_bytes / output_bytes
  double bits_per_weight = 0;          // output_bytes * 8 / elements (everything counted)
  double payload_bits_per_weight = 0;  // stored_bytes * 8 / elements
  double lossy_bits_per_weight = 0;    // over lossy tensors' payloads only
  double rel_rms_error = 0;            // sqrt(sum ||x - x_hat||^2 / sum ||x||^2) over float tensors
  double lossy_rel_rms_error = 0;      // the same over the lossy tensors only
  uint64_t auto_dct = 0, auto_none = 0;  // what the lossy tensors ended up with
};

struct ConvertReport {
  std::string input, output;
  std::vector<TensorReport> tensors;  // output order (shard, then data order)
  ConvertTotals totals;
  std::vector<std::string> copied_files;   // relative to input
  std::vector<std::string> skipped_files;  // weight files the input index does not reference
  std::string options_json;  // effective settings (a JSON object as text), for the report
  int threads = 1;
  double seconds = 0;         // whole conversion
  double encode_seconds = 0;  // reading + encoding + writing tensors
  bool verified = false;
};

// Converts `input` (safetensors file or HF folder) into the HCT model folder `output`.
// Errors: AlreadyExists (output exists, no force), InvalidArgument (bad options, output inside
// input), any input error (NotFound/Corruption/OutOfRange/Unsupported naming file and tensor),
// IOError, and Corruption "verification failed" from verify. Nothing is left at `output` (nor a
// temporary folder) on failure.
Result<ConvertReport> Convert(const std::string& input, const std::string& output,
                              const ConvertOptions& options);

// True for the Status of a failed --verify (the CLI's exit code 4).
bool IsVerificationFailure(const Status& s);

// Where `hct-convert --report FILE` may write, checked before converting: never inside (or
// over) the input or the output, never over something that is not a regular file, and over an
// existing file only with `force`. InvalidArgument or AlreadyExists naming FILE otherwise.
Status CheckReportPath(const std::string& report, const std::string& input,
                       const std::string& output, bool force);

struct DecodeOptions {
  int threads = 0;  // 0: all cores
  bool force = false;
  ProgressFn progress;
};
struct DecodeReport {
  std::string input, output;
  uint64_t tensors = 0, input_bytes = 0, output_bytes = 0;
  std::vector<std::string> files;  // safetensors written
  std::vector<std::string> copied_files;
  double seconds = 0;
};
// HCT model folder (or .hct file) -> Hugging Face folder of safetensors, same shard layout,
// model.safetensors.index.json when the source had more than one shard or an index.
Result<DecodeReport> DecodeModel(const std::string& input, const std::string& output,
                                 const DecodeOptions& options);

// Inspect: tensors of an HCT or safetensors file or folder.
struct InspectTensor {
  std::string name, file;
  DType dtype = DType::kU8;
  std::vector<uint64_t> shape;
  std::string codec;  // "safetensors" for safetensors input
  std::string transform;
  uint64_t elements = 0, decoded_bytes = 0, stored_bytes = 0, chunks = 0;
};
struct InspectReport {
  std::string path;
  std::string kind;  // "hct-model", "hct-file", "safetensors"
  std::vector<InspectTensor> tensors;
  std::vector<std::string> files;
  uint64_t decoded_bytes = 0, stored_bytes = 0, file_bytes = 0, elements = 0;
};
Result<InspectReport> Inspect(const std::string& path);

// Text and JSON renderings (the CLI prints these); the JSON ones are indented by 2, no newline.
std::string FormatReportTable(const ConvertReport& r);
std::string ReportToJson(const ConvertReport& r);
std::string FormatInspect(const InspectReport& r);
std::string InspectToJson(const InspectReport& r);
std::string DecodeReportToJson(const DecodeReport& r);

// RTN baselines over the tensors the policy would make lossy (measurements, docs/QUALITY.md):
// aggregate relative RMS error (sqrt of summed squared errors over summed squares) and average
// bits per weight weighted by elements.
struct BaselineReport {
  struct Method {
    std::string key;  // JSON key: "int8", "int4_g128", "int3_g128", "asym_int4_g128", ...
    RtnSpec spec;
    double rel_rms_error = 0, bits_per_weight = 0;
  };
  uint64_t tensors = 0, elements = 0;
  // INT8 per row, symmetric INT4/INT3 g128, asymmetric INT4/INT3 g128, in this order.
  std::vector<Method> methods;
  const Method* Find(std::string_view key) const;
};
Result<BaselineReport> MeasureBaselines(const std::string& input, const PolicyOptions& policy);

// A small LLaMA-like BF16 model folder for demos and tests: config.json, tokenizer.json,
// generation_config.json and `shards` safetensors shards (with an index when shards > 1).
// Deterministic for a given seed. The embedding rows vary smoothly with the token id (as in
// trained models whose vocabulary is ordered), so the DCT has something to find.
struct DemoModelOptions {
  int vocab = 2048, hidden = 256, layers = 4, intermediate = 688, heads = 4, kv_heads = 2;
  int shards = 2;
  uint64_t seed = 1;
  bool force = false;
};
Status WriteDemoModel(const std::string& dir, const DemoModelOptions& options = {});

}  // namespace hct
