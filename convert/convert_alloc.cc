// Bit allocation across tensors: a model-level --bits target spent where the (sensitivity-
// weighted) error falls fastest per bit (include/hct/convert.h, BitAllocation; the solver in
// convert/detail/allocate.h; measurements in docs/QUALITY.md).
//
// Why equal slope: with one uniform step per tensor the quantization error of tensor t is close
// to white, mean square D_t per weight, so the expected rise of the loss is about
// 1/2 sum_t F_t D_t (F_t: the tensor's summed Fisher diagonal, scripts/hct_sensitivity.py).
// Minimising that under sum_t N_t R_t = budget (Lagrange) puts every tensor where
// F_t dD_t/dR_t = -lambda N_t: the same loss saved per bit everywhere. The curves D_t(R) are
// priced with the codec itself (fixed steps, the encoder's own transform choice and entropy
// stage) on a sample of whole tile-rows; the final encode then meets each tensor's bits with the
// usual rate search, so the total spent is the budget whatever the sample's error.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/detail/allocate.h"
#include "convert/detail/convert_internal.h"
#include "hct/codec.h"
#include "hct/convert.h"
#include "hct/safetensors.h"

namespace hct {
namespace detail {
namespace {

constexpr double kGrid = 1.0 / 256;  // bits resolution of the solver

// A curve on a uniform bits grid: rate r0 + j * kGrid, log mse interpolated.
struct Gridded {
  double r0 = 0;
  std::vector<double> mse;
  double wpw = 0;  // weight per element
  uint64_t elements = 0;
};

Gridded ToGrid(const RateCurve& c) {
  std::vector<std::pair<double, double>> pts;
  for (size_t i = 0; i < c.bits.size() && i < c.mse.size(); ++i)
    if (c.mse[i] > 0 && std::isfinite(c.mse[i]) && std::isfinite(c.bits[i]))
      pts.emplace_back(c.bits[i], std::log(c.mse[i]));
  std::sort(pts.begin(), pts.end());
  Gridded g;
  g.elements = c.elements;
  g.wpw = c.elements ? std::max(0.0, c.weight) / c.elements : 0;
  if (pts.empty()) return g;
  g.r0 = pts.front().first;
  const size_t n = static_cast<size_t>(std::floor((pts.back().first - g.r0) / kGrid)) + 1;
  g.mse.resize(n);
  size_t seg = 0;
  for (size_t j = 0; j < n; ++j) {
    const double r = g.r0 + j * kGrid;
    while (seg + 2 < pts.size() && pts[seg + 1].first < r) ++seg;
    double lm = pts[seg].second;
    if (seg + 1 < pts.size() && pts[seg + 1].first > pts[seg].first) {
      const double a = std::clamp((r - pts[seg].first) / (pts[seg + 1].first - pts[seg].first),
                                  0.0, 1.0);
      lm = pts[seg].second + a * (pts[seg + 1].second - pts[seg].second);
    }
    g.mse[j] = std::exp(lm);
  }
  return g;
}

// Grid index minimising wpw * mse + lambda * rate (ties: the higher rate).
size_t Best(const Gridded& g, double lambda) {
  size_t best = 0;
  double bv = std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < g.mse.size(); ++j) {
    const double v = g.wpw * g.mse[j] + lambda * (g.r0 + j * kGrid);
    if (v <= bv) bv = v, best = j;
  }
  return best;
}

}  // namespace

std::vector<double> SolveAllocation(const std::vector<RateCurve>& curves, double total_bits) {
  std::vector<Gridded> g;
  g.reserve(curves.size());
  for (const RateCurve& c : curves) g.push_back(ToGrid(c));
  std::vector<size_t> pick(g.size(), 0);
  auto spent = [&](const std::vector<size_t>& p) {
    double s = 0;
    for (size_t t = 0; t < g.size(); ++t) s += g[t].elements * (g[t].r0 + p[t] * kGrid);
    return s;
  };
  auto at = [&](double lambda) {
    std::vector<size_t> p(g.size(), 0);
    for (size_t t = 0; t < g.size(); ++t) p[t] = g[t].mse.empty() ? 0 : Best(g[t], lambda);
    return p;
  };
  // lambda brackets: the steepest and the flattest weighted slope of any curve.
  double smin = std::numeric_limits<double>::infinity(), smax = 0;
  for (const Gridded& c : g)
    for (size_t j = 1; j < c.mse.size(); ++j) {
      const double s = c.wpw * (c.mse[j - 1] - c.mse[j]) / kGrid;
      if (s > 0) smin = std::min(smin, s), smax = std::max(smax, s);
    }
  std::vector<double> out(g.size(), 0);
  if (!(smax > 0)) {  // no tensor's weighted error falls with the rate: lowest rates
    for (size_t t = 0; t < g.size(); ++t) out[t] = g[t].r0;
    return out;
  }
  double lo = std::log(smin / 4), hi = std::log(smax * 4);
  std::vector<size_t> phi = at(std::exp(hi)), plo = at(std::exp(lo));
  if (spent(plo) <= total_bits) {
    pick = plo;
  } else if (spent(phi) > total_bits) {
    pick = phi;
  } else {
    for (int i = 0; i < 100 && hi - lo > 1e-12; ++i) {
      const double mid = 0.5 * (lo + hi);
      std::vector<size_t> p = at(std::exp(mid));
      if (spent(p) <= total_bits) hi = mid, phi = std::move(p);
      else lo = mid, plo = std::move(p);
    }
    // The jump at lambda*: move tensors from their rate at hi towards that at lo while the
    // budget allows (identical curves jump together otherwise).
    pick = phi;
    double s = spent(pick);
    for (size_t t = 0; t < g.size(); ++t) {
      while (pick[t] < plo[t] && s + g[t].elements * kGrid <= total_bits) {
        ++pick[t];
        s += g[t].elements * kGrid;
      }
    }
  }
  for (size_t t = 0; t < g.size(); ++t) out[t] = g[t].r0 + pick[t] * kGrid;
  return out;
}

namespace {

// Elements of a tensor's pricing sample (whole tile-rows spread over the tensor). Small enough
// that pricing costs a fraction of the encode on big tensors; the whole tensor when smaller.
constexpr uint64_t kPriceElems = 256u << 10;
// Steps priced: rms * 2^(1 - k), k = 0..kPricePoints-1 (about 0.5 to 10 bits per weight).
constexpr int kPricePoints = 10;

struct PriceJob {
  const ModelTensor* mt = nullptr;
  RateCurve curve;
  bool ok = false;  // priced as a dctq tensor (else it keeps the uniform target)
  Status status;
};

// The sample: bands of `band` rows spread evenly, read with ReadAt (never the whole tensor).
Status ReadSample(const SafetensorsFile& f, const TensorInfo& ti, int band,
                  std::vector<std::byte>* bytes, uint64_t* srows, uint64_t* cols) {
  uint64_t rows = 0;
  View2D(ti.shape, &rows, cols);
  const uint64_t esize = DTypeBits(ti.dtype) / 8, row_bytes = *cols * esize;
  const uint64_t nb = (rows + band - 1) / band;
  const uint64_t want =
      std::clamp<uint64_t>((kPriceElems + band * *cols - 1) / (band * *cols), 1, nb);
  bytes->clear();
  *srows = 0;
  for (uint64_t i = 0; i < want; ++i) {
    const uint64_t r0 = (i * nb / want) * band, h = std::min<uint64_t>(band, rows - r0);
    const size_t at = bytes->size();
    bytes->resize(at + h * row_bytes);
    HCT_RETURN_IF_ERROR(f.ReadAt(ti, r0 * row_bytes, {bytes->data() + at, h * row_bytes}));
    *srows += h;
  }
  return Status::OK();
}

Status Price(const ModelFolder& in, const ConvertOptions& o, PriceJob& job) {
  const TensorInfo& ti = job.mt->info;
  std::vector<std::byte> bytes;
  uint64_t srows = 0, cols = 0;
  HCT_RETURN_IF_ERROR(ReadSample(in.file(*job.mt), ti, o.lossy.tile_r, &bytes, &srows, &cols));
  const uint64_t n = srows * cols;
  std::vector<float> x(n);
  HCT_RETURN_IF_ERROR(ToFloat(bytes, ti.dtype, x));
  double sxx = 0;
  for (float v : x) sxx += static_cast<double>(v) * v;
  if (!(sxx > 0) || !std::isfinite(sxx)) return Status::OK();  // nothing to allocate
  const double rms = std::sqrt(sxx / n);
  EncodeOptions eo;
  eo.lossy = true;
  eo.lossy_options = o.lossy;
  eo.lossy_options.mode = RateMode::kStep;
  eo.lossy_options.chunk_symbols = o.chunk_elems;
  eo.lossy_options.zstd_level = o.zstd_level;
  for (int k = 0; k < kPricePoints; ++k) {
    eo.lossy_options.step = rms * std::exp2(1.0 - k);
    HCT_ASSIGN_OR_RETURN(EncodedTensor e, EncodeTensor({bytes, ti.dtype, {srows, cols}}, eo));
    if (!IsDctqCodec(e.codec)) return Status::OK();  // stored losslessly: not allocated
    const double rel = e.metrics.rel_rms_error;
    job.curve.bits.push_back(e.metrics.bits_per_weight);
    job.curve.mse.push_back(rel * rel * sxx / n);
  }
  job.curve.elements = ti.num_elements();
  job.ok = true;
  return Status::OK();
}

}  // namespace

Result<std::map<std::string, double>> AllocateBits(const ModelFolder& in, const ConvertOptions& o,
                                                   const ParallelFor& pf) {
  std::vector<PriceJob> jobs;
  for (const ModelTensor& mt : in.tensors()) {
    const TensorInfo& ti = mt.info;
    if (ti.dtype != DType::kBF16 && ti.dtype != DType::kF16 && ti.dtype != DType::kF32) continue;
    if (!ChooseCodecClass(ti.name, ti.dtype, ti.shape, o.policy).lossy) continue;
    PriceJob j;
    j.mt = &mt;
    jobs.push_back(std::move(j));
  }
  pf(jobs.size(), [&](size_t i) { jobs[i].status = Price(in, o, jobs[i]); });
  std::vector<RateCurve> curves;
  std::vector<const PriceJob*> priced;
  double total = 0;
  for (PriceJob& j : jobs) {
    const std::string& name = j.mt->info.name;
    if (!j.status.ok())
      return j.status.WithContext("tensor '" + name + "'").WithContext(in.file(*j.mt).path());
    if (!j.ok) continue;
    if (o.allocation == BitAllocation::kSensitivity) {
      auto it = o.sensitivity.find(name);
      if (it == o.sensitivity.end())
        return Status::InvalidArgument("--sensitivity: no entry for tensor '" + name + "'");
      j.curve.weight = it->second;
    } else {
      j.curve.weight = static_cast<double>(j.curve.elements);  // kMse: every weight alike
    }
    total += o.lossy.bits * static_cast<double>(j.curve.elements);
    curves.push_back(j.curve);
    priced.push_back(&j);
  }
  const std::vector<double> bits = SolveAllocation(curves, total);
  std::map<std::string, double> out;
  for (size_t i = 0; i < priced.size(); ++i)
    out[priced[i]->mt->info.name] = std::clamp(bits[i], 0.05, 16.0);
  return out;
}

}  // namespace detail

Result<std::map<std::string, double>> ReadSensitivityFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound(path + ": cannot open the sensitivity file");
  std::stringstream ss;
  ss << f.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(path + ": not an hct-sensitivity file: " + why);
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (j.value("format", std::string()) != "hct-sensitivity") return bad("format is not 'hct-sensitivity'");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != 1)
    return bad("version is not 1");
  if (!j.contains("tensors") || !j["tensors"].is_object() || j["tensors"].empty())
    return bad("no \"tensors\" object");
  std::map<std::string, double> out;
  for (const auto& [name, e] : j["tensors"].items()) {
    if (!e.is_object() || !e.contains("fisher_sum") || !e["fisher_sum"].is_number())
      return bad("tensor '" + name + "' has no numeric fisher_sum");
    const double v = e["fisher_sum"].get<double>();
    if (!(v >= 0) || !std::isfinite(v))
      return bad("tensor '" + name + "': fisher_sum must be finite and >= 0");
    out[name] = v;
  }
  return out;
}

}  // namespace hct
