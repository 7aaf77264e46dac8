// Load benchmark: a Llama-70B-shaped layer (hidden 8192, 64 heads, 8 KV heads of 128, MLP 28672,
// BF16, ~1.6 GiB) written as safetensors, loaded through the runtime's engines, next to the
// ceilings measured in the same run: pinned cudaMemcpy of the same bytes, page-cache pread rate,
// O_DIRECT disk rate. Prints medians of --runs runs. Cold runs need root (drop_caches).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "hct/cache.h"
#include "hct/runtime.h"
#include "hct/safetensors.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "bench/bench_util.h"

namespace po = boost::program_options;
using hct::Status;

namespace {

using hct::bench::ReadRate;

using hct::bench::Now;
using hct::bench::Median;
using hct::bench::Die;
using hct::bench::DropCaches;
using hct::bench::ProcStatus;

// Writes the layer; returns its specs with XXH3 of each tensor.
std::vector<hct::TensorSpec> WriteLayer(const std::string& path) {
  const std::vector<hct::bench::LayerTensor> ts = hct::bench::Llama70bLayer();
  hct::SafetensorsWriterOptions wo;
  wo.data_alignment = 4096;
  wo.overwrite = true;
  auto w = hct::SafetensorsWriter::Create(path, wo);
  Die(w.status(), "create");
  for (auto& t : ts) {
    std::vector<uint64_t> shape = t.rows == 1 ? std::vector<uint64_t>{t.cols}
                                              : std::vector<uint64_t>{t.rows, t.cols};
    Die(w->Declare(t.name, hct::DType::kBF16, shape), "declare");
  }
  std::vector<uint64_t> hashes;
  std::vector<std::vector<uint64_t>> blocks;
  std::vector<uint16_t> buf;
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& t : ts) {
    buf.resize(t.rows * t.cols);
    for (auto& v : buf) {  // BF16 of small random values: realistic exponents
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      v = uint16_t(0x3C00 + (x & 0x3FF) + ((x >> 10) & 1) * 0x8000);
    }
    std::span<const std::byte> b(reinterpret_cast<const std::byte*>(buf.data()), buf.size() * 2);
    hashes.push_back(XXH3_64bits(b.data(), b.size()));
    blocks.push_back(hct::BlockXxh3(b));  // what the cache stores at warm time
    Die(w->Write(t.name, b), "write");
  }
  Die(w->Finish(), "finish");
  auto cat = hct::Catalog::FromSafetensors(path);
  Die(cat.status(), "catalog");
  std::vector<hct::TensorSpec> specs = cat->tensors();
  for (auto& s : specs)
    for (size_t i = 0; i < ts.size(); ++i)
      if (s.name == ts[i].name) {
        hct::FileRange r = *s.file();
        r.xxh3 = hashes[i];
        r.block_xxh3 = blocks[i];
        r.block_bytes = hct::kBlockHashBytes;
        s.source = hct::FileSource(std::move(r));
      }
  return specs;
}

std::string Mib(uint64_t b) { return std::to_string(b >> 20) + "M"; }

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int runs = 5, cold_runs = 3, sweep_runs = 3;
  std::vector<int> thread_set;
  std::vector<uint64_t> chunk_set, staging_set;
  bool keep = false;
  std::vector<std::string> models;
  po::options_description desc("hct_bench_load: runtime load benchmark");
  desc.add_options()("help,h", "this help")(
      "dir", po::value(&dir)->default_value("/tmp/hct_bench_load"), "where to write the layer")(
      "runs", po::value(&runs)->default_value(5), "runs per warm figure (median)")(
      "cold-runs", po::value(&cold_runs)->default_value(3), "runs per cold figure (median)")(
      "threads", po::value(&thread_set)->multitoken(),
      "I/O thread counts to try (default 4 8 12 16)")(
      "chunks", po::value(&chunk_set)->multitoken(), "piece sizes in MiB to try (default 8 16 32)")(
      "stagings", po::value(&staging_set)->multitoken(),
      "staging ring sizes in MiB to try; 0: 2 slots per thread (default 256 0)")(
      "sweep-runs", po::value(&sweep_runs)->default_value(3), "runs per sweep point (median)")(
      "keep", po::bool_switch(&keep), "keep the generated file")(
      "model", po::value(&models)->multitoken(),
      "real models (safetensors file or folder, e.g. kdoc-lm-25m) to warm and load via the cache");
  po::variables_map vm;
  if (auto rc = hct::bench::ParseCommandLine(argc, argv, desc, vm)) return *rc;
  if (thread_set.empty()) thread_set = {4, 8, 12, 16};
  if (chunk_set.empty()) chunk_set = {8, 16, 32};
  if (staging_set.empty()) staging_set = {256, 0};
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/llama70b_layer.safetensors";
  double t0 = Now();
  auto specs = WriteLayer(path);
  uint64_t total = 0;
  hct::PackOffsets(specs, &total);
  std::printf("layer: %zu tensors, %.3f GiB BF16, written in %.1f s: %s\n", specs.size(),
              double(total) / (1ull << 30), Now() - t0, path.c_str());
  const double gb = double(total) / 1e9;

  hct::RuntimeOptions base;
  auto env = hct::RuntimeOptions::FromEnv(base);
  Die(env.status(), "options");
  base = *env;

  void* stream = nullptr;
  void* dev = nullptr;
  bool gpu = false;
#if HCT_WITH_CUDA
  gpu = hct::bench::UseDevice(base.force_host);
  if (gpu) {
    cudaStream_t s = hct::bench::OpenDevice(base.device);
    stream = s;
    CK(cudaMalloc(&dev, total));
    // Ceiling: pinned cudaMemcpy of the same bytes.
    std::printf("%-58s %7.2f GB/s\n", "pinned cudaMemcpy ceiling (same bytes)",
                hct::bench::PinnedCopyCeiling(dev, total, s, runs));
  }
#endif
  if (!gpu) {
    std::printf("no GPU: host placement (the CPU fallback path)\n");
    dev = std::aligned_alloc(4096, (total + 4095) & ~4095ull);
  }

  auto timed_load = [&](hct::Runtime& rt) {
    double a = Now();
    auto r = rt.LoadMany(specs, stream, dev, total);
    Die(r.status(), "load");
    Die((*r)[0].Wait(), "wait");
    return gb / (Now() - a);
  };

  // Page-cache read rate (warm) at every thread count and piece size the loads use.
  ReadRate(path, 8, false);  // make sure it is hot
  double best_pc = 0;
  std::string best_pc_at;
  std::map<std::pair<int, uint64_t>, double> pc;
  for (int n : thread_set)
    for (uint64_t c : chunk_set) {
      std::vector<double> v;
      for (int r = 0; r < sweep_runs; ++r) v.push_back(ReadRate(path, n, false, c << 20));
      pc[{n, c}] = Median(v);
      char label[96];
      std::snprintf(label, sizeof label, "page cache -> pinned pread (%d thr, %lluM)", n,
                    (unsigned long long)c);
      std::printf("%-58s %7.2f GB/s\n", label, Median(v));
      if (Median(v) > best_pc) best_pc = Median(v), best_pc_at = label;
    }
  std::printf("%-58s %7.2f GB/s  [%s]\n", "BEST page-cache pread", best_pc, best_pc_at.c_str());
  {
    // The same reads rotating through a 256 MiB ring (the engine's footprint, no DMA): shows
    // how much a large staging footprint alone costs.
    std::vector<double> v;
    for (int r = 0; r < sweep_runs; ++r) v.push_back(ReadRate(path, 8, false, 8 << 20, 256 << 20));
    std::printf("%-58s %7.2f GB/s\n", "pread into a 256M ring (8 thr, 8M)", Median(v));
  }

  // Resident.
  {
    hct::RuntimeOptions o = base;
    o.resident_budget = std::max<uint64_t>(o.resident_budget, total + (64ull << 20));
    auto rt = hct::Runtime::Create(o);
    Die(rt.status(), "runtime");
    double first = timed_load(**rt);  // maps, registers and verifies
    std::vector<double> v;
    for (int r = 0; r < runs; ++r) v.push_back(timed_load(**rt));
    auto st = (*rt)->stats();
    std::printf("%-58s %7.2f GB/s  (first load incl. register+verify: %.2f GB/s)%s\n",
                "resident load", Median(v), first,
                st.resident_fallback.empty() ? "" : "  [FELL BACK to one-shot]");
    if (!st.resident_fallback.empty()) std::printf("  reason: %s\n", st.resident_fallback.c_str());
    std::printf("  registered %.2f GiB; %s; %s\n", double(st.registered_bytes) / (1ull << 30),
                ProcStatus("VmLck").c_str(), ProcStatus("VmPin").c_str());
  }

  // One-shot warm: sweep threads x piece size x ring size with block verification on (the
  // cache's 8 MiB block checksums), then at the best point verify off and whole-tensor XXH3 only.
  struct Point {
    int threads;
    uint64_t chunk, staging;
    uint64_t copy_step = 0;
  };
  auto one_shot = [&](const Point& p, bool verify, bool blocks, int n_runs, hct::RuntimeStats* st) {
    hct::RuntimeOptions o = base;
    o.resident_budget = 0;
    o.io_threads = p.threads;
    o.chunk_bytes = p.chunk;
    o.staging_bytes = p.staging;
    o.copy_step_bytes = p.copy_step;
    o.verify = verify;
    auto rt = hct::Runtime::Create(o);
    Die(rt.status(), "runtime");
    std::vector<hct::TensorSpec> keep;
    if (!blocks) {
      keep = specs;
      for (auto& s : specs) {
        hct::FileRange r = *s.file();
        r.block_xxh3.clear();
        s.source = hct::FileSource(std::move(r));
      }
    }
    timed_load(**rt);
    std::vector<double> v;
    for (int r = 0; r < n_runs; ++r) v.push_back(timed_load(**rt));
    if (st) *st = (*rt)->stats();
    if (!blocks) specs = keep;
    return Median(v);
  };
  auto label_of = [](const Point& p, const char* what) {
    char label[128];
    std::snprintf(label, sizeof label, "one-shot warm %s (%d thr, %lluM, ring %lluM)", what,
                  p.threads, (unsigned long long)(p.chunk >> 20),
                  (unsigned long long)(p.staging >> 20));
    return std::string(label);
  };
  Point best{thread_set[0], chunk_set[0] << 20, 256ull << 20};
  double best_os = 0;
  for (int n : thread_set)
    for (uint64_t c : chunk_set)
      for (uint64_t sm : staging_set) {
        const uint64_t chunk = c << 20;
        uint64_t staging = sm ? sm << 20 : 2 * uint64_t(n) * chunk;
        staging = std::max(staging, 2 * chunk);
        if (staging > (1ull << 30)) continue;
        Point p{n, chunk, staging};
        double r = one_shot(p, true, true, sweep_runs, nullptr);
        std::printf("%-58s %7.2f GB/s  = %.2f x pread same thr/size, %.2f x best pread\n",
                    label_of(p, "verify blocks").c_str(), r, r / pc[{n, c}], r / best_pc);
        if (r > best_os) best_os = r, best = p;
      }
  {
    hct::RuntimeStats st;
    double on = one_shot(best, true, true, runs, &st);
    double off = one_shot(best, false, true, runs, nullptr);
    double whole = one_shot(best, true, false, runs, nullptr);
    std::printf("BEST one-shot point: %d threads, %lluM pieces, %lluM ring\n", best.threads,
                (unsigned long long)(best.chunk >> 20), (unsigned long long)(best.staging >> 20));
    std::printf("%-58s %7.2f GB/s  = %.2f x best page-cache pread\n",
                "one-shot warm load, verify on (blocks)", on, on / best_pc);
    std::printf("%-58s %7.2f GB/s  = %.2f x best page-cache pread\n",
                "one-shot warm load, verify off", off, off / best_pc);
    std::printf("%-58s %7.2f GB/s  (verify cost %.1f%%)\n", "one-shot warm load, whole XXH3 only",
                whole, 100.0 * (1 - whole / off));
    std::printf("  block verification costs %.1f%% of throughput (<10%% keeps it on by default)\n",
                100.0 * (1 - on / off));
    std::printf(
        "  staging ring %.0f MiB pinned; O_DIRECT bytes %.2f GB, buffered %.2f GB, "
        "verified %.2f GB\n",
        double(st.pinned_staging_bytes) / (1 << 20), st.bytes_o_direct / 1e9,
        st.bytes_buffered / 1e9, st.bytes_verified / 1e9);
    // Copy steps: each step's copy enqueued right after its read (HCT_COPY_STEP).
    for (uint64_t cs : {512ull << 10, 1ull << 20, 2ull << 20}) {
      Point q = best;
      q.copy_step = cs;
      const double r = one_shot(q, true, true, runs, nullptr);
      char label[128];
      std::snprintf(label, sizeof label, "one-shot warm, best point, copy step %lluK (blocks)",
                    (unsigned long long)(cs >> 10));
      std::printf("%-58s %7.2f GB/s  = %.2f x best page-cache pread\n", label, r, r / best_pc);
    }
    hct::RuntimeOptions d;  // library defaults (no env)
    Point def{d.io_threads, d.chunk_bytes, d.staging_bytes, d.copy_step_bytes};
    const double dr = one_shot(def, true, true, runs, nullptr);
    std::printf("%-58s %7.2f GB/s  = %.2f x best page-cache pread\n",
                label_of(def, "DEFAULTS verify on").c_str(), dr, dr / best_pc);
  }
  const int best_threads = best.threads;

  // Cold: after drop_caches; next to the disk's O_DIRECT rate.
  if (cold_runs <= 0) {
    std::printf("cold runs skipped: --cold-runs 0\n");
  } else if (!DropCaches()) {
    std::printf("cold runs skipped: cannot write /proc/sys/vm/drop_caches (need root)\n");
  } else {
    std::vector<double> disk;
    for (int r = 0; r < cold_runs; ++r) {
      DropCaches();
      disk.push_back(ReadRate(path, 8, true));
    }
    std::printf("%-58s %7.2f GB/s  (8 threads, 8 MiB)\n", "disk O_DIRECT read", Median(disk));
    for (bool verify : {true, false}) {
      hct::RuntimeOptions o = base;
      o.resident_budget = 0;
      o.io_threads = std::max(best_threads, 8);
      o.chunk_bytes = best.chunk;
      o.staging_bytes = best.staging;
      o.verify = verify;
      auto rt = hct::Runtime::Create(o);
      Die(rt.status(), "runtime");
      std::vector<double> v;
      for (int r = 0; r < cold_runs; ++r) {
        DropCaches();
        v.push_back(timed_load(**rt));
      }
      auto st = (*rt)->stats();
      char label[96];
      std::snprintf(label, sizeof label, "cold load one-shot (verify %s)", verify ? "on" : "off");
      std::printf("%-58s %7.2f GB/s  = %.2f x disk O_DIRECT  (O_DIRECT bytes %.2f GB)\n", label,
                  Median(v), Median(v) / Median(disk), st.bytes_o_direct / 1e9);
    }
  }
  // Through the cache, as an application loads: warm the layer (and each --model) into a cache
  // and load every tensor of each model via Catalog::FromCache (checksums and 8 MiB block
  // checksums from the index, entries leased), one-shot and resident, page cache hot.
  {
    const std::string cache_dir = dir + "/cache";
    std::filesystem::remove_all(cache_dir);
    auto cache = hct::Cache::Open(cache_dir);
    Die(cache.status(), "cache open");
    std::vector<std::string> sources = {path};
    sources.insert(sources.end(), models.begin(), models.end());
    for (const std::string& src : sources) {
      double w0 = Now();
      auto wr = (*cache)->Warm(src);
      Die(wr.status(), ("warm " + src).c_str());
      const double warm_s = Now() - w0;
      const std::string model = wr->model;
      auto cat = hct::Catalog::FromCache(cache_dir, model);
      Die(cat.status(), ("catalog " + model).c_str());
      const auto& cs = cat->tensors();
      uint64_t bytes = 0;
      hct::PackOffsets(cs, &bytes);
      void* cdev = dev;
#if HCT_WITH_CUDA
      if (gpu && bytes > total) CK(cudaMalloc(&cdev, bytes));
#endif
      if (!gpu && bytes > total) cdev = std::aligned_alloc(4096, (bytes + 4095) & ~4095ull);
      std::printf("cache: %s warmed in %.2f s (%zu tensors, %.3f GB)\n", model.c_str(), warm_s,
                  cs.size(), bytes / 1e9);
      for (bool resident : {false, true}) {
        hct::RuntimeOptions o = base;
        o.resident_budget = resident ? (bytes * 2 + (64ull << 20)) : 0;
        auto rt = hct::Runtime::Create(o);
        Die(rt.status(), "runtime");
        std::vector<double> v;
        for (int r = 0; r < runs + 1; ++r) {
          double a = Now();
          auto l = (*rt)->LoadMany(cs, stream, cdev, bytes);
          Die(l.status(), "cache load");
          Die((*l)[0].Wait(), "wait");
          if (r > 0) v.push_back(bytes / 1e9 / (Now() - a));  // the first run maps/registers
        }
        char label[96];
        std::snprintf(label, sizeof label, "via cache: %s, %s", model.c_str(),
                      resident ? "resident" : "one-shot (blocks verified)");
        std::printf("%-58s %7.2f GB/s\n", label, Median(v));
      }
      if (cdev != dev) {
#if HCT_WITH_CUDA
        if (gpu) CK(cudaFree(cdev));
#endif
        if (!gpu) std::free(cdev);
      }
    }
  }
  std::printf("%s; %s\n", ProcStatus("VmLck").c_str(), ProcStatus("VmPin").c_str());
  if (!keep) std::filesystem::remove(path);
  return 0;
}
