// HCT -> GPU load benchmark: a Llama-70B-shaped layer (BF16, Gaussian-like weights; q/o
// 8192x8192, k/v 1024x8192, gate/up 28672x8192, down 8192x28672, two norms; 1.59 GiB) written as
// safetensors and encoded with the codec at an INT4-like error (lossy, transform none, default
// chunking) into two HCT files of the same symbols: entropy zstd ("dctq-zstd", CPU decode) and
// huff ("dctq-huff", GPU decode). In one run it prints, for each: the pinned cudaMemcpy ceiling, the raw
// one-shot warm load (runtime engine, page cache hot), the HCT -> GPU load from the page cache as
// BF16-equivalent GB/s, cold loads (after drop_caches) raw vs HCT, the kernel-only time and the
// CPU zstd decode rate of the decode pool; also the page cache's pread rate, the raw resident
// load, the HCT huff resident load (file registered, chunks DMA'd from it) with and without the
// decode streams, and GPU profiles (copy / Huffman / dequant per group, CUDA events) of the
// resident and page-cache paths. Medians of several runs. Cold runs need root.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "hct/codec.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "hct/kernels.h"
#include "hct/runtime.h"
#include "hct/safetensors.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "bench/bench_util.h"

namespace po = boost::program_options;
using hct::Status;

namespace {

using hct::bench::Now;
using hct::bench::Median;
using hct::bench::Die;
using hct::bench::DropCaches;
using hct::bench::ProcStatus;

void ReadWhole(const std::string& path) {  // make the page cache hot
  std::ifstream in(path, std::ios::binary);
  std::vector<char> b(16 << 20);
  while (in.read(b.data(), std::streamsize(b.size())) || in.gcount() > 0) {
  }
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

struct T {
  std::string name;
  uint64_t rows, cols;
  std::vector<uint16_t> data;  // BF16
};

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int runs = 5, cold_runs = 3, threads = 0;
  double max_error = 0.118, scale = 1.0;
  bool keep = false;
  po::options_description desc("hct_bench_hct_load: HCT -> GPU load benchmark");
  desc.add_options()("help,h", "this help")(
      "dir", po::value(&dir)->default_value("/tmp/hct_bench_hct_load"), "where to write files")(
      "runs", po::value(&runs)->default_value(5), "runs per warm figure (median)")(
      "cold-runs", po::value(&cold_runs)->default_value(3), "runs per cold figure (median)")(
      "threads", po::value(&threads)->default_value(0),
      "encode and decode threads (0: all cores)")(
      "max-error", po::value(&max_error)->default_value(0.118), "lossy relative RMS error")(
      "scale", po::value(&scale)->default_value(1.0), "fraction of the rows (quick tries)")(
      "keep", po::bool_switch(&keep), "keep the generated files");
  po::variables_map vm;
  if (auto rc = hct::bench::ParseCommandLine(argc, argv, desc, vm)) return *rc;
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  namespace fs = std::filesystem;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string raw_path = dir + "/layer.safetensors";
  struct Variant {
    const char* name;
    hct::Entropy entropy;
    std::string dir, path;
    uint64_t bytes = 0;
    double warm = 0, cold = 0;
    int threads = 0;
    double stored_rate = 0;               // page-cache warm, the best point's
    double resident = 0, resident_prev = 0;  // resident: decode streams (default), and none
  };
  std::vector<Variant> vars = {{"zstd", hct::Entropy::kZstd, dir + "/hct-zstd", ""},
                               {"huff", hct::Entropy::kHuffman, dir + "/hct-huff", ""}};
  for (Variant& va : vars) {
    fs::create_directories(va.dir);
    va.path = va.dir + "/layer.hct";
  }

  // 1. The layer.
  std::vector<T> ts;
  for (const auto& l : hct::bench::Llama70bLayer(scale)) ts.push_back({l.name, l.rows, l.cols, {}});
  double t0 = Now();
  uint64_t total = 0, weights = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    hct::bench::FillGaussianBF16(&ts[i].data, ts[i].rows * ts[i].cols, threads, i + 1);
    total += ts[i].data.size() * 2;
    weights += ts[i].data.size();
  }
  std::printf("layer: %zu tensors, %.3f GiB BF16, %.2f G weights, generated in %.1f s\n",
              ts.size(), double(total) / (1ull << 30), weights / 1e9, Now() - t0);
  const double gb = double(total) / 1e9;

  // 2. Raw safetensors (4096-aligned data section).
  t0 = Now();
  {
    hct::SafetensorsWriterOptions wo;
    wo.data_alignment = 4096;
    wo.overwrite = true;
    auto w = hct::SafetensorsWriter::Create(raw_path, wo);
    Die(w.status(), "create safetensors");
    for (auto& t : ts) {
      std::vector<uint64_t> shape = t.rows == 1 ? std::vector<uint64_t>{t.cols}
                                                : std::vector<uint64_t>{t.rows, t.cols};
      Die(w->Declare(t.name, hct::DType::kBF16, shape), "declare");
    }
    for (auto& t : ts)
      Die(w->Write(t.name, {reinterpret_cast<const std::byte*>(t.data.data()), t.data.size() * 2}),
          "write");
    Die(w->Finish(), "finish safetensors");
  }
  std::printf("raw safetensors written in %.1f s: %s\n", Now() - t0, raw_path.c_str());

  // 3. HCT: lossy (transform none, INT4-like error) for the matrices, lossless for the norms.
  for (Variant& va : vars) {
  t0 = Now();
  double err_num = 0, err_den = 0;
  {
    auto w = hct::HctWriter::Create(va.path, true);
    Die(w.status(), "create hct");
    hct::EncodeOptions eo;
    eo.lossy_options.mode = hct::RateMode::kMaxError;
    eo.lossy_options.max_error = max_error;
    eo.lossy_options.transform = hct::Transform::kNone;
    eo.lossy_options.entropy = va.entropy;
    eo.parallel = hct::ThreadsParallelFor(threads);
    for (auto& t : ts) {
      std::vector<uint64_t> shape = t.rows == 1 ? std::vector<uint64_t>{t.cols}
                                                : std::vector<uint64_t>{t.rows, t.cols};
      eo.lossy = t.rows > 1;
      hct::TensorView v{{reinterpret_cast<const std::byte*>(t.data.data()), t.data.size() * 2},
                        hct::DType::kBF16, shape};
      double a = Now();
      auto enc = hct::EncodeTensor(v, eo);
      Die(enc.status(), "encode");
      Die(w->BeginTensor(t.name, hct::DType::kBF16, shape, enc->codec, enc->params), "begin");
      for (const auto& c : enc->chunks)
        Die(w->AppendChunk(c.bytes, c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count),
            "append");
      Die(w->EndTensor(), "end");
      const double e2 = enc->metrics.rel_rms_error * enc->metrics.rel_rms_error;
      err_num += e2 * double(t.data.size());
      err_den += double(t.data.size());
      std::printf("  %-42s %-15s %5zu chunks  %.3f bits/weight  rel err %.4f  %.1f s\n",
                  t.name.c_str(), enc->codec.c_str(), enc->chunks.size(),
                  enc->metrics.bits_per_weight, enc->metrics.rel_rms_error, Now() - a);
    }
    Die(w->Finish(), "finish hct");
  }
  va.bytes = DirBytes(va.dir);
  std::printf("HCT %s written in %.1f s (%d threads): %.3f GiB = %.3f bytes/weight, rel err %.4f\n",
              va.name, Now() - t0, threads, double(va.bytes) / (1ull << 30),
              double(va.bytes) / weights, std::sqrt(err_num / err_den));
  }
  for (auto& t : ts) std::vector<uint16_t>().swap(t.data);

  auto raw_cat = hct::Catalog::FromSafetensors(raw_path);
  Die(raw_cat.status(), "raw catalog");
  const auto& raw_specs = raw_cat->tensors();
  std::vector<std::vector<hct::TensorSpec>> var_specs;
  for (const Variant& va : vars) {
    auto c = hct::Catalog::FromHct(va.dir);
    Die(c.status(), "hct catalog");
    var_specs.push_back(c->tensors());
  }

  hct::RuntimeOptions base;
  auto env = hct::RuntimeOptions::FromEnv(base);
  Die(env.status(), "options");
  base = *env;
  base.resident_budget = 0;

  void* stream = nullptr;
  void* dev = nullptr;
  bool gpu = false;
  double ceiling = 0;
#if HCT_WITH_CUDA
  gpu = hct::bench::UseDevice(base.force_host);
  if (gpu) {
    cudaStream_t s = hct::bench::OpenDevice(base.device);
    stream = s;
    CK(cudaMalloc(&dev, total + 4096 * ts.size()));
    ceiling = hct::bench::PinnedCopyCeiling(dev, total, s, runs);
    std::printf("%-48s %7.2f GB/s\n", "pinned cudaMemcpy ceiling (same bytes)", ceiling);
  }
#endif
  if (!gpu) {
    std::printf("no GPU: host placement (CPU reference decoder)\n");
    dev = std::aligned_alloc(4096, (total + 4096 * ts.size() + 4095) & ~4095ull);
  }
  uint64_t packed = 0;
  hct::PackOffsets(raw_specs, &packed);
  const uint64_t dev_bytes = packed;

  auto timed = [&](hct::Runtime& rt, const std::vector<hct::TensorSpec>& specs) {
    double a = Now();
    auto r = rt.LoadMany(specs, stream, dev, dev_bytes);
    Die(r.status(), "load");
    Die((*r)[0].Wait(), "wait");
    return gb / (Now() - a);
  };

  // 4. Raw one-shot warm (best of a few thread counts: the strongest baseline).
  ReadWhole(raw_path);
  double raw_warm = 0;
  int raw_threads = 6;
  for (int n : {6, 8, 12, 16}) {  // 16: the raw path's default (RuntimeOptions::io_threads)
    hct::RuntimeOptions o = base;
    o.io_threads = n;
    auto rt = hct::Runtime::Create(o);
    Die(rt.status(), "runtime");
    timed(**rt, raw_specs);
    std::vector<double> v;
    for (int r = 0; r < runs; ++r) v.push_back(timed(**rt, raw_specs));
    std::printf("%-48s %7.2f GB/s = %.2f x ceiling (%d I/O threads%s)\n",
                "raw one-shot warm load", Median(v), ceiling > 0 ? Median(v) / ceiling : 0.0, n,
                n == 16 ? ", the default" : "");
    if (Median(v) > raw_warm) raw_warm = Median(v), raw_threads = n;
  }
  // The page cache's own read rate into pinned memory (the bound of the page-cache paths).
  double pread_best = 0;
  // (8 threads, own buffers: the classic rate; 8 and 16 threads over one 256 MiB pinned ring
  // allocated before the clock starts, as the one-shot engine reads.)
  for (auto [n, ring] : {std::pair<int, uint64_t>{8, 0}, {8, 256ull << 20}, {16, 256ull << 20}}) {
    const double r = hct::bench::ReadRate(raw_path, n, false, 8ull << 20, ring);
    std::printf("%-48s %7.2f GB/s  (%d threads, 8 MiB%s)\n", "page cache -> pinned pread", r, n,
                ring ? ", 256 MiB ring" : "");
    pread_best = std::max(pread_best, r);
  }
  // Raw resident: the safetensors file mapped and registered (the link's rate for raw bytes).
  double raw_resident = 0;
  if (gpu) {
    hct::RuntimeOptions o = base;
    o.resident_budget = 2 * DirBytes(dir) + (64ull << 20);
    auto rt = hct::Runtime::Create(o);
    Die(rt.status(), "runtime");
    timed(**rt, raw_specs);
    std::vector<double> v;
    for (int r = 0; r < runs; ++r) v.push_back(timed(**rt, raw_specs));
    raw_resident = Median(v);
    const auto st = (*rt)->stats();
    std::printf("%-48s %7.2f GB/s = %.2f x ceiling (registered %.2f GB%s%s)\n",
                "raw resident load", raw_resident, raw_resident / ceiling,
                double(st.registered_bytes) / 1e9, st.resident_fallback.empty() ? "" : "; refused: ",
                st.resident_fallback.c_str());
  }

  // A profiled run (hct_profile: CUDA events per group, each load waits for them): where one
  // load's GPU time goes, per load, medians' runtime settings otherwise.
  auto profile = [&](const char* what, hct::RuntimeOptions o,
                     const std::vector<hct::TensorSpec>& specs) {
    o.hct_profile = true;
    auto rt = hct::Runtime::Create(o);
    Die(rt.status(), "runtime");
    timed(**rt, specs);
    const auto s0 = (*rt)->stats();
    std::vector<double> v;
    for (int r = 0; r < runs; ++r) v.push_back(timed(**rt, specs));
    const auto s1 = (*rt)->stats();
    const double n = runs;
    const double copy = (s1.hct_gpu_copy_seconds - s0.hct_gpu_copy_seconds) / n;
    const double huff = (s1.hct_gpu_huff_seconds - s0.hct_gpu_huff_seconds) / n;
    const double deq = (s1.hct_gpu_dequant_seconds - s0.hct_gpu_dequant_seconds) / n;
    const double span = (s1.hct_gpu_span_seconds - s0.hct_gpu_span_seconds) / n;
    const double groups = double(s1.hct_gpu_groups - s0.hct_gpu_groups) / n;
    const double stored = double(s1.bytes_hct_stored - s0.bytes_hct_stored) / n;
    // The copies' own event times overlap one another (summed, they pass the span), so the
    // link's use is the stored bytes at the ceiling's rate over the span.
    std::printf("  GPU profile (%s, decode streams %d; %.2f GB/s with the events): per load %.1f "
                "groups, GPU span %.3f ms = %.0f GB/s BF16-eq.; stored bytes at the ceiling "
                "take %.3f ms = %.0f%% of the span (copy events: %.3f ms summed); Huffman %.3f ms "
                "+ dequant %.3f ms summed over groups (%.2f groups decoding at a time)\n",
                what, o.hct_decode_streams, Median(v), groups, span * 1e3,
                span > 0 ? gb / span : 0.0, stored / ceiling / 1e6,
                span > 0 ? 100 * stored / ceiling / 1e9 / span : 0.0, copy * 1e3, huff * 1e3,
                deq * 1e3, span > 0 ? (huff + deq) / span : 0.0);
  };
  // HCT resident: the HCT file mapped and registered, chunks DMA'd from it; with the decode
  // streams (default) and without (kernels after the copies on the copy stream, as before).
  auto resident_points = [&](Variant& va, const std::vector<hct::TensorSpec>& specs) {
    hct::RuntimeOptions o = base;
    o.resident_budget = 2 * va.bytes + (64ull << 20);
    for (int ds : {base.hct_decode_streams, 0}) {
      o.hct_decode_streams = ds;
      auto rt = hct::Runtime::Create(o);
      Die(rt.status(), "runtime");
      const double first = timed(**rt, specs);  // registers and verifies
      const auto s0 = (*rt)->stats();
      std::vector<double> v;
      double wall = 0;
      for (int r = 0; r < runs; ++r) {
        const double a = Now();
        v.push_back(timed(**rt, specs));
        wall += Now() - a;
      }
      const auto s1 = (*rt)->stats();
      char label[96];
      std::snprintf(label, sizeof label, "HCT %s resident -> GPU (BF16-equiv.)", va.name);
      std::printf("%-48s %7.2f GB/s = %.2f x raw resident, %.2f x ceiling (decode streams %d; "
                  "stored DMA'd at %.2f GB/s; first load, registering + verifying: %.2f GB/s; "
                  "registered %.2f GB, %llu resident loads%s%s)\n",
                  label, Median(v), raw_resident > 0 ? Median(v) / raw_resident : 0.0,
                  Median(v) / ceiling, ds,
                  double(s1.bytes_hct_resident - s0.bytes_hct_resident) / wall / 1e9, first,
                  double(s1.registered_bytes) / 1e9,
                  (unsigned long long)(s1.loads_hct_resident - s0.loads_hct_resident),
                  s1.resident_fallback.empty() ? "" : "; refused: ", s1.resident_fallback.c_str());
      (ds == 0 ? va.resident_prev : va.resident) = Median(v);
    }
    o.hct_decode_streams = base.hct_decode_streams;
    profile("resident", o, specs);
    o.hct_decode_streams = 0;
    profile("resident", o, specs);
    hct::RuntimeOptions pc = base;
    pc.decode_threads = threads;
    profile("page cache", pc, specs);
  };

  // 5. HCT -> GPU warm, BF16-equivalent.
  for (size_t vi = 0; vi < vars.size(); ++vi) {
  Variant& va = vars[vi];
  const auto& hct_specs = var_specs[vi];
  ReadWhole(va.path);
  double& hct_warm = va.warm;
  int& hct_threads = va.threads;
  hct_threads = threads;
  // (decode threads, stored-bytes checksum); the symbol checksum is always verified.
  // (decode threads, verify, decode streams, hash step); huff chunks are hashed either way.
  struct Dt {
    int n;
    bool verify;
    int ds;
    uint64_t step;
  };
  const int ds = base.hct_decode_streams;
  const uint64_t step = base.hct_hash_step_bytes;
  std::vector<Dt> dts = {{threads, true, ds, step}};
  if (threads > 4) dts.push_back({threads - 2, true, ds, step});
  if (va.entropy != hct::Entropy::kHuffman) {
    dts.push_back({threads, false, ds, step});
  } else {
    if (threads > 8) dts.push_back({threads * 3 / 4, true, ds, step});
    dts.push_back({threads, true, 0, step});  // kernels after the copies on the copy stream
    dts.push_back({threads, true, ds, 0});    // whole-chunk hash after the read
    dts.push_back({threads, true, 0, 0});     // both, as before the decode streams
  }
  for (auto [n, verify, ds_n, step_n] : dts) {
    hct::RuntimeOptions o = base;
    o.decode_threads = n;
    o.verify = verify;
    o.hct_decode_streams = ds_n;
    o.hct_hash_step_bytes = step_n;
    auto rt = hct::Runtime::Create(o);
    Die(rt.status(), "runtime");
    timed(**rt, hct_specs);
    auto s0 = (*rt)->stats();
    std::vector<double> v;
    double wall = 0;
    for (int r = 0; r < runs; ++r) {
      double a = Now();
      v.push_back(timed(**rt, hct_specs));
      wall += Now() - a;
    }
    auto s1 = (*rt)->stats();
    const double dec_s = s1.hct_decode_thread_seconds - s0.hct_decode_thread_seconds;
    const double sym = double(weights) * runs;
    char label[96];
    std::snprintf(label, sizeof label, "HCT %s -> %s warm load (BF16-equiv.)", va.name,
                  gpu ? "GPU" : "host");
    std::printf("%-48s %7.2f GB/s  = %.2f x raw warm  (%d decode threads, stored checksum %s, "
                "decode streams %d, hash step %llu KiB)\n",
                label, Median(v), Median(v) / raw_warm, n, verify ? "on" : "off", ds_n,
                (unsigned long long)(step_n >> 10));
    const double stored_rate = double(s1.bytes_hct_stored - s0.bytes_hct_stored) / wall / 1e9;
    std::printf("  stored read %.2f GB/s = %.2f x best pread; CPU decode %.2f G symbols/s per "
                "thread, %.2f G/s pool-wide over the load; pinned ring %.0f MiB, device scratch "
                "%.0f MiB\n",
                stored_rate, stored_rate / pread_best,
                dec_s > 0 ? sym / dec_s / 1e9 : 0.0, sym / wall / 1e9,
                double(s1.pinned_staging_bytes) / (1 << 20),
                double(s1.hct_device_scratch_bytes) / (1 << 20));
    if (verify && Median(v) > hct_warm) hct_warm = Median(v), hct_threads = n;
    if (verify && Median(v) >= hct_warm) va.stored_rate = stored_rate;
  }
  if (gpu && va.entropy == hct::Entropy::kHuffman)
    resident_points(va, hct_specs);
  }

#if HCT_WITH_CUDA
  // 6. Kernel only: all symbols already on the GPU, one launch per lossy tensor.
  if (gpu) {
    auto f = hct::HctFile::Open(vars[0].path);
    Die(f.status(), "open hct");
    struct K {
      hct::DctqDecodeArgs a;
      void* sym;
    };
    std::vector<K> ks;
    uint64_t out_bytes = 0;
    for (const auto& e : f->tensors()) {
      if (e.codec != hct::kCodecDctqZstd) continue;
      auto dec = hct::ChunkDecoder::Create(e.codec, e.codec_params, e.dtype);
      Die(dec.status(), "decoder");
      std::vector<std::byte> sym(e.decoded_size);
      uint64_t o = 0;
      for (size_t c = 0; c < e.chunks.size(); ++c) {
        auto stored = f->ReadChunk(e, c);
        Die(stored.status(), "read chunk");
        const auto& ch = e.chunks[c];
        Die(dec->DecodePayload(*stored,
                               hct::ChunkMeta(ch.decoded_size, ch.decoded_xxh3, ch.elem_offset,
                                              ch.elem_count),
                               {sym.data() + o, ch.decoded_size}),
            "decode");
        o += ch.decoded_size;
      }
      K k;
      CK(cudaMalloc(&k.sym, sym.size()));
      CK(cudaMemcpy(k.sym, sym.data(), sym.size(), cudaMemcpyHostToDevice));
      const auto& q = dec->dctq();
      k.a.symbols = k.sym;
      k.a.symbol_type = q.symbol_bits == 8 ? hct::DType::kI8 : hct::DType::kI16;
      k.a.step = q.step;
      k.a.rows = q.rows;
      k.a.cols = q.cols;
      k.a.row_begin = 0;
      k.a.row_end = q.rows;
      k.a.transform = q.dct ? hct::GpuTransform::kDct : hct::GpuTransform::kNone;
      k.a.tile_rows = uint32_t(q.tile_r);
      k.a.tile_cols = uint32_t(q.tile_c);
      k.a.out_type = e.dtype;
      k.a.out = static_cast<std::byte*>(dev) + out_bytes;
      out_bytes += e.num_elements * 2;
      ks.push_back(k);
    }
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    auto s = static_cast<cudaStream_t>(stream);
    std::vector<double> v;
    for (int r = 0; r < runs + 1; ++r) {
      CK(cudaEventRecord(e0, s));
      for (auto& k : ks) Die(hct::LaunchDctqDecode(k.a, s), "launch");
      CK(cudaEventRecord(e1, s));
      CK(cudaEventSynchronize(e1));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      if (r > 0) v.push_back(ms);
    }
    std::printf("%-48s %7.3f ms = %.0f GB/s of BF16 output (%zu tensors, symbols int%d)\n",
                "kernel only (dequantize, all lossy tensors)", Median(v),
                double(out_bytes) / (Median(v) * 1e-3) / 1e9, ks.size(),
                ks.empty() ? 0 : (ks[0].a.symbol_type == hct::DType::kI8 ? 8 : 16));
    for (auto& k : ks) CK(cudaFree(k.sym));

    // Huffman decode + dequantize from compressed bytes already on the GPU (dctq-huff file).
    auto fh = hct::HctFile::Open(vars[1].path);
    Die(fh.status(), "open hct huff");
    struct HK {
      hct::HuffDecodeArgs h;
      hct::DctqDecodeArgs a;
    };
    std::vector<HK> hks;
    struct TB {
      size_t first, last;  // chunk range in hks
      hct::HuffBatchArgs b;
      hct::DctqDecodeArgs a;
      hct::HuffChunk* ddesc = nullptr;
    };
    std::vector<TB> tbs;
    std::vector<void*> bufs;
    uint64_t hout = 0, hsym = 0, hstored = 0;
    void* dsym = nullptr;
    uint64_t max_chunk = 0;
    for (const auto& e : fh->tensors())
      for (const auto& ch : e.chunks) max_chunk = std::max(max_chunk, ch.decoded_size);
    CK(cudaMalloc(&dsym, std::max<uint64_t>(max_chunk, 1) * 4));  // 4 chunks in flight
    for (const auto& e : fh->tensors()) {
      if (e.codec != hct::kCodecDctqHuff) continue;
      auto dec = hct::ChunkDecoder::Create(e.codec, e.codec_params, e.dtype);
      Die(dec.status(), "decoder");
      const auto& q = dec->dctq();
      const size_t t_first = hks.size();
      for (size_t c = 0; c < e.chunks.size(); ++c) {
        auto stored = fh->ReadChunk(e, c);
        Die(stored.status(), "read chunk");
        const auto& ch = e.chunks[c];
        void* dp = nullptr;
        CK(cudaMalloc(&dp, stored->size()));
        CK(cudaMemcpy(dp, stored->data(), stored->size(), cudaMemcpyHostToDevice));
        bufs.push_back(dp);
        HK k;
        k.h.payload = dp;
        k.h.payload_bytes = stored->size();
        k.h.symbols = ch.decoded_size;
        k.h.substream = q.huff_substream;
        k.h.out = static_cast<std::byte*>(dsym) + (hks.size() % 4) * max_chunk;
        k.a.symbols = k.h.out;
        k.a.symbol_type = hct::DType::kI8;
        k.a.step = q.step;
        k.a.rows = q.rows;
        k.a.cols = q.cols;
        k.a.row_begin = ch.elem_offset / q.cols;
        k.a.row_end = k.a.row_begin + ch.elem_count / q.cols;
        k.a.transform = q.dct ? hct::GpuTransform::kDct : hct::GpuTransform::kNone;
        k.a.tile_rows = uint32_t(q.tile_r);
        k.a.tile_cols = uint32_t(q.tile_c);
        k.a.out_type = e.dtype;
        k.a.out = static_cast<std::byte*>(dev) + hout;
        hks.push_back(k);
        hsym += ch.decoded_size;
        hstored += stored->size();
      }
      if (hks.size() > t_first) tbs.push_back({t_first, hks.size()});
      hout += e.num_elements * 2;
    }
    // Batched: one LaunchHuffDecodeBatch per tensor over all its chunks (the runtime groups
    // chunks per ring slot; this is the upper bound), symbols of the whole tensor in row order,
    // then one LaunchDctqDecode over all its rows; 4 streams with a symbol buffer each.
    uint64_t max_tsym = 1;
    for (auto& tb : tbs) {
      uint64_t n = 0;
      for (size_t i = tb.first; i < tb.last; ++i) n += hks[i].h.symbols;
      max_tsym = std::max(max_tsym, n);
    }
    void* dbsym = nullptr;
    CK(cudaMalloc(&dbsym, max_tsym * 4));
    for (size_t t = 0; t < tbs.size(); ++t) {
      auto& tb = tbs[t];
      std::byte* sym = static_cast<std::byte*>(dbsym) + (t % 4) * max_tsym;
      std::vector<hct::HuffChunk> desc;
      uint64_t off = 0;
      for (size_t i = tb.first; i < tb.last; ++i) {
        const auto& h = hks[i].h;
        desc.push_back({h.payload, h.payload_bytes, h.symbols, sym + off});
        tb.b.max_symbols = std::max(tb.b.max_symbols, h.symbols);
        off += h.symbols;
      }
      CK(cudaMalloc(reinterpret_cast<void**>(&tb.ddesc), sizeof(hct::HuffChunk) * desc.size()));
      CK(cudaMemcpy(tb.ddesc, desc.data(), sizeof(hct::HuffChunk) * desc.size(),
                    cudaMemcpyHostToDevice));
      tb.b.chunks = tb.ddesc;
      tb.b.count = uint32_t(desc.size());
      tb.b.substream = hks[tb.first].h.substream;
      tb.a = hks[tb.first].a;
      tb.a.symbols = sym;
      tb.a.row_end = hks[tb.last - 1].a.row_end;
    }
    std::vector<cudaStream_t> hs(4);
    for (auto& x : hs) CK(cudaStreamCreateWithFlags(&x, cudaStreamNonBlocking));
    // 0: Huffman only, 1: Huffman + dequantize, one launch per chunk (the old path);
    // 2, 3: the same, one batched launch per tensor.
    for (int pass = 0; pass < 4; ++pass) {
      std::vector<double> hv;
      for (int r = 0; r < runs + 1; ++r) {
        CK(cudaDeviceSynchronize());
        double a = Now();
        if (pass < 2) {
          for (size_t i = 0; i < hks.size(); ++i) {
            Die(hct::LaunchHuffDecode(hks[i].h, hs[i % 4]), "huff launch");
            if (pass == 1) Die(hct::LaunchDctqDecode(hks[i].a, hs[i % 4]), "launch");
          }
        } else {
          for (size_t t = 0; t < tbs.size(); ++t) {
            Die(hct::LaunchHuffDecodeBatch(tbs[t].b, hs[t % 4]), "huff batch launch");
            if (pass == 3) Die(hct::LaunchDctqDecode(tbs[t].a, hs[t % 4]), "launch");
          }
        }
        CK(cudaDeviceSynchronize());
        if (r > 0) hv.push_back(Now() - a);
      }
      static const char* const kNames[4] = {
          "kernel only (Huffman, per chunk, 4 streams)",
          "kernel only (Huffman + dequant, per chunk)",
          "kernel only (Huffman decode, batch per tensor)",
          "kernel only (Huffman + dequant, batch/tensor)"};
      std::printf("%-48s %7.3f ms = %.0f G symbols/s, %.0f GB/s of BF16 (%zu chunks, %.3f "
                  "bits/symbol)\n",
                  kNames[pass],
                  Median(hv) * 1e3, double(hsym) / Median(hv) / 1e9,
                  double(hsym) * 2 / Median(hv) / 1e9, hks.size(),
                  hsym ? double(hstored) * 8 / double(hsym) : 0.0);
    }
    for (auto& x : hs) CK(cudaStreamDestroy(x));
    for (auto& tb : tbs) CK(cudaFree(tb.ddesc));
    CK(cudaFree(dbsym));
    for (void* b : bufs) CK(cudaFree(b));
    CK(cudaFree(dsym));
  }
#endif

  // 7. Cold: after drop_caches.
  double raw_cold = 0;
  if (!DropCaches()) {
    std::printf("cold runs skipped: cannot write /proc/sys/vm/drop_caches (need root)\n");
  } else {
    {
      hct::RuntimeOptions o = base;
      o.io_threads = std::max(raw_threads, 8);
      auto rt = hct::Runtime::Create(o);
      Die(rt.status(), "runtime");
      std::vector<double> v;
      for (int r = 0; r < cold_runs; ++r) {
        DropCaches();
        v.push_back(timed(**rt, raw_specs));
      }
      raw_cold = Median(v);
      std::printf("%-48s %7.2f GB/s  (O_DIRECT bytes %.2f GB)\n", "raw cold load", raw_cold,
                  (*rt)->stats().bytes_o_direct / 1e9);
    }
    for (size_t vi = 0; vi < vars.size(); ++vi) {
      Variant& va = vars[vi];
      const auto& hct_specs = var_specs[vi];
      double& hct_cold = va.cold;
      hct::RuntimeOptions o = base;
      o.decode_threads = va.threads;
      auto rt = hct::Runtime::Create(o);
      Die(rt.status(), "runtime");
      std::vector<double> v;
      for (int r = 0; r < cold_runs; ++r) {
        DropCaches();
        v.push_back(timed(**rt, hct_specs));
      }
      hct_cold = Median(v);
      std::printf("%-48s %7.2f GB/s  = %.2f x raw cold  (stored read at %.2f GB/s, O_DIRECT "
                  "bytes %.2f GB)\n",
                  (std::string("HCT ") + va.name + " cold load (BF16-equivalent)").c_str(),
                  hct_cold, hct_cold / raw_cold, hct_cold * double(va.bytes) / double(total),
                  (*rt)->stats().bytes_o_direct / 1e9);
    }
  }
  std::printf("\n");
  for (const Variant& va : vars) {
    std::printf("acceptance (%s, %.3f bytes/weight): HCT warm / raw one-shot warm = %.2f "
                "(>= 1.5: %s)",
                va.name, double(va.bytes) / weights, va.warm / raw_warm,
                va.warm >= 1.5 * raw_warm ? "yes" : "NO");
    if (raw_cold > 0)
      std::printf("; HCT cold / raw cold = %.2f (>= 3: %s)", va.cold / raw_cold,
                  va.cold >= 3 * raw_cold ? "yes" : "NO");
    std::printf("; stored read / best pread = %.2f (>= 0.9: %s)", va.stored_rate / pread_best,
                va.stored_rate >= 0.9 * pread_best ? "yes" : "NO");
    if (va.resident > 0)
      std::printf("; resident %.1f GB/s (>= 200: %s) = %.2f x raw resident (>= 3.6: %s), "
                  "%.2f x ceiling %.2f GB/s",
                  va.resident, va.resident >= 200 ? "yes" : "NO", va.resident / raw_resident,
                  va.resident >= 3.6 * raw_resident ? "yes" : "NO", va.resident / ceiling,
                  ceiling);
    std::printf("\n");
  }
  std::printf("%s; %s\n", ProcStatus("VmLck").c_str(), ProcStatus("VmPin").c_str());
  if (!keep) fs::remove_all(dir);
  return 0;
}
