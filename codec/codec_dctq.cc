// Lossy codec "dctq-zstd": tiled DCT-II, one uniform quantization step per tensor, int8/int16
// symbols stored in place of the tile, zstd per chunk of whole tile-rows (docs/hct-format.md §5).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "codec/detail/codec_internal.h"
#include "codec/detail/dct.h"
#include "codec/detail/float_convert.h"
#include "codec/detail/huff.h"
#include "codec/detail/quant.h"
#include "codec/detail/zstd_util.h"

// x86-64: AVX2 clones of the hot loops, chosen at load time (as in codec/quant.cc).
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HCT_CODEC_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HCT_CODEC_CLONES
#endif

namespace hct::detail {
namespace {

constexpr uint64_t kSampleElems = 64u << 10;

struct Plan {
  bool dct = false;
  int tile_r = 1, tile_c = 1;
  double step = 1;
  double threshold = 0;  // retention: |y| < threshold -> 0
  int symbol_bits = 8;
};

// Rows of whole bands (height `band`) spread evenly over the tensor: the rate control sample.
struct Sample {
  std::vector<float> x;           // original values, band after band
  std::vector<uint64_t> band_rows;  // first row of each band
  std::vector<int> band_h;
  double sxx = 0;
};

Sample MakeSample(const float* x, uint64_t rows, uint64_t cols, int band) {
  Sample s;
  const uint64_t nb = (rows + band - 1) / band;
  const uint64_t want =
      std::clamp<uint64_t>((kSampleElems + band * cols - 1) / (band * cols), 1, nb);
  for (uint64_t i = 0; i < want; ++i) {
    const uint64_t b = i * nb / want;
    const uint64_t r0 = b * band;
    const int h = static_cast<int>(std::min<uint64_t>(band, rows - r0));
    s.band_rows.push_back(r0);
    s.band_h.push_back(h);
    s.x.insert(s.x.end(), x + r0 * cols, x + (r0 + h) * cols);
  }
  for (float v : s.x) s.sxx += static_cast<double>(v) * v;
  return s;
}

std::vector<float> TransformSample(const Sample& s, uint64_t cols, const Plan& p) {
  std::vector<float> y = s.x;
  if (!p.dct) return y;
  std::vector<float> scratch(static_cast<size_t>(p.tile_r) * cols);
  uint64_t off = 0;
  for (size_t i = 0; i < s.band_h.size(); ++i) {
    for (int r = 0; r < s.band_h[i]; r += p.tile_r) {
      const int h = std::min(p.tile_r, s.band_h[i] - r);
      DctBand(y.data() + off + r * cols, h, cols, p.tile_c, false, scratch.data());
    }
    off += s.band_h[i] * cols;
  }
  return y;
}

float MaxAbs(const float* y, uint64_t n) {
  float m = 0;
  for (uint64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(y[i]));
  return m;
}

Quantizer MakeQuantizer(const Plan& p, double dead_zone) {
  return Quantizer(p.step, dead_zone, p.threshold, p.symbol_bits == 8 ? 127 : 32767);
}

// Compressed bits per element of the quantized sample (one zstd frame).
Result<double> SampleBits(const std::vector<float>& y, const Quantizer& qz, int level) {
  std::vector<std::byte> sym;
  int maxq = 0;
  for (float v : y) maxq = std::max(maxq, std::abs(qz.Q(v)));
  if (maxq <= 127) {
    sym.resize(y.size());
    QuantizeTo(y.data(), y.size(), qz, reinterpret_cast<int8_t*>(sym.data()));
  } else {
    sym.resize(y.size() * 2);
    QuantizeTo(y.data(), y.size(), qz, reinterpret_cast<int16_t*>(sym.data()));
  }
  std::vector<std::byte> out;
  ZstdSettings zs;
  zs.level = level;
  zs.min_match = kCodecMinMatch;
  HCT_RETURN_IF_ERROR(ZstdCompress(sym, zs, &out));
  return out.size() * 8.0 / std::max<size_t>(1, y.size());
}

// Smallest step allowed: |q| <= 32767.
double MinStep(float max_abs) { return max_abs > 0 ? max_abs / 32767.0 : 0.0; }

// Bisection on log(step) for f(step) (increasing in step) == target.
// Returns {lo, hi} with f(lo) <= target < f(hi) for f increasing in the step (as far as
// [min_step, max_step] allows): a bracket grown around `guess`, then bisection on log(step).
template <class F>
std::pair<double, double> SolveLogStep(double guess, double min_step, double max_step,
                                       double target, F f, int iters = 12) {
  guess = std::clamp(guess, min_step, max_step);
  double lo = std::max(min_step, guess / 2), hi = std::min(max_step, guess * 2);
  for (int i = 0; i < 60 && lo > min_step && f(lo) > target; ++i) hi = lo, lo = std::max(min_step, lo / 4);
  for (int i = 0; i < 60 && hi < max_step && f(hi) <= target; ++i) lo = hi, hi = std::min(max_step, hi * 4);
  for (int i = 0; i < iters; ++i) {
    const double mid = std::sqrt(lo * hi);
    if (f(mid) > target) hi = mid; else lo = mid;
  }
  return {lo, hi};
}

// Expected relative error energy of rounding values like x to the dtype (uniform rounding
// error: ulp^2 / 12), so the quantizer can aim at what is left of the error budget.
double DtypeRoundingEnergy(const std::vector<float>& x, double sxx, DType d) {
  if (d == DType::kF32 || sxx <= 0) return 0;
  const int mant = d == DType::kBF16 ? 7 : 10;
  const int min_exp = d == DType::kBF16 ? -133 : -24;
  double e = 0;
  for (float v : x) {
    int ex;
    std::frexp(v, &ex);
    const double ulp = std::ldexp(1.0, std::max(ex - 1 - mant, min_exp));
    e += ulp * ulp / 12;
  }
  return e / sxx;
}

// The quantizer's share of a relative error target.
double QuantAim(double target, double rounding_energy) {
  return std::sqrt(std::max(target * target - rounding_energy, 0.25 * target * target));
}

struct Candidate {
  Plan plan;
  double sample_bits = 0;
  double sample_err = 0;
};

// Chooses step (and threshold) on the sample for one transform.
Result<Candidate> SolveOnSample(const Sample& s, uint64_t cols, Plan p, const LossyOptions& o,
                                double rounding_energy) {
  const std::vector<float> y = TransformSample(s, cols, p);
  const float ymax = MaxAbs(y.data(), y.size());
  const double rms = std::sqrt(s.sxx / std::max<size_t>(1, y.size()));
  const double min_step = std::max(MinStep(ymax), 1e-30);
  const double max_step = std::max(4.0 * ymax, min_step * 2);
  auto err_at = [&](double step, double thr) {
    Plan q = p;
    q.step = step, q.threshold = thr, q.symbol_bits = 16;
    return s.sxx > 0 ? std::sqrt(QuantError(y.data(), y.size(), MakeQuantizer(q, o.dead_zone)) /
                                 s.sxx)
                     : 0.0;
  };
  switch (o.mode) {
    case RateMode::kStep:
      p.step = std::max(o.step, min_step);
      break;
    case RateMode::kMaxError: {
      // Aim slightly below the target: the whole tensor is verified afterwards.
      const double target = QuantAim(o.max_error * (1 - 0.3 * o.tolerance), rounding_energy);
      // The error is close to proportional to the step: a few proportional updates from the
      // fine-quantization guess (step = e * rms * sqrt(12)), bisection if that fails.
      if (ymax == 0) {
        p.step = 1.0;
        break;
      }
      double step = std::clamp(target * rms * std::sqrt(12.0), min_step, max_step);
      bool done = false;
      for (int i = 0; i < 6 && !done; ++i) {
        const double e = err_at(step, 0);
        if (e > 0 && std::fabs(e / target - 1) < 2e-3) done = true;
        else if (e <= 0) step = std::min(max_step, step * 4);
        else step = std::clamp(step * target / e, min_step, max_step);
      }
      p.step = done ? step
                    : SolveLogStep(step, min_step, max_step, target,
                                   [&](double st) { return err_at(st, 0); })
                          .first;
      break;
    }
    case RateMode::kBits: {
      if (ymax == 0) {
        p.step = 1;
        break;
      }
      const double target = o.bits * (1 - 0.3 * o.tolerance);
      Status st;
      // -bits increases with the step; the high end has bits <= target.
      p.step = SolveLogStep(
                   rms * 4.13 * std::exp2(-target), min_step, max_step, -target,
                   [&](double step) {
                     Plan q = p;
                     q.step = step, q.symbol_bits = 16;
                     auto b = SampleBits(y, MakeQuantizer(q, o.dead_zone), o.zstd_level);
                     if (!b.ok()) st = b.status();
                     return b.ok() ? -*b : 0.0;
                   })
                   .second;
      HCT_RETURN_IF_ERROR(st);
      break;
    }
    case RateMode::kRetention: {
      std::vector<float> a(y.size());
      for (size_t i = 0; i < y.size(); ++i) a[i] = std::fabs(y[i]);
      const double keep = std::clamp(o.retention, 0.0, 1.0);
      const size_t drop = static_cast<size_t>(std::floor((1 - keep) * a.size()));
      if (drop == 0 || a.empty()) {
        p.threshold = 0;
      } else {
        std::nth_element(a.begin(), a.begin() + (drop - 1), a.end());
        const float below = a[drop - 1];
        p.threshold = std::nextafter(below, std::numeric_limits<float>::infinity());
      }
      double trunc = 0;
      uint64_t kept = 0;
      for (float v : y) {
        if (std::fabs(v) < p.threshold) trunc += static_cast<double>(v) * v;
        else ++kept;
      }
      // Quantization adds ~1/16 of the truncation error energy (3% more error), or is at
      // 1e-3 relative when nothing is dropped.
      double step = kept ? std::sqrt(12.0 * trunc / (16.0 * kept)) : 1.0;
      if (trunc == 0) step = 1e-3 * rms * std::sqrt(12.0);
      p.step = std::max({step, min_step, 1e-30});
      break;
    }
  }
  if (p.step <= 0 || !std::isfinite(p.step)) p.step = 1;
  // Round to the float the decoder uses.
  p.step = static_cast<float>(p.step);
  Candidate c;
  c.plan = p;
  Plan q = p;
  q.symbol_bits = 16;
  c.sample_err = err_at(p.step, p.threshold);
  HCT_ASSIGN_OR_RETURN(c.sample_bits, SampleBits(y, MakeQuantizer(q, o.dead_zone), o.zstd_level));
  return c;
}

struct ChunkOut {
  EncodedChunk chunk;
  ErrorAccumulator acc;
  Status status;
};

// Per-thread buffers reused from chunk to chunk: a fresh vector per chunk cost page faults and
// zeroing, the largest overhead in a profile of the encoder.
struct ChunkScratch {
  std::vector<std::byte> sym;
  std::vector<float> rec;
};
ChunkScratch& Scratch() {
  thread_local ChunkScratch s;
  return s;
}

// x -> dtype -> float in place: what the decoder outputs (as FromFloat then ToFloat).
HCT_CODEC_CLONES
void RoundBf16(float* v, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) v[i] = Bf16ToFloat(FloatToBf16(v[i]));
}
void RoundToDtype(float* v, uint64_t n, DType d) {
  if (d == DType::kBF16) {
    RoundBf16(v, n);
  } else if (d == DType::kF16) {
    for (uint64_t i = 0; i < n; ++i) v[i] = F16ToFloat(FloatToF16(v[i]));
  }
}

// Float copy of the tensor without zero-filling it first (the pages are first touched by the
// threads that convert them).
std::unique_ptr<float[]> UninitFloats(uint64_t n) { return std::unique_ptr<float[]>(new float[n]); }

}  // namespace

void DctqReconstructFloat(const ChunkDecoder::DctqParams& p, const std::byte* symbols,
                          uint64_t nrows, float* out) {
  const uint64_t n = nrows * p.cols;
  const float step = p.step;
  if (p.symbol_bits == 8) {
    const int8_t* s = reinterpret_cast<const int8_t*>(symbols);
    for (uint64_t i = 0; i < n; ++i) out[i] = static_cast<float>(s[i]) * step;
  } else {
    for (uint64_t i = 0; i < n; ++i) {
      int16_t v;
      std::memcpy(&v, symbols + 2 * i, 2);
      out[i] = static_cast<float>(v) * step;
    }
  }
  if (p.dct) DctTiled(out, nrows, p.cols, p.tile_r, p.tile_c, /*inverse=*/true);
}

Result<EncodedTensor> EncodeDctq(const TensorView& t, const LossyOptions& o,
                                 const ParallelFor& pf_in) {
  if (t.dtype != DType::kBF16 && t.dtype != DType::kF16 && t.dtype != DType::kF32)
    return Status::Unsupported("dctq-zstd encodes BF16, F16 and F32, not " +
                               std::string(DTypeName(t.dtype)));
  if (o.tile_r < 1 || o.tile_r > kMaxTile || o.tile_c < 1 || o.tile_c > kMaxTile)
    return Status::InvalidArgument("tile sizes must be in 1..64");
  if (!(o.dead_zone >= 0 && o.dead_zone < 0.5))
    return Status::InvalidArgument("dead_zone must be in [0, 0.5)");
  if (o.mode == RateMode::kMaxError && !(o.max_error > 0))
    return Status::InvalidArgument("max_error must be > 0");
  if (o.mode == RateMode::kBits && !(o.bits > 0))
    return Status::InvalidArgument("bits must be > 0");
  if (o.mode == RateMode::kRetention && !(o.retention > 0 && o.retention <= 1))
    return Status::InvalidArgument("retention must be in (0, 1]");
  if (o.mode == RateMode::kStep && !(o.step > 0 && std::isfinite(o.step)))
    return Status::InvalidArgument("step must be > 0");
  if (o.entropy == Entropy::kHuffman &&
      (o.huff_substream < 32 || o.huff_substream > kHuffMaxSubstream || o.huff_substream % 32))
    return Status::InvalidArgument("huff_substream must be a multiple of 32 in 32..4096");
  const ParallelFor pf = OrSerial(pf_in);

  uint64_t rows = 0, cols = 0;
  View2D(t.shape, &rows, &cols);
  const uint64_t n = rows * cols;
  if (n == 0) return Status::Unsupported("empty tensor");
  const uint64_t esize = DTypeBits(t.dtype) / 8;
  if (t.data.size() != n * esize)
    return Status::InvalidArgument("tensor data has " + std::to_string(t.data.size()) +
                                   " bytes, shape and dtype say " + std::to_string(n * esize));
  // The float copy and its checks, in blocks, in parallel (the first failing block in element
  // order names the error, as a serial pass would).
  std::unique_ptr<float[]> xbuf = UninitFloats(n);
  float* const x = xbuf.get();
  // A DCT coefficient can reach tile_r * tile_c / sqrt(tile_r * tile_c) <= 64 times the largest
  // value and the step search goes to 4x the largest coefficient: beyond FLT_MAX / 2^12 the step
  // or the reconstruction would overflow float (a null step in the file, issue 10 item 5).
  constexpr float kMaxLossyAbs = std::numeric_limits<float>::max() / 4096;
  constexpr uint64_t kConvBlock = 1u << 18;
  const uint64_t nblocks = (n + kConvBlock - 1) / kConvBlock;
  std::vector<Status> block_status(nblocks);
  pf(nblocks, [&](size_t b) {
    const uint64_t i0 = b * kConvBlock, m = std::min(kConvBlock, n - i0);
    Status st = ToFloat(t.data.subspan(i0 * esize, m * esize), t.dtype, {x + i0, m});
    for (uint64_t i = i0; st.ok() && i < i0 + m; ++i) {
      if (!std::isfinite(x[i])) st = Status::Unsupported("tensor holds NaN or Inf");
      else if (std::fabs(x[i]) > kMaxLossyAbs)
        st = Status::Unsupported("values too large for a finite quantization step");
    }
    block_status[b] = std::move(st);
  });
  for (const Status& st : block_status) HCT_RETURN_IF_ERROR(st);

  // Candidates and the choice between them, on a sample of whole tile-rows (the candidates are
  // solved concurrently; the choice is made in their fixed order).
  Plan dct_plan;
  dct_plan.dct = true, dct_plan.tile_r = o.tile_r, dct_plan.tile_c = o.tile_c;
  Plan none_plan;
  const Sample sample = MakeSample(x, rows, cols, o.tile_r);
  const double rounding_energy = DtypeRoundingEnergy(sample.x, sample.sxx, t.dtype);
  std::vector<Plan> cands;
  if (o.transform == Transform::kDct || o.mode == RateMode::kRetention ||
      o.transform == Transform::kAuto)
    cands.push_back(dct_plan);
  if (o.transform == Transform::kNone ||
      (o.transform == Transform::kAuto && o.mode != RateMode::kRetention))
    cands.push_back(none_plan);
  if (o.transform == Transform::kNone && o.mode == RateMode::kRetention) cands = {none_plan};
  std::vector<std::optional<Result<Candidate>>> solved(cands.size());
  pf(cands.size(), [&](size_t i) {
    solved[i] = SolveOnSample(sample, cols, cands[i], o, rounding_energy);
  });
  Candidate best;
  bool have = false;
  for (std::optional<Result<Candidate>>& r : solved) {
    HCT_ASSIGN_OR_RETURN(Candidate c, std::move(*r));
    const bool better = !have || (o.mode == RateMode::kBits ? c.sample_err < best.sample_err
                                                            : c.sample_bits < best.sample_bits);
    if (better) best = c, have = true;
  }
  Plan plan = best.plan;

  // Whole-tensor transform, chunk by chunk (no copy without a transform).
  uint64_t rpc = std::max<uint64_t>(1, o.chunk_symbols / cols);
  rpc = std::max<uint64_t>(plan.tile_r, rpc / plan.tile_r * plan.tile_r);
  rpc = std::min<uint64_t>(rpc, (rows + plan.tile_r - 1) / plan.tile_r * plan.tile_r);
  const uint64_t nchunks = (rows + rpc - 1) / rpc;
  std::unique_ptr<float[]> ybuf;
  if (plan.dct) ybuf = UninitFloats(n);
  const float* const y = plan.dct ? ybuf.get() : x;
  std::vector<float> chunk_max(nchunks, 0);
  pf(nchunks, [&](size_t c) {
    const uint64_t r0 = c * rpc, nr = std::min(rpc, rows - r0);
    if (plan.dct) {
      float* band = ybuf.get() + r0 * cols;
      std::memcpy(band, x + r0 * cols, sizeof(float) * nr * cols);
      DctTiled(band, nr, cols, plan.tile_r, plan.tile_c, false);
    }
    chunk_max[c] = MaxAbs(y + r0 * cols, nr * cols);
  });
  const float ymax = *std::max_element(chunk_max.begin(), chunk_max.end());

  // max_error: correct the sample's step on the whole tensor's coefficients first (cheap: no
  // entropy coding, no inverse transform); the final check below then rarely re-encodes.
  if (o.mode == RateMode::kMaxError) {
    const double aim = QuantAim(o.max_error * (1 - 0.3 * o.tolerance), rounding_energy);
    std::vector<double> part(nchunks), ref(nchunks);
    pf(nchunks, [&](size_t c) {
      const uint64_t r0 = c * rpc, nr = std::min(rpc, rows - r0);
      double e = 0;
      for (uint64_t i = r0 * cols; i < (r0 + nr) * cols; ++i) e += static_cast<double>(x[i]) * x[i];
      ref[c] = e;
    });
    double sxx = 0;
    for (double v : ref) sxx += v;
    for (int iter = 0; iter < 3 && sxx > 0 && ymax > 0; ++iter) {
      Plan q = plan;
      q.step = std::max<double>(static_cast<float>(q.step), MinStep(ymax));
      q.symbol_bits = 16;
      const Quantizer qz = MakeQuantizer(q, o.dead_zone);
      pf(nchunks, [&](size_t c) {
        const uint64_t r0 = c * rpc, nr = std::min(rpc, rows - r0);
        part[c] = QuantError(y + r0 * cols, nr * cols, qz);
      });
      double see = 0;
      for (double v : part) see += v;
      const double e = std::sqrt(see / sxx);
      if (e <= 0 || std::fabs(e / aim - 1) < 0.002) break;
      plan.step = q.step * aim / e;
    }
  }

  // Huffman: int8 symbols as "dctq-huff", int16 ones as "dctq-huffx" (escape classes plus raw
  // bits; before it, int16 symbols fell back to zstd and cost ~2 bits more per weight).
  auto huff = [&](const Plan&) { return o.entropy == Entropy::kHuffman; };
  auto huff_k = [&](const Plan& p) {
    return p.symbol_bits == 8 ? o.huff_substream : std::min(o.huff_substream, kHuffxMaxSubstream);
  };
  // The step as the file stores it, and the symbol width it needs.
  auto normalize = [&](Plan& p) {
    p.step = static_cast<float>(std::max(p.step, MinStep(ymax)));
    if (p.step <= 0) p.step = 1;
    const double maxq = std::floor(ymax / static_cast<float>(p.step) + 0.5);
    p.symbol_bits = maxq <= 127 ? 8 : 16;
  };
  auto params_of = [&](const Plan& p) {
    ChunkDecoder::DctqParams dp;
    dp.dct = p.dct, dp.tile_r = p.tile_r, dp.tile_c = p.tile_c;
    dp.step = static_cast<float>(p.step), dp.symbol_bits = p.symbol_bits;
    dp.rows = rows, dp.cols = cols, dp.rows_per_chunk = rpc;
    return dp;
  };
  ZstdSettings zs;
  zs.level = o.zstd_level;
  zs.min_match = kCodecMinMatch;
  // Chunk c's symbols into the thread's scratch buffer.
  auto quantize = [&](const Plan& p, const Quantizer& qz, size_t c) -> std::vector<std::byte>& {
    const uint64_t r0 = c * rpc, m = std::min(rpc, rows - r0) * cols;
    std::vector<std::byte>& sym = Scratch().sym;
    sym.resize(m * (p.symbol_bits / 8));
    if (p.symbol_bits == 8)
      QuantizeTo(y + r0 * cols, m, qz, reinterpret_cast<int8_t*>(sym.data()));
    else
      QuantizeTo(y + r0 * cols, m, qz, reinterpret_cast<int16_t*>(sym.data()));
    return sym;
  };
  // The error of chunk c's symbols, measured on what the decoder will output (dtype rounding
  // included).
  auto chunk_error = [&](const ChunkDecoder::DctqParams& dp, const std::vector<std::byte>& sym,
                         size_t c) {
    const uint64_t r0 = c * rpc, nr = std::min(rpc, rows - r0), m = nr * cols;
    std::vector<float>& rec = Scratch().rec;
    rec.resize(m);
    DctqReconstructFloat(dp, sym.data(), nr, rec.data());
    RoundToDtype(rec.data(), m, t.dtype);
    ErrorAccumulator acc;
    acc.Add(x + r0 * cols, rec.data(), m);
    return acc;
  };

  // What the rate control decides on, without writing the chunks: the exact stored size (a
  // Huffman payload's size follows from the histogram; zstd is run) and/or the error, per chunk.
  // The metrics equal those of encoding the plan (same per-chunk sums, merged in chunk order).
  struct Eval {
    std::vector<ErrorAccumulator> acc;
    QualityMetrics m;
  };
  auto evaluate = [&](Plan& p, bool need_bits, bool need_err, Eval* ev) -> Status {
    normalize(p);
    const Quantizer qz = MakeQuantizer(p, o.dead_zone);
    const ChunkDecoder::DctqParams dp = params_of(p);
    std::vector<uint64_t> bytes(nchunks, 0);
    std::vector<Status> st(nchunks);
    ev->acc.assign(nchunks, {});
    pf(nchunks, [&](size_t c) {
      std::vector<std::byte>& sym = quantize(p, qz, c);
      if (need_bits && huff(p) && p.symbol_bits == 8) {
        const std::span<const int8_t> s8(reinterpret_cast<const int8_t*>(sym.data()), sym.size());
        uint64_t freq[256];
        HuffHistogram(s8, freq);
        bytes[c] = HuffPayloadBytes(freq, s8.size(), huff_k(p));
      } else if (need_bits && huff(p)) {
        const std::span<const int16_t> s16(reinterpret_cast<const int16_t*>(sym.data()),
                                           sym.size() / 2);
        uint64_t freq[256];
        HuffxHistogram(s16, freq);
        bytes[c] = HuffxPayloadBytes(freq, s16.size(), huff_k(p));
      } else if (need_bits) {
        std::vector<std::byte> z;
        st[c] = ZstdCompress(sym, zs, &z);
        bytes[c] = z.size();
      }
      if (need_err) ev->acc[c] = chunk_error(dp, sym, c);
    });
    ErrorAccumulator total;
    uint64_t stored = 0;
    for (size_t c = 0; c < nchunks; ++c) {
      HCT_RETURN_IF_ERROR(st[c]);
      total.Merge(ev->acc[c]), stored += bytes[c];
    }
    ev->m = total.Finish(n, stored);
    return Status::OK();
  };
  // Writes every chunk of the plan; the errors are measured unless `known` holds them already.
  auto encode_all = [&](Plan& p, const std::vector<ErrorAccumulator>* known,
                        std::vector<ChunkOut>& outs) -> Status {
    normalize(p);
    const Quantizer qz = MakeQuantizer(p, o.dead_zone);
    const ChunkDecoder::DctqParams dp = params_of(p);
    outs.assign(nchunks, {});
    pf(nchunks, [&](size_t c) {
      ChunkOut& out = outs[c];
      const uint64_t r0 = c * rpc, m = std::min(rpc, rows - r0) * cols;
      std::vector<std::byte>& sym = quantize(p, qz, c);
      out.chunk.elem_offset = r0 * cols;
      out.chunk.elem_count = m;
      out.chunk.decoded_size = sym.size();
      out.chunk.decoded_xxh3 = Xxh3(sym);
      if (!huff(p))
        out.status = ZstdCompress(sym, zs, &out.chunk.bytes);
      else if (p.symbol_bits == 8)
        out.status = HuffEncode({reinterpret_cast<const int8_t*>(sym.data()), sym.size()},
                                huff_k(p), &out.chunk.bytes);
      else
        out.status = HuffxEncode({reinterpret_cast<const int16_t*>(sym.data()), sym.size() / 2},
                                 huff_k(p), &out.chunk.bytes);
      if (!out.status.ok()) return;
      out.acc = known ? (*known)[c] : chunk_error(dp, sym, c);
    });
    for (const ChunkOut& out : outs) HCT_RETURN_IF_ERROR(out.status);
    return Status::OK();
  };
  auto summarize = [&](const std::vector<ChunkOut>& outs) {
    ErrorAccumulator acc;
    uint64_t stored = 0;
    for (const ChunkOut& out : outs) acc.Merge(out.acc), stored += out.chunk.bytes.size();
    return acc.Finish(n, stored);
  };

  // Verify the target on the whole tensor; correct the step a few times if the sample misled.
  // Each candidate step is evaluated (histograms or errors only); the chunks are written once.
  const bool err_mode = o.mode == RateMode::kMaxError;
  Eval cur;
  if (o.mode == RateMode::kMaxError || o.mode == RateMode::kBits) {
    const double target = err_mode ? o.max_error : o.bits;
    auto value = [&](const QualityMetrics& q) {
      return err_mode ? q.rel_rms_error : q.bits_per_weight;
    };
    auto meets = [&](const QualityMetrics& q) { return value(q) <= target * (1 + o.tolerance); };
    HCT_RETURN_IF_ERROR(evaluate(plan, !err_mode, err_mode, &cur));
    for (int iter = 0; iter < 4; ++iter) {
      const double v = value(cur.m);
      const bool too_far = v < target * (1 - 3 * o.tolerance);
      if (meets(cur.m) && !too_far) break;
      Plan next = plan;
      const double aim = target * (1 - 0.3 * o.tolerance);
      if (err_mode) {
        if (v <= 0) break;
        next.step = plan.step * aim / v;  // error ~ proportional to the step
      } else {
        next.step = plan.step * std::exp2(v - aim);  // ~1 bit per halving of the step
      }
      if (static_cast<float>(next.step) == static_cast<float>(plan.step)) break;
      Eval ev2;
      HCT_RETURN_IF_ERROR(evaluate(next, !err_mode, err_mode, &ev2));
      // Keep the new one if it meets the target, or the old one did not either.
      if (meets(ev2.m) || !meets(cur.m)) {
        plan = next, cur = std::move(ev2);
      } else {
        break;  // the old one met the target (only a bit too well); keep it
      }
    }
  }
  std::vector<ChunkOut> outs;
  HCT_RETURN_IF_ERROR(encode_all(plan, err_mode ? &cur.acc : nullptr, outs));
  const QualityMetrics m = summarize(outs);

  // JSON has no infinities or NaN: nlohmann writes them as null and a decoder then refuses the
  // file, so a step that is not finite never goes into one (the tensor goes lossless).
  const double step = static_cast<double>(static_cast<float>(plan.step));
  if (!std::isfinite(step))
    return Status::Unsupported("values too large for a finite quantization step");
  EncodedTensor enc;
  enc.codec = std::string(!huff(plan)                ? kCodecDctqZstd
                          : plan.symbol_bits == 8 ? kCodecDctqHuff
                                                  : kCodecDctqHuffx);
  nlohmann::json params = {{"transform", plan.dct ? "dct" : "none"},
                           {"tile_r", plan.dct ? plan.tile_r : 1},
                           {"tile_c", plan.dct ? plan.tile_c : 1},
                           {"step", step},
                           {"symbol_bits", plan.symbol_bits},
                           {"rows", rows},
                           {"cols", cols},
                           {"rows_per_chunk", rpc},
                           {"entropy", huff(plan) ? "huff" : "zstd"}};
  if (huff(plan)) params["substream"] = huff_k(plan);
  enc.params = params.dump();
  enc.chunks.reserve(outs.size());
  for (ChunkOut& out : outs) enc.chunks.push_back(std::move(out.chunk));
  enc.metrics = m;
  return enc;
}

}  // namespace hct::detail
