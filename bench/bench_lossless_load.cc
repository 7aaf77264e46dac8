// Lossless HCT -> GPU load benchmark (issue 12 item 3): a Llama-70B-shaped layer (BF16,
// Gaussian-like weights, 1.59 GiB; bench_util.h) written as safetensors and encoded LOSSLESSLY
// into two HCT files: "bf16-huff" (exponent plane Huffman-decoded on the GPU) and
// "bytesplit-zstd" (zstd on the CPU decode threads), both in hct-convert's 1 M-weight chunks. In
// one run it prints the pinned cudaMemcpy ceiling, the page cache -> pinned pread rate, the raw
// one-shot warm load at 6/8/12/16 I/O threads (best and the default marked) and the raw resident
// load, then each HCT file's warm loads (page cache hot; and with resident_budget covering the
// file, which reports whether the runtime registered it), as BF16 GB/s with ratios to the best
// raw one-shot, the default raw one-shot, the raw resident load and the ceiling. Every HCT load
// is first checked bit-exact against the source weights. Medians of --runs runs.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "hct/codec.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "hct/runtime.h"
#include "hct/safetensors.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using hct::bench::Die;
using hct::bench::Median;
using hct::bench::Now;

namespace {

struct Layer {
  std::vector<hct::bench::LayerTensor> shapes;
  std::vector<std::vector<uint16_t>> data;
  uint64_t bytes = 0;
};

std::vector<uint64_t> ShapeOf(const hct::bench::LayerTensor& t) {
  return t.rows == 1 ? std::vector<uint64_t>{t.cols} : std::vector<uint64_t>{t.rows, t.cols};
}

std::span<const std::byte> BytesOf(const std::vector<uint16_t>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size() * 2};
}

void WriteSafetensors(const Layer& L, const std::string& path) {
  hct::SafetensorsWriterOptions wo;
  wo.data_alignment = 4096;
  wo.overwrite = true;
  auto w = hct::SafetensorsWriter::Create(path, wo);
  Die(w.status(), "create safetensors");
  for (const auto& t : L.shapes) Die(w->Declare(t.name, hct::DType::kBF16, ShapeOf(t)), "declare");
  for (size_t i = 0; i < L.shapes.size(); ++i)
    Die(w->Write(L.shapes[i].name, BytesOf(L.data[i])), "write");
  Die(w->Finish(), "finish safetensors");
}

// Lossless HCT of the layer with `entropy` for BF16; returns the file's bytes.
uint64_t WriteHct(const Layer& L, const std::string& path, hct::Entropy entropy, uint32_t substream,
                  int threads) {
  const double t0 = Now();
  auto w = hct::HctWriter::Create(path, true);
  Die(w.status(), "create hct");
  hct::EncodeOptions eo;
  eo.lossy = false;
  eo.lossless_options.entropy = entropy;
  eo.lossless_options.huff_substream = substream;
  eo.lossless_options.chunk_bytes = hct::kDefaultChunkElems * 2;  // hct-convert's chunks
  eo.parallel = hct::ThreadsParallelFor(threads);
  std::string codec;
  for (size_t i = 0; i < L.shapes.size(); ++i) {
    auto enc = hct::EncodeTensor({BytesOf(L.data[i]), hct::DType::kBF16, ShapeOf(L.shapes[i])}, eo);
    Die(enc.status(), "encode");
    if (codec.find(enc->codec) == std::string::npos) codec += (codec.empty() ? "" : "+") + enc->codec;
    Die(w->BeginTensor(L.shapes[i].name, hct::DType::kBF16, ShapeOf(L.shapes[i]), enc->codec,
                       enc->params),
        "begin");
    for (const auto& c : enc->chunks)
      Die(w->AppendChunk(c.bytes, c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count),
          "append");
    Die(w->EndTensor(), "end");
  }
  Die(w->Finish(), "finish hct");
  const uint64_t bytes = fs::file_size(path);
  std::printf("%-16s %s: %.3f GiB = %.3f bits/weight (%.3fx smaller than BF16), encoded in %.1f s\n",
              codec.c_str(), path.c_str(), double(bytes) / (1ull << 30),
              double(bytes) * 16 / double(L.bytes), double(L.bytes) / double(bytes), Now() - t0);
  return bytes;
}

struct Bench {
  void* stream = nullptr;
  void* dev = nullptr;
  uint64_t dev_bytes = 0;
  double gb = 0;
  int runs = 5;
  bool gpu = false;
};

// Median GB/s (BF16 bytes / wall time to the load's completion) of `runs` loads after one warm-up.
double Timed(const Bench& b, hct::Runtime& rt, const std::vector<hct::TensorSpec>& specs) {
  std::vector<double> v;
  for (int r = 0; r <= b.runs; ++r) {
    const double a = Now();
    auto l = rt.LoadMany(specs, b.stream, b.dev, b.dev_bytes);
    Die(l.status(), "load");
    Die((*l)[0].Wait(), "wait");
    if (r > 0) v.push_back(b.gb / (Now() - a));
  }
  return Median(v);
}

// The loaded tensors equal the source weights, bit for bit.
void CheckExact(const Bench& b, hct::Runtime& rt, const std::vector<hct::TensorSpec>& specs,
                const Layer& L, const char* what) {
  auto l = rt.LoadMany(specs, b.stream, b.dev, b.dev_bytes);
  Die(l.status(), "load (check)");
  Die((*l)[0].Wait(), "wait");
  for (const auto& t : *l) {
    size_t i = 0;
    while (L.shapes[i].name != t.spec().name) ++i;
    std::vector<uint16_t> h(L.data[i].size());
    if (b.gpu) {
#if HCT_WITH_CUDA
      CK(cudaMemcpy(h.data(), t.data(), h.size() * 2, cudaMemcpyDeviceToHost));
#endif
    } else {
      std::memcpy(h.data(), t.data(), h.size() * 2);
    }
    if (h != L.data[i]) {
      std::fprintf(stderr, "%s: tensor %s differs from the source\n", what, t.spec().name.c_str());
      std::exit(1);
    }
  }
  std::printf("%s: every tensor bit-exact with the source\n", what);
}

double PinnedCeiling(Bench* b, uint64_t total) {
#if HCT_WITH_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return 0;
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  b->stream = s;
  b->gpu = true;
  CK(cudaMalloc(&b->dev, b->dev_bytes));
  void* pin = nullptr;
  CK(cudaHostAlloc(&pin, total, 0));
  std::memset(pin, 1, total);
  std::vector<double> v;
  for (int r = 0; r <= b->runs; ++r) {
    const double a = Now();
    CK(cudaMemcpyAsync(b->dev, pin, total, cudaMemcpyHostToDevice, s));
    CK(cudaStreamSynchronize(s));
    if (r > 0) v.push_back(double(total) / 1e9 / (Now() - a));
  }
  CK(cudaFreeHost(pin));
  return Median(v);
#else
  (void)b, (void)total;
  return 0;
#endif
}

std::unique_ptr<hct::Runtime> MakeRuntime(const hct::RuntimeOptions& o) {
  auto rt = hct::Runtime::Create(o);
  Die(rt.status(), "runtime");
  return std::move(*rt);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int threads = 0;
  uint32_t substream = 2048;
  double scale = 1.0;
  bool keep = false;
  std::vector<uint64_t> slot_mib;
  std::string slots = "64,16,8";
  Bench b;
  po::options_description desc("hct_bench_lossless_load: lossless HCT -> GPU load benchmark");
  desc.add_options()("help,h", "this help")(
      "dir", po::value(&dir)->default_value("/tmp/hct_bench_lossless_load"), "where to write")(
      "runs", po::value(&b.runs)->default_value(5), "runs per figure (median)")(
      "threads", po::value(&threads)->default_value(0), "encode threads (0: all cores)")(
      "substream", po::value(&substream)->default_value(2048), "bf16-huff sub-stream size")(
      "scale", po::value(&scale)->default_value(1.0), "fraction of the rows (quick tries)")(
      "slot-mib", po::value(&slots)->default_value(slots),
      "compressed ring slot sizes to try, MiB (hct_slot_bytes; the first also for resident)")(
      "keep", po::bool_switch(&keep), "keep the generated files");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, desc), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  for (size_t p = 0; p < slots.size();) {
    const size_t q = std::min(slots.find(',', p), slots.size());
    slot_mib.push_back(std::stoull(slots.substr(p, q - p)));
    p = q + 1;
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* d : {"/st", "/huff", "/zstd"}) fs::create_directories(dir + d);

  Layer L;
  L.shapes = hct::bench::Llama70bLayer(scale);
  L.data.resize(L.shapes.size());
  for (size_t i = 0; i < L.shapes.size(); ++i) {
    hct::bench::FillGaussianBF16(&L.data[i], L.shapes[i].rows * L.shapes[i].cols, threads, i + 1);
    L.bytes += L.data[i].size() * 2;
  }
  b.gb = double(L.bytes) / 1e9;
  std::printf("layer: %zu tensors, %.3f GiB BF16\n", L.shapes.size(), double(L.bytes) / (1ull << 30));
  const std::string st_path = dir + "/st/layer.safetensors";
  WriteSafetensors(L, st_path);
  struct Var {
    const char* name;
    hct::Entropy entropy;
    std::string path;
    uint64_t bytes = 0;
  };
  std::vector<Var> vars = {{"bf16-huff", hct::Entropy::kHuffman, dir + "/huff/layer.hct"},
                           {"bytesplit-zstd", hct::Entropy::kZstd, dir + "/zstd/layer.hct"}};
  for (Var& v : vars) v.bytes = WriteHct(L, v.path, v.entropy, substream, threads);

  auto raw_cat = hct::Catalog::FromSafetensors(st_path);
  Die(raw_cat.status(), "raw catalog");
  hct::PackOffsets(raw_cat->tensors(), &b.dev_bytes);
  auto base = hct::RuntimeOptions::FromEnv();
  Die(base.status(), "options");
  base->resident_budget = 0;
  const double ceiling = PinnedCeiling(&b, L.bytes);
  if (!b.gpu) {
    std::printf("no GPU: host placement (CPU decoders; ratios to the ceiling print 0)\n");
    b.dev = std::aligned_alloc(4096, (b.dev_bytes + 4095) & ~4095ull);
  }
  for (const auto& e : fs::recursive_directory_iterator(dir))  // page cache hot
    if (e.is_regular_file()) hct::bench::ReadRate(e.path().string(), 8, false);
  const double pread = hct::bench::ReadRate(st_path, 8, false);
  std::printf("%-52s %7.2f GB/s\n%-52s %7.2f GB/s\n", "pinned cudaMemcpy ceiling (same bytes)",
              ceiling, "page cache -> pinned pread (8 threads, 8 MiB)", pread);

  // Raw one-shot at several I/O thread counts (16: the default), then raw resident.
  const int def_threads = hct::RuntimeOptions{}.io_threads;
  double raw_best = 0, raw_def = 0;
  int best_n = 0;
  for (int n : {6, 8, 12, 16}) {
    hct::RuntimeOptions o = *base;
    o.io_threads = n;
    auto rt = MakeRuntime(o);
    const double g = Timed(b, *rt, raw_cat->tensors());
    std::printf("%-52s %7.2f GB/s = %.2f x ceiling (%d I/O threads%s)\n",
                "raw one-shot warm load", g, ceiling > 0 ? g / ceiling : 0.0, n,
                n == def_threads ? ", the default" : "");
    if (g > raw_best) raw_best = g, best_n = n;
    if (n == def_threads) raw_def = g;
  }
  double raw_res = 0;
  {
    hct::RuntimeOptions o = *base;
    o.resident_budget = 2 * L.bytes;
    auto rt = MakeRuntime(o);
    raw_res = Timed(b, *rt, raw_cat->tensors());
    const auto s = rt->stats();
    std::printf("%-52s %7.2f GB/s = %.2f x ceiling (registered %.2f GB%s%s)\n",
                "raw resident load", raw_res, ceiling > 0 ? raw_res / ceiling : 0.0,
                double(s.registered_bytes) / 1e9, s.resident_fallback.empty() ? "" : "; refused: ",
                s.resident_fallback.c_str());
  }

  for (const Var& v : vars) {
    auto cat = hct::Catalog::FromHct(v.path);
    Die(cat.status(), "hct catalog");
    // Page cache at each slot size (a group is as many chunks as a slot holds), then resident.
    std::vector<std::pair<uint64_t, bool>> runs;
    for (uint64_t mib : slot_mib) runs.push_back({mib, false});
    runs.push_back({slot_mib.empty() ? 64 : slot_mib[0], true});
    for (auto [mib, resident] : runs) {
      hct::RuntimeOptions o = *base;
      if (resident) o.resident_budget = 2 * L.bytes;
      o.hct_slot_bytes = mib << 20;
      auto rt = MakeRuntime(o);
      const std::string label = std::string(v.name) + (resident ? " resident budget" : " page cache") +
                                (b.gpu ? " -> GPU" : " -> host") + " (" + std::to_string(mib) +
                                " MiB slots)";
      CheckExact(b, *rt, cat->tensors(), L, label.c_str());
      const auto s0 = rt->stats();
      const double g = Timed(b, *rt, cat->tensors());
      const auto s1 = rt->stats();
      const double ref = resident && s1.registered_bytes > 0 ? raw_res : raw_best;
      std::printf("%-60s %7.2f GB/s BF16-eq. = %.2f x raw best one-shot (%d threads), %.2f x raw "
                  "default, %.2f x raw resident, %.2f x ceiling; stored read %.2f GB/s; %llu of "
                  "%llu chunks GPU-decoded; registered %.2f GB; >= 1.3 x raw of the same "
                  "placement: %s\n",
                  label.c_str(), g, g / raw_best, best_n, g / raw_def, g / raw_res,
                  ceiling > 0 ? g / ceiling : 0.0, g * double(v.bytes) / double(L.bytes),
                  (unsigned long long)(s1.hct_bf16_gpu_chunks - s0.hct_bf16_gpu_chunks),
                  (unsigned long long)(s1.hct_chunks - s0.hct_chunks),
                  double(s1.registered_bytes) / 1e9, g >= 1.3 * ref ? "yes" : "NO");
    }
  }
  std::printf("%s; %s\n", hct::bench::ProcStatus("VmLck").c_str(),
              hct::bench::ProcStatus("VmPin").c_str());
  if (!keep) fs::remove_all(dir);
  return 0;
}
