// Codec front end: EncodeTensor, ChunkDecoder, conversions, metrics and the lossy/lossless
// policy (include/hct/codec.h).
#include "hct/codec.h"

#include <fnmatch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "codec/detail/bf16_huff.h"
#include "codec/detail/codec_internal.h"
#include "codec/detail/float_convert.h"
#include "codec/detail/huff.h"
#include "codec/detail/zstd_util.h"

namespace hct {

using detail::ErrorAccumulator;

ParallelFor ThreadsParallelFor(int threads) {
  return [threads](size_t n, const std::function<void(size_t)>& body) {
    const size_t workers = std::min<size_t>(std::max(threads, 1), n);
    if (workers <= 1) {
      for (size_t i = 0; i < n; ++i) body(i);
      return;
    }
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < n;) body(i);
    };
    std::vector<std::thread> pool;
    for (size_t w = 1; w < workers; ++w) pool.emplace_back(work);
    work();
    for (std::thread& th : pool) th.join();
  };
}

void View2D(std::span<const uint64_t> shape, uint64_t* rows, uint64_t* cols) {
  if (shape.empty()) {
    *rows = 1, *cols = 1;
    return;
  }
  *cols = shape.back();
  uint64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  *rows = r;
}

Status ToFloat(std::span<const std::byte> src, DType dtype, std::span<float> dst) {
  const size_t n = dst.size();
  switch (dtype) {
    case DType::kBF16:
      if (src.size() != 2 * n) break;
      for (size_t i = 0; i < n; ++i) dst[i] = detail::Bf16ToFloat(detail::Load16(&src[2 * i]));
      return Status::OK();
    case DType::kF16:
      if (src.size() != 2 * n) break;
      for (size_t i = 0; i < n; ++i) dst[i] = detail::F16ToFloat(detail::Load16(&src[2 * i]));
      return Status::OK();
    case DType::kF32:
      if (src.size() != 4 * n) break;
      std::memcpy(dst.data(), src.data(), 4 * n);
      return Status::OK();
    default:
      return Status::Unsupported("no float conversion for " + std::string(DTypeName(dtype)));
  }
  return Status::InvalidArgument("ToFloat: buffer sizes do not match");
}

Status FromFloat(std::span<const float> src, DType dtype, std::span<std::byte> dst) {
  const size_t n = src.size();
  switch (dtype) {
    case DType::kBF16:
      if (dst.size() != 2 * n) break;
      for (size_t i = 0; i < n; ++i) detail::Store16(&dst[2 * i], detail::FloatToBf16(src[i]));
      return Status::OK();
    case DType::kF16:
      if (dst.size() != 2 * n) break;
      for (size_t i = 0; i < n; ++i) detail::Store16(&dst[2 * i], detail::FloatToF16(src[i]));
      return Status::OK();
    case DType::kF32:
      if (dst.size() != 4 * n) break;
      std::memcpy(dst.data(), src.data(), 4 * n);
      return Status::OK();
    default:
      return Status::Unsupported("no float conversion for " + std::string(DTypeName(dtype)));
  }
  return Status::InvalidArgument("FromFloat: buffer sizes do not match");
}

Result<QualityMetrics> MeasureQuality(std::span<const std::byte> original,
                                      std::span<const std::byte> decoded, DType dtype) {
  if (original.size() != decoded.size())
    return Status::InvalidArgument("MeasureQuality: sizes differ");
  const int bits = DTypeBits(dtype);
  if (bits % 8 != 0) return Status::Unsupported("MeasureQuality: sub-byte dtype");
  const size_t n = original.size() / (bits / 8);
  ErrorAccumulator acc;
  if (dtype == DType::kBF16 || dtype == DType::kF16 || dtype == DType::kF32) {
    std::vector<float> a(n), b(n);
    HCT_RETURN_IF_ERROR(ToFloat(original, dtype, a));
    HCT_RETURN_IF_ERROR(ToFloat(decoded, dtype, b));
    acc.Add(a.data(), b.data(), n);
  } else {
    // Bitwise comparison for every other dtype: exact or not.
    const bool same = std::memcmp(original.data(), decoded.data(), original.size()) == 0;
    acc.sxx = acc.syy = acc.sxy = 1;
    acc.see = same ? 0 : 1;
  }
  return acc.Finish(n, 0);
}

Result<EncodedTensor> EncodeTensor(const TensorView& t, const EncodeOptions& opts) {
  uint64_t elems = 1;
  for (uint64_t d : t.shape) elems *= d;
  std::string note;
  if (opts.lossy) {
    if (t.dtype != DType::kBF16 && t.dtype != DType::kF16 && t.dtype != DType::kF32) {
      note = "lossless: dtype " + std::string(DTypeName(t.dtype));
    } else if (elems == 0) {
      note = "lossless: empty";
    } else {
      Result<EncodedTensor> r = detail::EncodeDctq(t, opts.lossy_options, opts.parallel);
      // A lossy result that decodes to non-finite errors is never kept: the tensor goes
      // lossless instead (EncodeDctq itself refuses a non-finite step, Unsupported).
      if (r.ok() && (!std::isfinite(r->metrics.rel_rms_error) ||
                     !std::isfinite(r->metrics.max_abs_error)))
        r = Status::Unsupported("values too large for a finite quantization step");
      if (r.ok() || r.status().code() != Code::kUnsupported) return r;
      note = "lossless: " + r.status().message();
    }
  }
  HCT_ASSIGN_OR_RETURN(EncodedTensor enc,
                       detail::EncodeLossless(t, opts.lossless_options, opts.parallel));
  enc.note = std::move(note);
  return enc;
}

namespace {

Result<uint64_t> GetU64(const nlohmann::json& p, const char* key) {
  auto it = p.find(key);
  if (it == p.end() || !it->is_number_integer() ||
      (it->is_number_integer() && !it->is_number_unsigned() && it->get<int64_t>() < 0))
    return Status::Corruption(std::string("codec params: '") + key +
                              "' missing or not a non-negative integer");
  return it->get<uint64_t>();
}

}  // namespace

Result<ChunkDecoder> ChunkDecoder::Create(std::string_view codec, std::string_view params_json,
                                          DType dtype) {
  const nlohmann::json params =
      nlohmann::json::parse(params_json, nullptr, /*allow_exceptions=*/false);
  ChunkDecoder d;
  d.codec_ = std::string(codec);
  d.dtype_ = dtype;
  if (codec != kCodecRaw && codec != kCodecBytesplitZstd && codec != kCodecBf16Huff &&
      !IsDctqCodec(codec))  // IsDctqCodec: dctq-zstd, dctq-huff, dctq-huffx
    return Status::Unsupported("unknown codec '" + std::string(codec) + "'");
  if (!params.is_object()) return Status::Corruption("codec params are not a JSON object");
  if (codec == kCodecRaw) return d;
  if (codec == kCodecBf16Huff) {
    HCT_ASSIGN_OR_RETURN(d.dctq_.huff_substream, detail::Bf16HuffParams(params, dtype));
    return d;
  }
  if (codec == kCodecBytesplitZstd) {
    HCT_ASSIGN_OR_RETURN(uint64_t wb, GetU64(params, "word_bytes"));
    HCT_ASSIGN_OR_RETURN(uint64_t rot, GetU64(params, "rotate_bits"));
    const int bits = DTypeBits(dtype);
    const uint64_t expect = bits >= 8 ? bits / 8 : 1;
    // C64 may be split as two F32 words.
    if (!(wb == expect || (dtype == DType::kC64 && wb == 4)) || rot > 1 || (wb == 1 && rot))
      return Status::Corruption("bytesplit-zstd params do not fit dtype " +
                                std::string(DTypeName(dtype)));
    d.word_bytes_ = static_cast<int>(wb);
    d.exponent_planes_ = rot == 1;
    return d;
  }
  if (IsDctqCodec(codec)) {
    if (dtype != DType::kBF16 && dtype != DType::kF16 && dtype != DType::kF32)
      return Status::Corruption("dctq-zstd with dtype " + std::string(DTypeName(dtype)));
    DctqParams& q = d.dctq_;
    auto tr = params.find("transform");
    if (tr == params.end() || !tr->is_string() || (*tr != "dct" && *tr != "none"))
      return Status::Corruption("dctq-zstd params: 'transform' must be \"dct\" or \"none\"");
    q.dct = *tr == "dct";
    HCT_ASSIGN_OR_RETURN(uint64_t tile_r, GetU64(params, "tile_r"));
    HCT_ASSIGN_OR_RETURN(uint64_t tile_c, GetU64(params, "tile_c"));
    HCT_ASSIGN_OR_RETURN(uint64_t sb, GetU64(params, "symbol_bits"));
    HCT_ASSIGN_OR_RETURN(q.rows, GetU64(params, "rows"));
    HCT_ASSIGN_OR_RETURN(q.cols, GetU64(params, "cols"));
    HCT_ASSIGN_OR_RETURN(q.rows_per_chunk, GetU64(params, "rows_per_chunk"));
    auto st = params.find("step");
    if (st == params.end() || !st->is_number())
      return Status::Corruption("dctq-zstd params: 'step' missing");
    q.step = static_cast<float>(st->get<double>());
    if (tile_r < 1 || tile_r > 64 || tile_c < 1 || tile_c > 64 || (sb != 8 && sb != 16) ||
        q.cols == 0 || q.rows == 0 || q.rows_per_chunk == 0 || q.rows_per_chunk % tile_r != 0 ||
        !std::isfinite(q.step) || q.step <= 0 || q.rows > UINT64_MAX / q.cols)
      return Status::Corruption("dctq-zstd params out of range: " + params.dump());
    if (!q.dct && (tile_r != 1 || tile_c != 1))
      return Status::Corruption("dctq-zstd params: transform none needs tile 1x1");
    q.tile_r = static_cast<int>(tile_r), q.tile_c = static_cast<int>(tile_c);
    q.symbol_bits = static_cast<int>(sb);
    if (codec == kCodecDctqHuff) {
      HCT_ASSIGN_OR_RETURN(uint64_t k, GetU64(params, "substream"));
      if (sb != 8 || k < 32 || k > detail::kHuffMaxSubstream || k % 32)
        return Status::Corruption("dctq-huff params out of range: " + params.dump());
      q.huff_substream = static_cast<uint32_t>(k);
    }
    if (codec == kCodecDctqHuffx) {
      HCT_ASSIGN_OR_RETURN(uint64_t k, GetU64(params, "substream"));
      if (sb != 16 || k < 32 || k > detail::kHuffxMaxSubstream || k % 32)
        return Status::Corruption("dctq-huffx params out of range: " + params.dump());
      q.huff_substream = static_cast<uint32_t>(k);
    }
    return d;
  }
  return Status::Unsupported("unknown codec '" + std::string(codec) + "'");
}

Status ChunkDecoder::DecodePayload(std::span<const std::byte> stored, const ChunkMeta& meta,
                                   std::span<std::byte> decoded) const {
  if (decoded.size() != meta.decoded_size)
    return Status::InvalidArgument("decode buffer size differs from the chunk's decoded size");
  if (codec_ == kCodecRaw) {
    if (stored.size() != meta.decoded_size)
      return Status::Corruption("raw chunk has " + std::to_string(stored.size()) +
                                " bytes, expected " + std::to_string(meta.decoded_size));
    std::memcpy(decoded.data(), stored.data(), stored.size());
  } else if (codec_ == kCodecBytesplitZstd) {
    HCT_RETURN_IF_ERROR(detail::BytesplitDecode(word_bytes_, exponent_planes_ ? 1 : 0,
                                                stored, decoded));
  } else if (codec_ == kCodecBf16Huff) {
    HCT_RETURN_IF_ERROR(detail::Bf16HuffDecodeChunk(stored, dctq_.huff_substream, decoded));
  } else if (codec_ == kCodecDctqHuff) {
    HCT_RETURN_IF_ERROR(detail::HuffDecode(
        stored, {reinterpret_cast<int8_t*>(decoded.data()), decoded.size()}));
  } else if (codec_ == kCodecDctqHuffx) {
    // Symbols are little-endian int16 in the decoded form (x86-64 and CUDA targets are LE).
    if (decoded.size() % 2) return Status::Corruption("dctq-huffx chunk has an odd decoded size");
    if (reinterpret_cast<uintptr_t>(decoded.data()) % alignof(int16_t) == 0) {
      HCT_RETURN_IF_ERROR(detail::HuffxDecode(
          stored, {reinterpret_cast<int16_t*>(decoded.data()), decoded.size() / 2}));
    } else {
      std::vector<int16_t> tmp(decoded.size() / 2);
      HCT_RETURN_IF_ERROR(detail::HuffxDecode(stored, tmp));
      std::memcpy(decoded.data(), tmp.data(), decoded.size());
    }
  } else {
    HCT_RETURN_IF_ERROR(detail::ZstdDecompressExact(stored, decoded));
  }
  if (detail::Xxh3(decoded) != meta.decoded_xxh3)
    return Status::Corruption("chunk at element " + std::to_string(meta.elem_offset) +
                              ": decoded_xxh3 mismatch");
  return Status::OK();
}

Status ChunkDecoder::Reconstruct(std::span<const std::byte> decoded, const ChunkMeta& meta,
                                 std::span<std::byte> out) const {
  const auto out_bytes = DTypeBytes(dtype_, meta.elem_count);
  if (!out_bytes || out.size() != *out_bytes)
    return Status::InvalidArgument("output buffer does not hold elem_count elements");
  if (!IsDctqCodec(codec_)) {
    if (decoded.size() != out.size())
      return Status::Corruption("decoded size differs from elem_count * dtype size");
    if (decoded.data() != out.data()) std::memcpy(out.data(), decoded.data(), out.size());
    return Status::OK();
  }
  const DctqParams& q = dctq_;
  const uint64_t row0 = meta.elem_offset / q.cols;
  const uint64_t nrows = meta.elem_count / q.cols;
  if (meta.elem_offset % q.cols || meta.elem_count % q.cols || row0 % q.rows_per_chunk ||
      row0 >= q.rows || nrows != std::min(q.rows_per_chunk, q.rows - row0))
    return Status::Corruption("dctq-zstd chunk at element " + std::to_string(meta.elem_offset) +
                              " does not cover whole chunk rows");
  if (decoded.size() != meta.elem_count * (q.symbol_bits / 8))
    return Status::Corruption("dctq-zstd chunk symbol count differs from elem_count");
  std::vector<float> rec(meta.elem_count);
  detail::DctqReconstructFloat(q, decoded.data(), nrows, rec.data());
  return FromFloat(rec, dtype_, out);
}

Status ChunkDecoder::Decode(std::span<const std::byte> stored, const ChunkMeta& meta,
                            std::span<std::byte> out) const {
  if (!IsDctqCodec(codec_)) {
    if (out.size() != meta.decoded_size)
      return Status::InvalidArgument("output buffer size differs from the chunk's decoded size");
    HCT_RETURN_IF_ERROR(DecodePayload(stored, meta, out));
    return Reconstruct(out, meta, out);
  }
  std::vector<std::byte> sym(meta.decoded_size);
  HCT_RETURN_IF_ERROR(DecodePayload(stored, meta, sym));
  return Reconstruct(sym, meta, out);
}

PolicyDecision ChooseCodecClass(std::string_view name, DType dtype,
                                std::span<const uint64_t> shape, const PolicyOptions& opts) {
  const std::string n(name);
  if (opts.lossless) return {false, "--lossless"};
  for (const std::string& pat : opts.keep)
    if (fnmatch(pat.c_str(), n.c_str(), 0) == 0) return {false, "--keep '" + pat + "'"};
  if (dtype != DType::kBF16 && dtype != DType::kF16 && dtype != DType::kF32)
    return {false, "dtype " + std::string(DTypeName(dtype))};
  if (shape.size() < 2) return {false, "1-D"};
  uint64_t elems = 1;
  for (uint64_t d : shape) elems *= d;
  // Name components, lower-cased: "model.layers.0.input_layernorm.weight".
  std::string lower = n;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.find("norm") != std::string::npos) return {false, "norm"};
  if (lower.size() >= 4 && lower.compare(lower.size() - 4, 4, "bias") == 0)
    return {false, "bias"};
  if (elems < opts.min_lossy_elements) return {false, "small"};
  return {true, "lossy"};
}

}  // namespace hct
