// Codec measurements (docs/hct-format.md §5): lossless ratios, lossy bits at the RTN INT4-g128
// error, encode/decode speed, zstd settings on real symbols, DCT matrix form vs FFTW.
//
//   hct_bench_codec --weights ../shared/weights [--what lossless,lossy,zstd,dct,chunks]
//   hct_bench_codec --what encspeed [--shapes 8192x8192,28672x8192] [--threads 1,2,4,8,16]
//                   [--bits 3.8 | --max-error E] [--reps 1]
#ifdef HCT_WITH_FFTW
#include <fftw3.h>
#endif

#include <time.h>
#include <chrono>
#include <iostream>
#include <random>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <boost/program_options.hpp>

#include <nlohmann/json.hpp>

#include "codec/detail/codec_internal.h"
#include "codec/detail/dct.h"
#include "codec/detail/zstd_util.h"
#include "hct/codec.h"
#include "tests/codec/codec_weights.h"

#include "bench/bench_util.h"

namespace po = boost::program_options;
using namespace hct;
// The machine is shared (load ~5x its cores), so speeds use this thread's CPU time: the
// per-core speed. Every measurement here runs on one thread.
struct Clock {
  using time_point = double;
  static double now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  }
};

namespace {

double Secs(double a) { return Clock::now() - a; }

struct Model {
  std::string name;
  std::vector<testing::StFile> files;
};

Model LoadModel(const std::string& dir, const std::string& name) {
  Model m{name, {}};
  for (const std::string& f : testing::SafetensorsFiles(dir)) {
    auto st = testing::LoadSafetensors(f);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.status().ToString().c_str());
      continue;
    }
    m.files.push_back(std::move(st).value());
  }
  return m;
}

template <class F>
void ForTensors(const Model& m, F f) {
  for (const auto& file : m.files)
    for (const auto& t : file.tensors) f(t);
}

// ---- (a) lossless ------------------------------------------------------------------------
void Lossless(const std::string& root) {
  std::printf("\n## (a) lossless (bytesplit-zstd, exponent planes, level 1; raw when < 1%%)\n");
  std::printf("%-40s %12s %12s %7s %9s %9s\n", "model", "bytes", "stored", "ratio", "enc MB/s",
              "dec MB/s");
  for (const std::string& sub : {"kdoc-lm-25m", "stories260K", "use-lite", "vision"}) {
    const std::string dir = root + "/" + sub;
    for (const std::string& f : testing::SafetensorsFiles(dir)) {
      auto file = testing::LoadSafetensors(f);
      if (!file.ok()) continue;
      uint64_t orig = 0, stored = 0;
      double te = 0, td = 0;
      for (const auto& t : file->tensors) {
        auto t0 = Clock::now();
        auto enc = EncodeTensor(t.view(), {});
        te += Secs(t0);
        if (!enc.ok()) continue;
        orig += t.data.size(), stored += enc->metrics.stored_bytes;
        auto dec = ChunkDecoder::Create(enc->codec, enc->params, t.dtype);
        std::vector<std::byte> out(t.data.size());
        t0 = Clock::now();
        for (const auto& c : enc->chunks) {
          const uint64_t off = *DTypeBytes(t.dtype, c.elem_offset);
          (void)dec->Decode(c.bytes, ChunkMeta(c), std::span(out).subspan(off, c.decoded_size));
        }
        td += Secs(t0);
        if (out != std::vector<std::byte>(t.data.begin(), t.data.end()))
          std::printf("MISMATCH %s\n", t.name.c_str());
      }
      std::string name = f.substr(root.size() + 1);
      std::printf("%-40s %12lu %12lu %7.4f %9.1f %9.1f\n", name.c_str(), orig, stored,
                  double(orig) / stored, orig / te / 1e6, orig / td / 1e6);
    }
  }
}

// Plane variants on one model: split x zstd settings, ratio and single-thread speeds.
void LosslessVariants(const Model& m) {
  std::printf("\n## (a') lossless variants on %s (BF16 tensors)\n", m.name.c_str());
  struct Var {
    std::string name;
    bool exp;
    detail::ZstdSettings zs;
  };
  std::vector<Var> vars;
  for (bool e : {false, true})
    for (int lv : {1, 3, 9, 19}) vars.push_back({(e ? "exp   L" : "bytes L") + std::to_string(lv), e, {lv}});
  detail::ZstdSettings huf{1, 1, 1, 0};  // strategy fast, literals huffman
  vars.push_back({"exp   L1 fast+huf", true, huf});
  detail::ZstdSettings huf7{1, 1, 1, 7};
  vars.push_back({"exp   L1 fast+huf minMatch7", true, huf7});
  detail::ZstdSettings neg{-1, 0, 1, 0};
  vars.push_back({"exp   L-1 +huf", true, neg});
  std::printf("%-30s %7s %8s %9s %9s %9s\n", "variant", "ratio", "plane0 b", "plane1 b",
              "enc MB/s", "dec MB/s");
  for (const Var& v : vars) {
    uint64_t orig = 0, stored = 0, p0 = 0, p1 = 0, n_all = 0;
    double te = 0, td = 0;
    ForTensors(m, [&](const testing::StTensor& t) {
      if (t.dtype != DType::kBF16) return;
      const uint64_t n = t.elements();
      for (uint64_t c0 = 0; c0 < n; c0 += 2u << 20) {  // 4 MiB chunks
        const uint64_t cn = std::min<uint64_t>(2u << 20, n - c0);
        std::vector<std::byte> planes(2 * cn);
        auto t0 = Clock::now();
        for (uint64_t i = 0; i < cn; ++i) {
          uint16_t w;
          std::memcpy(&w, t.data.data() + 2 * (c0 + i), 2);
          if (v.exp) w = static_cast<uint16_t>((w << 1) | (w >> 15));
          planes[i] = static_cast<std::byte>(w >> 8);
          planes[cn + i] = static_cast<std::byte>(w & 0xff);
        }
        std::vector<std::byte> a, b;
        (void)detail::ZstdCompress(std::span(planes).first(cn), v.zs, &a);
        (void)detail::ZstdCompress(std::span(planes).subspan(cn), v.zs, &b);
        te += Secs(t0);
        std::vector<std::byte> back(cn);
        t0 = Clock::now();
        (void)detail::ZstdDecompressExact(a, back);
        (void)detail::ZstdDecompressExact(b, back);
        td += Secs(t0);
        orig += 2 * cn, n_all += cn;
        p0 += std::min<uint64_t>(a.size(), cn), p1 += std::min<uint64_t>(b.size(), cn);
        stored += std::min<uint64_t>(a.size(), cn) + std::min<uint64_t>(b.size(), cn);
      }
    });
    std::printf("%-30s %7.4f %8.3f %9.3f %9.1f %9.1f\n", v.name.c_str(), double(orig) / stored,
                p0 * 8.0 / n_all, p1 * 8.0 / n_all, orig / te / 1e6, orig / td / 1e6);
  }
}

// ---- (b)(c) lossy at the RTN INT4-g128 error -----------------------------------------------
struct LossyRun {
  double bits = 0;  // stored bits, lossy tensors
  uint64_t elems = 0, in_bytes = 0;
  double err2 = 0, ref2 = 0;
  double enc_s = 0, dec_s = 0;
  std::map<std::string, int> picked;
  std::vector<std::pair<std::string, EncodedTensor>> encs;
};

LossyRun RunLossy(const Model& m, LossyOptions lo, bool per_tensor_target, double global_target,
                  bool keep_encs, bool verbose) {
  LossyRun r;
  PolicyOptions pol;
  ForTensors(m, [&](const testing::StTensor& t) {
    if (!ChooseCodecClass(t.name, t.dtype, t.shape, pol).lossy) return;
    auto base = RtnInt4Group(t.view());
    lo.max_error = per_tensor_target ? base->rel_rms_error : global_target;
    EncodeOptions o;
    o.lossy = true;
    o.lossy_options = lo;
    auto t0 = Clock::now();
    auto enc = EncodeTensor(t.view(), o);
    r.enc_s += Secs(t0);
    if (!enc.ok()) {
      std::printf("%s: %s\n", t.name.c_str(), enc.status().ToString().c_str());
      return;
    }
    auto dec = ChunkDecoder::Create(enc->codec, enc->params, t.dtype);
    std::vector<std::byte> out(t.data.size());
    t0 = Clock::now();
    for (const auto& c : enc->chunks)
      (void)dec->Decode(c.bytes, ChunkMeta(c), std::span(out).subspan(2 * c.elem_offset, 2 * c.elem_count));
    r.dec_s += Secs(t0);
    const auto& q = enc->metrics;
    r.bits += q.stored_bytes * 8.0;
    r.elems += q.elements;
    r.in_bytes += t.data.size();
    const double ref2 = base->sum_sq_ref;
    r.ref2 += ref2, r.err2 += q.rel_rms_error * q.rel_rms_error * ref2;
    std::string tr = enc->codec == "dctq-zstd" ? nlohmann::json::parse(enc->params)["transform"].get<std::string>()
                                               : enc->codec;
    r.picked[tr]++;
    if (verbose)
      std::printf("  %-44s %-11s %5s int4err %.4f err %.4f bits %.3f cos %.5f snr %.2f\n",
                  t.name.c_str(), (std::to_string(t.shape[0]) + "x" + std::to_string(t.shape.back())).c_str(),
                  tr.c_str(), base->rel_rms_error, q.rel_rms_error, q.bits_per_weight, q.cosine,
                  q.snr_db);
    if (keep_encs) r.encs.emplace_back(t.name, std::move(enc).value());
  });
  return r;
}

double Lossy(const Model& m, bool verbose) {
  std::printf("\n## (b) RTN baselines on %s (lossy-policy tensors)\n", m.name.c_str());
  PolicyOptions pol;
  double e4 = 0, r4 = 0, e8 = 0, mean4 = 0, b8 = 0;
  uint64_t n = 0, cnt = 0, all = 0, lossless_elems = 0;
  double lossless_bits = 0;
  ForTensors(m, [&](const testing::StTensor& t) {
    all += t.elements();
    if (!ChooseCodecClass(t.name, t.dtype, t.shape, pol).lossy) {
      auto enc = EncodeTensor(t.view(), {});
      lossless_bits += enc->metrics.stored_bytes * 8.0;
      lossless_elems += t.elements();
      return;
    }
    auto a = RtnInt4Group(t.view());
    auto b = RtnInt8PerChannel(t.view());
    e4 += a->sum_sq_err, r4 += a->sum_sq_ref, e8 += b->sum_sq_err;
    mean4 += a->rel_rms_error, ++cnt;
    b8 += b->bits_per_weight * t.elements();
    n += t.elements();
  });
  const double int4 = std::sqrt(e4 / r4);
  std::printf("lossy tensors %lu elems of %lu; lossless rest %lu elems at %.3f bits\n", n, all,
              lossless_elems, lossless_bits / std::max<uint64_t>(1, lossless_elems));
  std::printf("INT4-g128 sym absmax: rel RMS (global) %.4f, mean of per-tensor %.4f, 4.125 bits\n",
              int4, mean4 / cnt);
  std::printf("INT8 per-channel: rel RMS (global) %.5f, bits %.4f\n", std::sqrt(e8 / r4), b8 / n);

  std::printf("\n## (b) dctq-zstd at each tensor's INT4-g128 error (auto, tile 16, level 1)\n");
  LossyOptions lo;
  LossyRun r = RunLossy(m, lo, true, 0, false, verbose);
  std::printf("auto per-tensor target: avg bits %.4f (lossy tensors), global rel err %.4f; picked:",
              r.bits / r.elems, std::sqrt(r.err2 / r.ref2));
  for (auto& [k, v] : r.picked) std::printf(" %s=%d", k.c_str(), v);
  std::printf("\n  incl. lossless tensors: %.4f bits/weight overall\n",
              (r.bits + lossless_bits) / (r.elems + lossless_elems));
  std::printf("(c) encode 1 thread: %.1f MB/s of BF16 input (%.2f s for %.1f MB); CPU decode "
              "1 thread: %.1f MB/s of BF16 output\n",
              r.in_bytes / r.enc_s / 1e6, r.enc_s, r.in_bytes / 1e6, r.in_bytes / r.dec_s / 1e6);
  return int4;

}

void LossyVariants(const Model& m, double int4) {
  LossyOptions lo;
  std::printf("\n## (b') variants (per-tensor INT4 target unless noted)\n");
  std::printf("%-36s %8s %9s %9s %s\n", "variant", "bits", "rel err", "enc MB/s", "picked");
  auto row = [&](const std::string& name, LossyOptions o, bool per, double g) {
    LossyRun q = RunLossy(m, o, per, g, false, false);
    std::string p;
    for (auto& [k, v] : q.picked) p += k + "=" + std::to_string(v) + " ";
    std::printf("%-36s %8.4f %9.4f %9.1f %s\n", name.c_str(), q.bits / q.elems,
                std::sqrt(q.err2 / q.ref2), q.in_bytes / q.enc_s / 1e6, p.c_str());
  };
  row("auto, global target", lo, false, int4);
  for (int tile : {8, 16, 32}) {
    LossyOptions o = lo;
    o.tile_r = o.tile_c = tile;
    o.transform = Transform::kDct;
    row("dct only, tile " + std::to_string(tile), o, true, 0);
  }
  {
    LossyOptions o = lo;
    o.transform = Transform::kNone;
    row("none only", o, true, 0);
    o.tile_r = o.tile_c = 8;
    o.transform = Transform::kAuto;
    row("auto, tile 8", o, true, 0);
  }
  for (double dz : {0.1, 0.2}) {
    LossyOptions o = lo;
    o.dead_zone = dz;
    std::ostringstream s;
    s << "auto, dead zone " << dz;
    row(s.str(), o, true, 0);
  }
  for (int lv : {3, 9}) {
    LossyOptions o = lo;
    o.zstd_level = lv;
    row("auto, zstd level " + std::to_string(lv), o, true, 0);
  }
  {
    LossyOptions o = lo;
    o.mode = RateMode::kRetention;
    o.retention = 0.7;
    LossyRun q = RunLossy(m, o, true, 0, true, false);
    double mincos = 1;
    for (auto& [nm, e] : q.encs) mincos = std::min(mincos, e.metrics.cosine);
    std::printf("%-36s %8.4f %9.4f %9.1f min cosine %.5f\n", "retention 0.7", q.bits / q.elems,
                std::sqrt(q.err2 / q.ref2), q.in_bytes / q.enc_s / 1e6, mincos);
  }
}

// ---- (d) zstd settings on real symbols ---------------------------------------------------------
void ZstdOnSymbols(const Model& m) {
  std::printf("\n## (d) zstd settings on real dctq symbols (%s, auto at INT4 error)\n",
              m.name.c_str());
  LossyRun r = RunLossy(m, {}, true, 0, true, false);
  std::vector<std::vector<std::byte>> syms;
  uint64_t nsym = 0;
  std::map<int, uint64_t> hist;
  for (auto& [name, e] : r.encs) {
    auto dec = ChunkDecoder::Create(e.codec, e.params, DType::kBF16);
    for (auto& c : e.chunks) {
      std::vector<std::byte> s(c.decoded_size);
      (void)dec->DecodePayload(c.bytes, ChunkMeta(c), s);
      if (nlohmann::json::parse(e.params)["symbol_bits"] == 8) {
        for (std::byte b : s) hist[static_cast<int8_t>(b)]++;
        nsym += s.size();
      }
      syms.push_back(std::move(s));
    }
  }
  double H = 0;
  for (auto& [k, v] : hist) H -= double(v) / nsym * std::log2(double(v) / nsym);
  std::printf("int8 symbols: %lu, order-0 entropy %.4f bits/symbol\n", nsym, H);
  struct Cfg {
    std::string name;
    detail::ZstdSettings zs;
  };
  std::vector<Cfg> cfgs = {{"L1", {1}},        {"L3", {3}},         {"L9", {9}},
                           {"L19", {19}},       {"L1 fast+huf", {1, 1, 1, 0}},
                           {"L1 fast+huf mm7", {1, 1, 1, 7}}, {"L-1 +huf", {-1, 0, 1, 0}},
                           {"L-1 (no huf)", {-1}}};
  std::printf("%-20s %10s %10s %10s\n", "setting", "bits/sym", "enc MB/s", "dec MB/s");
  for (const Cfg& c : cfgs) {
    uint64_t in = 0, out = 0;
    double te = 0, td = 0;
    for (auto& s : syms) {
      std::vector<std::byte> z;
      auto t0 = Clock::now();
      (void)detail::ZstdCompress(s, c.zs, &z);
      te += Secs(t0);
      std::vector<std::byte> back(s.size());
      t0 = Clock::now();
      (void)detail::ZstdDecompressExact(z, back);
      td += Secs(t0);
      in += s.size(), out += z.size();
    }
    std::printf("%-20s %10.4f %10.1f %10.1f\n", c.name.c_str(), out * 8.0 / in, in / te / 1e6,
                in / td / 1e6);
  }
}

// ---- chunk size (needs a tensor with > 4 Mi elements) --------------------------------------
void ChunkSizes(const Model& m) {
  std::printf("\n## chunk size (dctq auto at INT4 error, tensors >= 1 Mi elements of %s)\n",
              m.name.c_str());
  for (uint64_t cs : {256u << 10, 1u << 20, 2u << 20, 4u << 20}) {
    LossyOptions lo;
    lo.chunk_symbols = cs;
    double bits = 0;
    uint64_t n = 0, chunks = 0;
    ForTensors(m, [&](const testing::StTensor& t) {
      if (t.elements() < (1u << 20) || t.dtype == DType::kI32 || t.shape.size() < 2) return;
      auto b = RtnInt4Group(t.view());
      if (!b.ok()) return;
      EncodeOptions o;
      o.lossy = true;
      o.lossy_options = lo;
      o.lossy_options.max_error = b->rel_rms_error;
      auto e = EncodeTensor(t.view(), o);
      if (!e.ok()) return;
      bits += e->metrics.stored_bytes * 8.0, n += t.elements(), chunks += e->chunks.size();
    });
    if (n) std::printf("chunk_symbols %8lu: %lu chunks, %.4f bits/weight\n", cs, chunks, bits / n);
  }
}

// ---- encoder speed on 70B-shaped tensors (issue 13 item 5) -------------------------------
// Synthetic BF16 weights shaped like Llama-70B projections: Gaussian values whose scale varies
// by row and column (as trained weights' do) plus rare outliers, so the rate search, the
// transform choice and the Huffman tables work on realistic histograms. For each thread count
// the whole EncodeTensor runs with ThreadsParallelFor(threads) (the path hct-convert takes
// for a tensor larger than a chunk); printed: wall MB/s of BF16 input, process CPU time and
// MB/s per core (input bytes / CPU seconds), the scaling against one thread, and whether the
// output is bit-identical to the one-thread output (hash of every chunk and the params).
double ProcessCpu() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

std::vector<std::byte> SyntheticBf16(uint64_t rows, uint64_t cols, uint64_t seed) {
  std::vector<std::byte> out(2 * rows * cols);
  std::vector<float> col_scale(cols);
  std::mt19937_64 g(seed);
  std::lognormal_distribution<float> ln(0.0f, 0.35f);
  for (float& c : col_scale) c = ln(g);
  std::vector<float> row(cols);
  for (uint64_t r = 0; r < rows; ++r) {
    std::mt19937_64 gr(seed * 1000003 + r);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::lognormal_distribution<float> lr(0.0f, 0.25f);
    const float rs = 0.02f * lr(gr);
    for (uint64_t j = 0; j < cols; ++j) {
      float v = nd(gr) * rs * col_scale[j];
      if ((gr() & 4095) == 0) v *= 8;  // outliers
      row[j] = v;
    }
    (void)FromFloat(row, DType::kBF16, std::span(out).subspan(2 * r * cols, 2 * cols));
  }
  return out;
}

uint64_t EncodingHash(const EncodedTensor& e) {
  std::string s = e.codec + e.params;
  uint64_t h = detail::Xxh3(std::as_bytes(std::span(s)));
  for (const EncodedChunk& c : e.chunks)
    h = h * 1000003 ^ detail::Xxh3(c.bytes) ^ (c.elem_offset * 31 + c.decoded_xxh3);
  return h;
}

void EncodeSpeed(const std::string& shapes, const std::string& threads_list, double bits,
                 double max_error, int reps) {
  std::vector<std::pair<uint64_t, uint64_t>> sh;
  {
    std::stringstream ss(shapes);
    for (std::string s; std::getline(ss, s, ',');) {
      const size_t x = s.find('x');
      sh.push_back({std::stoull(s.substr(0, x)), std::stoull(s.substr(x + 1))});
    }
  }
  std::vector<int> ths;
  {
    std::stringstream ss(threads_list);
    for (std::string s; std::getline(ss, s, ',');) ths.push_back(std::stoi(s));
  }
  LossyOptions lo;
  if (max_error > 0) {
    lo.mode = RateMode::kMaxError, lo.max_error = max_error;
  } else {
    lo.mode = RateMode::kBits, lo.bits = bits;
  }
  lo.chunk_symbols = 1u << 20;  // hct-convert's default chunk
  std::printf("\n## encoder speed, synthetic 70B-shaped BF16 tensors (%s %g, chunk 1M, huff)\n",
              max_error > 0 ? "--max-error" : "--bits", max_error > 0 ? max_error : bits);
  std::printf("hardware threads: %u; CPU time = process CPU time (all threads)\n",
              std::thread::hardware_concurrency());
  std::printf("%-12s %7s %9s %9s %10s %9s %8s %8s %6s %s\n", "shape", "threads", "wall s",
              "cpu s", "wall MB/s", "MB/s/core", "speedup", "bits", "err", "same");
  for (auto [rows, cols] : sh) {
    const std::vector<std::byte> data = SyntheticBf16(rows, cols, rows * 131 + cols);
    const std::vector<uint64_t> shape = {rows, cols};
    TensorView v{data, DType::kBF16, shape};
    uint64_t ref_hash = 0;
    double wall1 = 0;
    for (int th : ths) {
      EncodeOptions o;
      o.lossy = true;
      o.lossy_options = lo;
      o.parallel = ThreadsParallelFor(th);
      double best_wall = 1e30, cpu_at_best = 0;
      Result<EncodedTensor> enc = Status::Internal("not run");
      for (int r = 0; r < reps; ++r) {
        const double c0 = ProcessCpu();
        const auto w0 = std::chrono::steady_clock::now();
        enc = EncodeTensor(v, o);
        const double wall =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
        const double cpu = ProcessCpu() - c0;
        if (wall < best_wall) best_wall = wall, cpu_at_best = cpu;
      }
      if (!enc.ok()) {
        std::printf("encode failed: %s\n", enc.status().ToString().c_str());
        return;
      }
      const uint64_t h = EncodingHash(*enc);
      if (th == ths.front()) ref_hash = h, wall1 = best_wall;
      const double mb = data.size() / 1e6;
      std::printf("%-12s %7d %9.3f %9.3f %10.1f %9.1f %8.2f %8.4f %6.4f %s\n",
                  (std::to_string(rows) + "x" + std::to_string(cols)).c_str(), th, best_wall,
                  cpu_at_best, mb / best_wall, mb / cpu_at_best, wall1 / best_wall,
                  enc->metrics.bits_per_weight, enc->metrics.rel_rms_error,
                  h == ref_hash ? "yes" : "NO");
      std::fflush(stdout);
    }
  }
}

// ---- DCT: matrix form vs FFTW (built only where FFTW was found) ------------------------------
#ifndef HCT_WITH_FFTW
void DctBench() { std::printf("\n## DCT vs FFTW: not built (FFTW was not found at configure time)\n"); }
#else
void DctBench() {
  std::printf("\n## DCT forward+inverse, 1024 x 1024 floats, 1 thread (Melem/s per direction)\n");
  const uint64_t R = 1024, C = 1024;
  std::vector<float> x(R * C);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(i * 0.37f);
  for (int T : {8, 16, 32}) {
    std::vector<float> y = x;
    auto t0 = Clock::now();
    for (int k = 0; k < 5; ++k) {
      detail::DctTiled(y.data(), R, C, T, T, false);
      detail::DctTiled(y.data(), R, C, T, T, true);
    }
    const double mat = 10.0 * R * C / Secs(t0) / 1e6;
    // FFTW: guru plans over all tiles, rows then columns; then the orthonormal scaling.
    std::vector<float> f = x;
    fftwf_iodim rd = {T, 1, 1};
    fftwf_iodim rh[2] = {{int(C / T), T, T}, {int(R), int(C), int(C)}};
    fftwf_iodim cd = {T, int(C), int(C)};
    fftwf_iodim ch[2] = {{int(C), 1, 1}, {int(R / T), int(T * C), int(T * C)}};
    fftwf_r2r_kind k10 = FFTW_REDFT10, k01 = FFTW_REDFT01;
    fftwf_plan pr = fftwf_plan_guru_r2r(1, &rd, 2, rh, f.data(), f.data(), &k10, FFTW_MEASURE);
    fftwf_plan pc = fftwf_plan_guru_r2r(1, &cd, 2, ch, f.data(), f.data(), &k10, FFTW_MEASURE);
    fftwf_plan ir = fftwf_plan_guru_r2r(1, &rd, 2, rh, f.data(), f.data(), &k01, FFTW_MEASURE);
    fftwf_plan ic = fftwf_plan_guru_r2r(1, &cd, 2, ch, f.data(), f.data(), &k01, FFTW_MEASURE);
    f = x;
    std::vector<float> sc(T);
    for (int k = 0; k < T; ++k) sc[k] = k == 0 ? std::sqrt(1.0f / (4 * T)) : std::sqrt(1.0f / (2 * T));
    t0 = Clock::now();
    for (int rep = 0; rep < 5; ++rep) {
      fftwf_execute(pr);
      fftwf_execute(pc);
      for (uint64_t i = 0; i < R; ++i)
        for (uint64_t j = 0; j < C; ++j) f[i * C + j] *= sc[i % T] * sc[j % T];
      // Inverse: undo scaling for REDFT01 (x = sum c'(k) y_k cos..., with y_0 weighted 1/2 ... )
      for (uint64_t i = 0; i < R; ++i)
        for (uint64_t j = 0; j < C; ++j)
          f[i * C + j] *= (i % T ? std::sqrt(0.5f / T) : std::sqrt(1.0f / T)) *
                          (j % T ? std::sqrt(0.5f / T) : std::sqrt(1.0f / T));
      fftwf_execute(ic);
      fftwf_execute(ir);
    }
    const double fft = 10.0 * R * C / Secs(t0) / 1e6;
    double maxd = 0;  // check both really were orthonormal round trips
    for (size_t i = 0; i < x.size(); ++i)
      maxd = std::max<double>(maxd, std::fabs(f[i] - x[i])), maxd = std::max<double>(maxd, std::fabs(y[i] - x[i]));
    std::printf("T=%2d  matrix %8.1f   fftw %8.1f   (max round-trip diff %.2g)\n", T, mat, fft,
                maxd);
    fftwf_destroy_plan(pr), fftwf_destroy_plan(pc), fftwf_destroy_plan(ir), fftwf_destroy_plan(ic);
  }
}
#endif  // HCT_WITH_FFTW

}  // namespace

int main(int argc, char** argv) {
  std::string weights = "../shared/weights", what, shapes = "8192x8192,28672x8192",
              threads_list = "1,2";
  double bits = 3.8, max_error = 0;
  int reps = 1;
  po::options_description desc("hct_bench_codec");
  desc.add_options()("help", "this help")(
      "weights", po::value(&weights)->default_value("../shared/weights"), "shared weights dir")(
      "what", po::value(&what)->default_value("lossless,variants,lossy,lossyvar,verbose,zstd,chunks,dct"),
      "comma-separated sections (encspeed: encoder speed only, not in the default list)")(
      "shapes", po::value(&shapes)->default_value(shapes), "encspeed: RxC,RxC,...")(
      "threads", po::value(&threads_list)->default_value(threads_list),
      "encspeed: thread counts, first one is the reference for speedup and identity")(
      "bits", po::value(&bits)->default_value(bits), "encspeed: --bits target")(
      "max-error", po::value(&max_error)->default_value(0), "encspeed: --max-error target instead")(
      "reps", po::value(&reps)->default_value(reps), "encspeed: repetitions (best wall kept)");
  po::variables_map vm;
  if (auto rc = hct::bench::ParseCommandLine(argc, argv, desc, vm)) return *rc;
  std::set<std::string> sec;
  std::stringstream ss(what);
  for (std::string s; std::getline(ss, s, ',');) sec.insert(s);
  if (sec.count("encspeed")) {
    EncodeSpeed(shapes, threads_list, bits, max_error, reps);
    if (sec.size() == 1) return 0;
  }
  Model kdoc = LoadModel(weights + "/kdoc-lm-25m", "kdoc-lm-25m");
  if (kdoc.files.empty()) std::fprintf(stderr, "no kdoc-lm-25m under %s\n", weights.c_str());
  if (sec.count("lossless")) Lossless(weights);
  if (sec.count("variants")) LosslessVariants(kdoc);
  if (sec.count("lossy") || sec.count("lossyvar")) {
    const double int4 = Lossy(kdoc, sec.count("verbose") > 0);
    if (sec.count("lossyvar")) LossyVariants(kdoc, int4);
  }
  if (sec.count("zstd")) ZstdOnSymbols(kdoc);
  if (sec.count("chunks")) ChunkSizes(LoadModel(weights + "/use-lite", "use-lite"));
  if (sec.count("dct")) DctBench();
  return 0;
}
