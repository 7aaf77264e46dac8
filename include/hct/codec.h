// hct/codec.h: the HCT codecs on in-memory buffers: encoders, CPU reference decoders, quality
// metrics, the lossless/lossy policy and the RTN baselines (spec: docs/hct-format.md §5).
//
// A tensor is encoded into independently decodable chunks plus one params JSON object (kept as
// its text, the form the container stores: TensorEntry::codec_params):
//
//   HCT_ASSIGN_OR_RETURN(EncodedTensor enc, EncodeTensor({bytes, DType::kBF16, {4096, 4096}}, o));
//   // enc.codec, enc.params, enc.chunks[i].{bytes, decoded_size, decoded_xxh3, elem_offset, ...}
//   HCT_ASSIGN_OR_RETURN(ChunkDecoder dec, ChunkDecoder::Create(enc.codec, enc.params, dtype));
//   HCT_RETURN_IF_ERROR(dec.Decode(chunk.bytes, ChunkMeta(chunk), out_span));  // thread-safe
//
// Codecs: "raw" (stored == original), "bytesplit-zstd" (lossless, byte planes with the exponent
// aligned in one plane), "dctq-zstd" (lossy: tiled DCT-II + uniform quantization + zstd),
// "dctq-huff" (the same symbols, int8 only, in a GPU-decodable canonical Huffman code),
// "bf16-huff" (lossless BF16: the exponent plane in that Huffman code, sign + mantissa raw).
// Nothing here depends on the container: chunks are bytes plus the metadata the container keeps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hct/dtype.h"
#include "hct/status.h"

namespace hct {

inline constexpr std::string_view kCodecRaw = "raw";
inline constexpr std::string_view kCodecBytesplitZstd = "bytesplit-zstd";
inline constexpr std::string_view kCodecDctqZstd = "dctq-zstd";
inline constexpr std::string_view kCodecDctqHuff = "dctq-huff";
// int16 symbols in the Huffman sub-stream payload with escape classes (docs/hct-format.md §5.6).
inline constexpr std::string_view kCodecDctqHuffx = "dctq-huffx";
inline constexpr std::string_view kCodecBf16Huff = "bf16-huff";

// The lossy codecs: their decoded form is quantized symbols (ChunkDecoder::dctq() applies).
inline bool IsDctqCodec(std::string_view codec) {
  return codec == kCodecDctqZstd || codec == kCodecDctqHuff || codec == kCodecDctqHuffx;
}

// One stored chunk. decoded_xxh3 is XXH3-64 of the decoded form: the original bytes for the
// lossless codecs, the little-endian int8/int16 symbols for dctq-zstd and dctq-huff.
struct EncodedChunk {
  std::vector<std::byte> bytes;
  uint64_t decoded_size = 0;
  uint64_t decoded_xxh3 = 0;
  uint64_t elem_offset = 0;
  uint64_t elem_count = 0;
};

// What a decoder needs to know about a chunk besides its stored bytes (the container's index).
struct ChunkMeta {
  uint64_t decoded_size = 0;
  uint64_t decoded_xxh3 = 0;
  uint64_t elem_offset = 0;
  uint64_t elem_count = 0;
  ChunkMeta() = default;
  ChunkMeta(uint64_t size, uint64_t xxh3, uint64_t offset, uint64_t count)
      : decoded_size(size), decoded_xxh3(xxh3), elem_offset(offset), elem_count(count) {}
  explicit ChunkMeta(const EncodedChunk& c)
      : ChunkMeta(c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count) {}
};

// A tensor's data, row-major, little-endian, as in safetensors.
struct TensorView {
  std::span<const std::byte> data;
  DType dtype = DType::kF32;
  std::vector<uint64_t> shape;  // empty = scalar
};

// Runs body(0..n-1), possibly in parallel; must return when all calls have returned. Outputs do
// not depend on it (each index writes its own slot), so encoding is deterministic.
using ParallelFor = std::function<void(size_t n, const std::function<void(size_t)>& body)>;
// A ParallelFor on `threads` std::threads (1 = inline in the caller).
ParallelFor ThreadsParallelFor(int threads);

enum class Transform { kAuto, kDct, kNone };
// kMaxError: relative RMS error target. kBits: average bits per weight target. kRetention: keep
// the largest `retention` fraction of DCT coefficients, quantize finely. kStep: fixed step.
enum class RateMode { kMaxError, kBits, kRetention, kStep };
// Entropy stage of the lossy codec: zstd ("dctq-zstd", CPU decode) or a canonical Huffman code
// in independent sub-streams ("dctq-huff", decoded on the GPU by LaunchHuffDecode). Tensors
// whose symbols need int16 always use zstd.
enum class Entropy { kZstd, kHuffman };

struct LossyOptions {
  RateMode mode = RateMode::kMaxError;
  double max_error = 0.1;    // kMaxError: target ||x - x_hat|| / ||x||
  double bits = 3.0;         // kBits: target stored bits per weight
  double retention = 0.7;    // kRetention: fraction of coefficients kept
  double step = 0.0;         // kStep: quantization step
  Transform transform = Transform::kAuto;
  int tile_r = 16;           // DCT tile (1..64); ignored for Transform::kNone
  int tile_c = 16;
  // Encoder-only rounding offset in [0, 0.5): q = sign(y) * floor(|y| / step + 0.5 - dead_zone).
  double dead_zone = 0.0;
  uint64_t chunk_symbols = 2u << 20;  // target symbols per chunk (whole tile-rows)
  int zstd_level = 1;
  Entropy entropy = Entropy::kHuffman;
  uint32_t huff_substream = 2048;  // symbols per Huffman sub-stream (multiple of 32, <= 4096)
  // Targets are met within this relative tolerance (error <= target * (1 + tol); bits likewise).
  double tolerance = 0.01;
};

struct LosslessOptions {
  int zstd_level = 1;
  uint64_t chunk_bytes = 4u << 20;  // target original bytes per chunk
  bool exponent_planes = true;      // false: plain little-endian byte planes (for measurements)
  // BF16 tensors: kHuffman = "bf16-huff" (exponent plane in the GPU-decodable Huffman code,
  // docs/hct-format.md §5.5), kZstd = "bytesplit-zstd". Other dtypes always use bytesplit-zstd.
  // The default is bf16-huff: the runtime decodes it on the GPU (GPU loads are the main path);
  // the CPU decoders (host loads, hct-cache) read both, bf16-huff more slowly per core.
  Entropy entropy = Entropy::kHuffman;
  uint32_t huff_substream = 2048;  // bf16-huff: symbols per sub-stream (multiple of 32, <= 4096)
};

struct EncodeOptions {
  bool lossy = false;  // lossy (dctq-zstd / dctq-huff) when the dtype allows it (BF16, F16, F32)
  LossyOptions lossy_options;
  LosslessOptions lossless_options;
  ParallelFor parallel;  // empty = one thread
};

// Per-tensor quality, measured by the encoder on the decoder's actual output.
struct QualityMetrics {
  uint64_t elements = 0;
  uint64_t stored_bytes = 0;   // sum of chunk payload sizes (params JSON not counted)
  double bits_per_weight = 0;  // stored_bytes * 8 / elements
  double rel_rms_error = 0;    // ||x - x_hat|| / ||x|| (0 when both are 0)
  double max_abs_error = 0;
  double cosine = 1;           // <x, x_hat> / (||x|| ||x_hat||) (1 when both are 0)
  double snr_db = 0;           // 10 log10(||x||^2 / ||x - x_hat||^2); +inf when exact
};

struct EncodedTensor {
  std::string codec;
  // The codec's parameters: the text of a JSON object, compact with sorted keys, as the
  // container stores it (HctWriter::BeginTensor, TensorEntry::codec_params).
  std::string params = "{}";
  std::vector<EncodedChunk> chunks;
  QualityMetrics metrics;
  std::string note;  // why a lossy request was stored losslessly, or "" (for reports)
};

// Encodes one tensor. Lossy requests fall back to lossless (with `note`) for dtypes other than
// BF16/F16/F32 and for data holding NaN/Inf; lossless picks "raw" when bytesplit saves < 1%.
Result<EncodedTensor> EncodeTensor(const TensorView& t, const EncodeOptions& opts);

// Decodes chunks of one tensor. Create() parses and validates the params (the JSON text of
// EncodedTensor::params / TensorEntry::codec_params) once; Decode() is const and thread-safe, so
// the chunks of a tensor decode in parallel. Corruption when the params do not parse or do not
// fit the codec and dtype; Unsupported for an unknown codec.
class ChunkDecoder {
 public:
  static Result<ChunkDecoder> Create(std::string_view codec, std::string_view params_json,
                                     DType dtype);
  ChunkDecoder() = default;

  // stored bytes -> decoded form (original bytes or symbols), into `decoded` of
  // meta.decoded_size bytes, verifying the size and decoded_xxh3 (Corruption on mismatch).
  Status DecodePayload(std::span<const std::byte> stored, const ChunkMeta& meta,
                       std::span<std::byte> decoded) const;
  // decoded form -> values in the tensor's dtype (meta.elem_count elements into `out`).
  Status Reconstruct(std::span<const std::byte> decoded, const ChunkMeta& meta,
                     std::span<std::byte> out) const;
  // Both steps (a temporary buffer for lossy codecs).
  Status Decode(std::span<const std::byte> stored, const ChunkMeta& meta,
                std::span<std::byte> out) const;

  const std::string& codec() const { return codec_; }
  DType dtype() const { return dtype_; }

  struct DctqParams {
    bool dct = false;
    int tile_r = 1, tile_c = 1;
    float step = 0;
    int symbol_bits = 8;
    uint64_t rows = 0, cols = 0, rows_per_chunk = 0;
    uint32_t huff_substream = 0;  // dctq-huff, bf16-huff: symbols per sub-stream ("substream")
  };
  const DctqParams& dctq() const { return dctq_; }

 private:
  std::string codec_;
  DType dtype_ = DType::kU8;
  int word_bytes_ = 1;  // bytesplit-zstd
  bool exponent_planes_ = false;
  DctqParams dctq_;
};

// Quality of `decoded` against `original` (both `dtype`, same element count, float dtypes
// BF16/F16/F32/F64; others compare as integers).
Result<QualityMetrics> MeasureQuality(std::span<const std::byte> original,
                                      std::span<const std::byte> decoded, DType dtype);

// ---- Policy (used by hct-convert) ----------------------------------------------------------
struct PolicyOptions {
  bool lossless = false;              // --lossless: everything lossless
  std::vector<std::string> keep;      // --keep GLOB (fnmatch, '*' crosses '.'): keep lossless
  uint64_t min_lossy_elements = 4096; // smaller tensors stay lossless
};
struct PolicyDecision {
  bool lossy = false;
  std::string reason;  // "1-D", "norm", "bias", "small", "dtype I64", "--keep 'x'", "--lossless"
};
// Lossless for: --lossless, --keep matches, non-float dtypes (and F8/F4/F6/F64/C64), 1-D or
// scalar tensors, names with a "norm" component or ending in "bias", < min_lossy_elements.
PolicyDecision ChooseCodecClass(std::string_view name, DType dtype,
                                std::span<const uint64_t> shape, const PolicyOptions& opts);

// ---- RTN baselines (measurements only) ------------------------------------------------------
struct BaselineResult {
  double rel_rms_error = 0;
  double bits_per_weight = 0;
  double sum_sq_err = 0;  // for aggregating over tensors
  double sum_sq_ref = 0;
};
// Round to nearest with one scale per group of `group` consecutive elements along the last dim
// (group 0: one per row of the 2-D view). Symmetric (absmax): s = max|x| / qmax with
// qmax = 2^(bits-1) - 1, q = clamp(round(x / s), -qmax - 1, qmax) (INT8: -127..127), x' = q s;
// one F16 scale per group. Asymmetric (min/max): s = (max - min) / (2^bits - 1), m = min,
// q = clamp(round((x - m) / s), 0, 2^bits - 1), x' = m + q s; F16 scale and F16 m per group.
// s and m are rounded to F16 before use. Bits per weight = bits + (16 or 32) * groups / cols
// (asymmetric INT4 g128: 4.25, INT3: 3.25; symmetric INT4 g128: 4.125).
struct RtnSpec {
  int bits = 4;
  int group = 128;
  bool asymmetric = false;
};
Result<BaselineResult> RtnGroup(const TensorView& t, const RtnSpec& spec);
// INT8 per output channel (per row of the 2-D view), symmetric absmax: RtnGroup {8, 0, false}:
// bits = 8 + 16 / cols.
Result<BaselineResult> RtnInt8PerChannel(const TensorView& t);
// Symmetric INT4, groups of `group`: RtnGroup {4, group, false}.
Result<BaselineResult> RtnInt4Group(const TensorView& t, int group = 128);

// ---- Whole tensors of an HCT file ------------------------------------------------------------
class HctFile;       // hct/container.h
struct TensorEntry;  // hct/container.h
// Decodes tensor `t` of `f` into `out` (exactly elements x dtype bytes), chunks in parallel with
// `pf` (empty: serial). Verifies stored and decoded checksums; errors name the file and tensor.
Status DecodeTensor(const HctFile& f, const TensorEntry& t, std::span<std::byte> out,
                    const ParallelFor& pf = {});

// ---- Helpers ----------------------------------------------------------------------------------
// Element -> float conversion for BF16/F16/F32 (Unsupported otherwise).
Status ToFloat(std::span<const std::byte> src, DType dtype, std::span<float> dst);
// float -> dtype with round-to-nearest-even (NaN stays NaN, overflow -> Inf).
Status FromFloat(std::span<const float> src, DType dtype, std::span<std::byte> dst);
// Rows x cols 2-D view: rows = product of leading dims (1 for 1-D/scalar), cols = last dim.
void View2D(std::span<const uint64_t> shape, uint64_t* rows, uint64_t* cols);

}  // namespace hct
