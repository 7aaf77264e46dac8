// Warm benchmark: hct-cache warm throughput from a safetensors model, from its lossless HCT
// conversion and from its lossy (default) HCT conversion, in MB/s of cached bytes (entry files
// written, fsynced and indexed), and verify --deep in GB/s (1 thread, and all threads per core).
// The model is converted first (hct::Convert into --dir). Every warm run starts from an empty
// cache; sources are in the page cache after the first (untimed) run. Medians of --runs.
//
//   hct_bench_warm [--model DIR] [--dir SCRATCH] [--runs N] [--threads N] [--synthetic-mib N]
//
// --synthetic-mib N adds a one-entry case: a single layer of N MiB of BF16 (one large entry, as
// per-layer entries of a 70B model are ~1.6 GiB), lossy HCT, warmed with 1 thread and with all
// threads (the decode of one entry's tensors and chunks is spread over the threads).
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hct/cache.h"
#include "hct/convert.h"
#include "hct/safetensors.h"

#include "bench/bench_util.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using hct::Status;

namespace {

using hct::bench::Median;

template <class T>
T Must(hct::Result<T> r, const std::string& what) {
  if (!r.ok()) {
    std::fprintf(stderr, "hct_bench_warm: %s: %s\n", what.c_str(), r.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*r);
}

void Must(const Status& s, const std::string& what) {
  if (!s.ok()) {
    std::fprintf(stderr, "hct_bench_warm: %s: %s\n", what.c_str(), s.ToString().c_str());
    std::exit(1);
  }
}

struct WarmResult {
  double mb_s = 0;     // median, cached bytes / wall seconds of Warm()
  uint64_t bytes = 0;  // cached bytes (entry files)
  uint64_t entries = 0;
  double seconds = 0;  // median
};

WarmResult BenchWarm(const std::string& source, const std::string& cache_dir, int threads,
                     int runs) {
  std::vector<double> rates, secs;
  WarmResult r;
  for (int i = 0; i <= runs; ++i) {  // run 0: warms the page cache, not timed
    fs::remove_all(cache_dir);
    auto c = Must(hct::Cache::Open(cache_dir), "open " + cache_dir);
    hct::WarmOptions wo;
    wo.threads = threads;
    auto t0 = std::chrono::steady_clock::now();
    hct::WarmReport rep = Must(c->Warm(source, wo), "warm " + source);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i == 0) continue;
    r.bytes = rep.bytes_written;
    r.entries = rep.entries_written;
    rates.push_back(rep.bytes_written / s / 1e6);
    secs.push_back(s);
  }
  r.mb_s = Median(rates);
  r.seconds = Median(secs);
  return r;
}

// verify --deep of the whole cache: GB/s of hashed tensor bytes (entries in the page cache).
double BenchVerify(const std::string& cache_dir, int threads, int runs, uint64_t* bytes) {
  auto c = Must(hct::Cache::Open(cache_dir, {.read_only = true}), "open " + cache_dir);
  std::vector<double> rates;
  for (int i = 0; i <= runs; ++i) {
    hct::VerifyOptions vo;
    vo.mode = hct::VerifyMode::kDeep;
    vo.threads = threads;
    auto t0 = std::chrono::steady_clock::now();
    hct::VerifyReport rep = Must(c->Verify(vo), "verify " + cache_dir);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!rep.ok()) {
      std::fprintf(stderr, "hct_bench_warm: verify found %zu problems\n", rep.problems.size());
      std::exit(1);
    }
    *bytes = rep.bytes_checked;
    if (i > 0) rates.push_back(rep.bytes_checked / s / 1e9);
  }
  return Median(rates);
}

// One layer of `mib` MiB of BF16 weights (70B-like proportions), in one safetensors file.
void WriteSyntheticLayer(const std::string& path, uint64_t mib) {
  const uint64_t elems = (mib << 20) / 2;
  // q, k, v, o, gate, up, down in 70B proportions (64:8:8:64:224:224:224 of 8192^2/64).
  const std::vector<std::pair<std::string, double>> parts = {
      {"q_proj", 64},     {"k_proj", 8},    {"v_proj", 8},     {"o_proj", 64},
      {"gate_proj", 224}, {"up_proj", 224}, {"down_proj", 224}};
  double total = 0;
  for (auto& p : parts) total += p.second;
  const uint64_t cols = 1024;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 0.02f);
  std::vector<std::vector<std::byte>> bufs;
  std::vector<hct::TensorData> td;
  for (auto& [name, w] : parts) {
    uint64_t rows = std::max<uint64_t>(1, static_cast<uint64_t>(elems * w / total) / cols);
    std::vector<std::byte> b(rows * cols * 2);
    for (uint64_t i = 0; i < rows * cols; ++i) {
      float f = nd(rng);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      uint16_t h = static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
      std::memcpy(&b[2 * i], &h, 2);
    }
    bufs.push_back(std::move(b));
    td.push_back(
        {"model.layers.0.mlp." + name + ".weight", hct::DType::kBF16, {rows, cols}, bufs.back()});
  }
  Must(hct::WriteSafetensors(path, td, {{"format", "pt"}}, {.overwrite = true}), "write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, dir = "/tmp/hct_bench_warm";
  int runs = 5, threads = 0;
  uint64_t synthetic_mib = 0;
  po::options_description opts("hct_bench_warm options");
  opts.add_options()("help,h", "show help")("model", po::value(&model),
                                            "safetensors model folder (default: kdoc-lm-25m in "
                                            "$HCT_WEIGHTS_DIR or ../shared/weights)")(
      "dir", po::value(&dir), "scratch folder (conversions and caches)")(
      "runs", po::value(&runs), "timed runs per case (median)")("threads", po::value(&threads),
                                                                "warm threads (0: all cores)")(
      "synthetic-mib", po::value(&synthetic_mib), "also warm one synthetic entry of N MiB");
  po::variables_map vm;
  if (auto rc = hct::bench::ParseCommandLine(argc, argv, opts, vm)) return *rc;
  if (model.empty()) {
    const char* w = std::getenv("HCT_WEIGHTS_DIR");
    model = std::string(w ? w : "../shared/weights") + "/kdoc-lm-25m";
  }
  if (!fs::exists(model)) {
    std::fprintf(stderr, "hct_bench_warm: %s not found (--model)\n", model.c_str());
    return 1;
  }
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int nthreads = threads > 0 ? threads : hw;
  fs::create_directories(dir);
  std::printf("== hct_bench_warm: %s, %d threads (%d cores), %d runs (median)\n", model.c_str(),
              nthreads, hw, runs);

  // Conversions (timed for information only).
  hct::ConvertOptions lossless;
  lossless.policy.lossless = true;
  lossless.force = true;
  hct::ConvertOptions lossy;  // the documented default (lossy where the policy allows)
  lossy.force = true;
  auto lr = Must(hct::Convert(model, dir + "/lossless", lossless), "convert lossless");
  auto yr = Must(hct::Convert(model, dir + "/lossy", lossy), "convert lossy");
  std::printf("converted: lossless %.2fx (%.1f s), lossy %.2fx %.2f bits/weight (%.1f s)\n",
              lr.totals.ratio, lr.seconds, yr.totals.ratio, yr.totals.bits_per_weight, yr.seconds);

  nlohmann::json out;
  out["model"] = model;
  out["threads"] = nthreads;
  out["cores"] = hw;
  struct Case {
    const char* name;
    std::string source;
  };
  const Case cases[] = {
      {"safetensors", model}, {"hct-lossless", dir + "/lossless"}, {"hct-lossy", dir + "/lossy"}};
  for (const Case& c : cases) {
    WarmResult w = BenchWarm(c.source, dir + "/cache-" + c.name, nthreads, runs);
    std::printf(
        "[ measure ] warm %-12s %8.1f MB/s of cached bytes (%llu bytes, %llu entries, "
        "%.3f s, %d threads)\n",
        c.name, w.mb_s, static_cast<unsigned long long>(w.bytes),
        static_cast<unsigned long long>(w.entries), w.seconds, nthreads);
    out["warm"][c.name] = {
        {"mb_per_s", w.mb_s}, {"bytes", w.bytes}, {"entries", w.entries}, {"seconds", w.seconds}};
  }
  uint64_t vbytes = 0;
  const std::string vdir = dir + "/cache-safetensors";
  double g1 = BenchVerify(vdir, 1, runs, &vbytes);
  double gn = BenchVerify(vdir, nthreads, runs, &vbytes);
  std::printf(
      "[ measure ] verify --deep: 1 thread %.2f GB/s; %d threads %.2f GB/s = %.2f GB/s "
      "per core (%llu bytes, entries in the page cache)\n",
      g1, nthreads, gn, gn / nthreads, static_cast<unsigned long long>(vbytes));
  out["verify_deep"] = {{"gb_per_s_1_thread", g1},
                        {"gb_per_s_all_threads", gn},
                        {"gb_per_s_per_core_all_threads", gn / nthreads},
                        {"bytes", vbytes}};

  if (synthetic_mib > 0) {
    const std::string src = dir + "/synthetic";
    fs::create_directories(src);
    WriteSyntheticLayer(src + "/model.safetensors", synthetic_mib);
    Must(hct::Convert(src, dir + "/synthetic-lossy", lossy), "convert synthetic");
    for (int t : {1, nthreads}) {
      WarmResult w = BenchWarm(dir + "/synthetic-lossy", dir + "/cache-synthetic", t, runs);
      std::printf(
          "[ measure ] warm one %llu MiB entry (lossy HCT), %d thread(s): %.1f MB/s "
          "(%llu entries)\n",
          static_cast<unsigned long long>(synthetic_mib), t, w.mb_s,
          static_cast<unsigned long long>(w.entries));
      out["synthetic_entry"][std::to_string(t) + "_threads"] = {{"mb_per_s", w.mb_s},
                                                                {"mib", synthetic_mib}};
    }
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
