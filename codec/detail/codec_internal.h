// Internals shared by the codec sources (codec/codec*.cc).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "codec/detail/quant.h"
#include "hct/codec.h"

namespace hct::detail {

// Running sums for QualityMetrics; merged in chunk order so results do not depend on threads.
struct ErrorAccumulator {
  double sxx = 0, see = 0, sxy = 0, syy = 0, max_abs = 0;

  void Add(const float* x, const float* y, uint64_t n) {
    double sums[4] = {};
    ErrorSums(x, y, n, sums, &max_abs);
    sxx += sums[0], see += sums[1], sxy += sums[2], syy += sums[3];
  }
  void Merge(const ErrorAccumulator& o) {
    sxx += o.sxx, see += o.see, sxy += o.sxy, syy += o.syy;
    max_abs = std::max(max_abs, o.max_abs);
  }
  double RelRms() const {
    if (sxx == 0) return see == 0 ? 0.0 : std::numeric_limits<double>::infinity();
    return std::sqrt(see / sxx);
  }
  QualityMetrics Finish(uint64_t elements, uint64_t stored_bytes) const {
    QualityMetrics m;
    m.elements = elements;
    m.stored_bytes = stored_bytes;
    m.bits_per_weight = elements ? stored_bytes * 8.0 / elements : 0.0;
    m.rel_rms_error = RelRms();
    m.max_abs_error = max_abs;
    m.cosine = (sxx == 0 && syy == 0) ? 1.0
               : (sxx == 0 || syy == 0) ? 0.0
                                        : sxy / std::sqrt(sxx * syy);
    m.snr_db = see == 0 ? std::numeric_limits<double>::infinity()
               : sxx == 0 ? -std::numeric_limits<double>::infinity()
                          : 10.0 * std::log10(sxx / see);
    return m;
  }
};

inline ParallelFor OrSerial(const ParallelFor& pf) {
  if (pf) return pf;
  return [](size_t n, const std::function<void(size_t)>& body) {
    for (size_t i = 0; i < n; ++i) body(i);
  };
}

uint64_t Xxh3(std::span<const std::byte> b);

// Lossless codecs ("raw", "bytesplit-zstd").
Result<EncodedTensor> EncodeLossless(const TensorView& t, const LosslessOptions& o,
                                     const ParallelFor& pf);
Status BytesplitDecode(int word_bytes, int rotate_bits, std::span<const std::byte> stored,
                       std::span<std::byte> out);

// Lossy codec ("dctq-zstd").
Result<EncodedTensor> EncodeDctq(const TensorView& t, const LossyOptions& o,
                                 const ParallelFor& pf);
// Symbols of `nrows` rows (row-major, int8 or int16 LE) -> float values before dtype rounding.
void DctqReconstructFloat(const ChunkDecoder::DctqParams& p, const std::byte* symbols,
                          uint64_t nrows, float* out);

}  // namespace hct::detail
