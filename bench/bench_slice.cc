// Tensor-parallel slice benchmark (Runtime::LoadSlice, docs/tensor-parallel.md): one
// 70B-shaped BF16 tensor (default 28672 x 8192, an MLP gate/up matrix: 448 MiB) as safetensors,
// as a warm-cache entry, and as HCT (lossy dctq-huff at an INT4-like error, transform none; and
// lossless bf16-huff). In one run it prints the pinned cudaMemcpy ceiling of the tensor's bytes,
// then per source the full-tensor load and, for world 2, 4 and 8, rank 0's and the last rank's
// shard along the leading dimension (column-parallel) and the trailing one (row-parallel): bytes
// read per load (file bytes, or HCT stored bytes), their fraction of the full load's, the output
// rate (GB/s of BF16 delivered) and the rate per byte read against the full load's. Warm page
// cache (every file read once first); medians of --runs runs; each shard is checked once
// against the same slice of the full load. Without a GPU it runs on the host placement.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "hct/cache.h"
#include "hct/codec.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "hct/runtime.h"
#include "hct/safetensors.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "bench/bench_util.h"

namespace po = boost::program_options;
using hct::bench::Die;
using hct::bench::Median;
using hct::bench::Now;

namespace {

const char* kName = "model.layers.0.mlp.up_proj.weight";

uint16_t ToBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

// Gaussian-like weights (sum of 4 uniforms), sigma 0.02.
std::vector<uint16_t> Weights(uint64_t n, int threads) {
  std::vector<uint16_t> d(n);
  const uint64_t per = (n + uint64_t(threads) - 1) / uint64_t(threads);
  std::vector<std::thread> th;
  for (int k = 0; k < threads; ++k)
    th.emplace_back([&, k] {
      uint64_t x = 0x9E3779B97F4A7C15ull * uint64_t(k + 7) + 1;
      const float scale = 0.02f * std::sqrt(3.0f) / 2.0f / 2147483648.0f;
      for (uint64_t i = uint64_t(k) * per; i < std::min(n, uint64_t(k + 1) * per); ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const float s = float(int32_t(uint32_t(x))) + float(int32_t(uint32_t(x >> 32)));
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const float r = float(int32_t(uint32_t(x))) + float(int32_t(uint32_t(x >> 32)));
        d[i] = ToBF16((s + r) * scale);
      }
    });
  for (auto& t : th) t.join();
  return d;
}

void ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> b(16 << 20);
  while (in.read(b.data(), std::streamsize(b.size())) || in.gcount() > 0) {
  }
}

void WarmTree(const std::string& dir) {
  for (auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) ReadWhole(e.path().string());
}

void WriteHct(const std::string& path, const std::vector<uint16_t>& w, uint64_t rows,
              uint64_t cols, bool lossy, double max_error, int threads) {
  auto wr = hct::HctWriter::Create(path, true);
  Die(wr.status(), "create hct");
  hct::EncodeOptions eo;
  eo.lossy = lossy;
  eo.lossy_options.max_error = max_error;
  eo.lossy_options.transform = hct::Transform::kNone;
  eo.lossless_options.entropy = hct::Entropy::kHuffman;  // bf16-huff
  eo.parallel = hct::ThreadsParallelFor(threads);
  hct::TensorView v{{reinterpret_cast<const std::byte*>(w.data()), w.size() * 2},
                    hct::DType::kBF16, {rows, cols}};
  auto enc = hct::EncodeTensor(v, eo);
  Die(enc.status(), "encode");
  Die(wr->BeginTensor(kName, hct::DType::kBF16, {rows, cols}, enc->codec, enc->params), "begin");
  for (const auto& c : enc->chunks)
    Die(wr->AppendChunk(c.bytes, c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count),
        "append");
  Die(wr->EndTensor(), "end");
  Die(wr->Finish(), "finish hct");
  std::printf("  %s: %s, %zu chunks, %.3f bits/weight, rel err %.4f\n", path.c_str(),
              enc->codec.c_str(), enc->chunks.size(), enc->metrics.bits_per_weight,
              enc->metrics.rel_rms_error);
}

struct Ctx {
  hct::Runtime* rt;
  void* stream;
  int runs;
};

uint64_t ReadBytes(const hct::Runtime& rt) {
  auto s = rt.stats();
  return s.bytes_one_shot + s.bytes_resident + s.bytes_hct_stored;
}

// Median seconds of `runs` loads (after one untimed), and the bytes one load read.
template <class F>
std::pair<double, uint64_t> Time(const Ctx& c, F&& load) {
  std::vector<double> v;
  uint64_t bytes = 0;
  for (int r = 0; r <= c.runs; ++r) {
    const uint64_t b0 = ReadBytes(*c.rt);
    const double a = Now();
    hct::LoadedTensor t = load();
    Die(t.Wait(), "wait");
    if (r > 0) v.push_back(Now() - a);
    bytes = ReadBytes(*c.rt) - b0;
  }
  return {Median(v), bytes};
}

std::vector<std::byte> Host(const hct::LoadedTensor& t) {
  std::vector<std::byte> h(t.bytes());
  Die(t.Wait(), "wait");
#if HCT_WITH_CUDA
  if (t.placement() == hct::Placement::kDevice) {
    CK(cudaMemcpy(h.data(), t.data(), h.size(), cudaMemcpyDeviceToHost));
    return h;
  }
#endif
  std::memcpy(h.data(), t.data(), h.size());
  return h;
}

// The slice cut on the host from the full tensor's bytes.
bool SameAsFull(const std::vector<std::byte>& full, const std::vector<std::byte>& got,
                uint64_t rows, uint64_t cols, const hct::TensorSlice& s) {
  const uint64_t row = cols * 2;
  if (s.dim == hct::SliceDim::kLeading)
    return std::memcmp(got.data(), full.data() + uint64_t(s.start) * row, got.size()) == 0;
  const uint64_t seg = uint64_t(s.length) * 2;
  for (uint64_t r = 0; r < rows; ++r)
    if (std::memcmp(got.data() + r * seg, full.data() + r * row + uint64_t(s.start) * 2, seg))
      return false;
  return true;
}

void RunSource(const char* label, const hct::TensorSpec& spec, const Ctx& c, uint64_t rows,
               uint64_t cols) {
  auto [tf, bf] = Time(c, [&] {
    auto t = c.rt->Load(spec, c.stream);
    Die(t.status(), "full load");
    return std::move(*t);
  });
  const double gb_full = double(spec.length) / 1e9;
  std::printf("%-22s full      %8.1f MB read  %6.2f GB/s out  %6.2f GB/s read\n", label,
              bf / 1e6, gb_full / tf, bf / 1e9 / tf);
  auto full_t = c.rt->Load(spec, c.stream);
  Die(full_t.status(), "full load");
  const auto full = Host(*full_t);
  for (int world : {2, 4, 8})
    for (hct::SliceDim d : {hct::SliceDim::kLeading, hct::SliceDim::kTrailing})
      for (int rank : {0, world - 1}) {
        auto sl = hct::EvenSlice(spec, d, rank, world);
        Die(sl.status(), "even slice");
        auto first = c.rt->LoadSlice(spec, *sl, c.stream);
        Die(first.status(), "slice");
        const bool ok = SameAsFull(full, Host(*first), rows, cols, *sl);
        auto [ts, bs] = Time(c, [&] {
          auto t = c.rt->LoadSlice(spec, *sl, c.stream);
          Die(t.status(), "slice load");
          return std::move(*t);
        });
        const double out = double(first->bytes()) / 1e9;
        std::printf("%-22s w%d r%d %-8s %8.1f MB read (%.3f of full)  %6.2f GB/s out  "
                    "%6.2f GB/s read (%.2fx full per byte)  %s\n",
                    label, world, rank, d == hct::SliceDim::kLeading ? "leading" : "trailing",
                    bs / 1e6, double(bs) / double(bf), out / ts, bs / 1e9 / ts,
                    (double(bs) / ts) / (double(bf) / tf), ok ? "check ok" : "CHECK FAILED");
      }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  uint64_t rows = 28672, cols = 8192;
  int runs = 5, threads = 0;
  double max_error = 0.118;
  po::options_description desc("hct_bench_slice: tensor-parallel shard loads of one tensor");
  desc.add_options()("help,h", "this help")(
      "dir", po::value(&dir)->default_value("/tmp/hct_bench_slice"), "where to write files")(
      "rows", po::value(&rows)->default_value(28672), "leading dimension")(
      "cols", po::value(&cols)->default_value(8192), "trailing dimension")(
      "runs", po::value(&runs)->default_value(5), "timed runs per figure (median)")(
      "threads", po::value(&threads)->default_value(0), "encode threads (0: all cores)")(
      "max-error", po::value(&max_error)->default_value(0.118), "lossy relative RMS error");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, desc), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  namespace fs = std::filesystem;
  fs::remove_all(dir);
  fs::create_directories(dir + "/lossy");
  fs::create_directories(dir + "/lossless");
  const uint64_t bytes = rows * cols * 2;
  std::printf("tensor %s [%llu, %llu] BF16, %.1f MiB\n", kName, (unsigned long long)rows,
              (unsigned long long)cols, double(bytes) / (1 << 20));
  {
    const auto w = Weights(rows * cols, threads);
    hct::SafetensorsWriterOptions wo;
    wo.data_alignment = 4096;
    wo.overwrite = true;
    auto st = hct::SafetensorsWriter::Create(dir + "/model.safetensors", wo);
    Die(st.status(), "create safetensors");
    Die(st->Declare(kName, hct::DType::kBF16, {rows, cols}), "declare");
    Die(st->Write(kName, {reinterpret_cast<const std::byte*>(w.data()), bytes}), "write");
    Die(st->Finish(), "finish safetensors");
    WriteHct(dir + "/lossy/model.hct", w, rows, cols, true, max_error, threads);
    WriteHct(dir + "/lossless/model.hct", w, rows, cols, false, max_error, threads);
  }
  {
    auto cache = hct::Cache::Open(dir + "/cache");
    Die(cache.status(), "cache");
    Die((*cache)->Warm(dir + "/model.safetensors").status(), "warm");
  }
  WarmTree(dir);

  auto opt = hct::RuntimeOptions::FromEnv();
  Die(opt.status(), "options");
  void* stream = nullptr;
#if HCT_WITH_CUDA
  int ndev = 0;
  if (!opt->force_host && cudaGetDeviceCount(&ndev) == cudaSuccess && ndev > 0) {
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, opt->device));
    std::printf("device: %s\n", prop.name);
    CK(cudaSetDevice(opt->device));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    stream = s;
    void *pin = nullptr, *dev = nullptr;
    CK(cudaHostAlloc(&pin, bytes, 0));
    CK(cudaMalloc(&dev, bytes));
    std::memset(pin, 1, bytes);
    std::vector<double> v;
    for (int r = 0; r <= runs; ++r) {
      const double a = Now();
      CK(cudaMemcpyAsync(dev, pin, bytes, cudaMemcpyHostToDevice, s));
      CK(cudaStreamSynchronize(s));
      if (r > 0) v.push_back(double(bytes) / 1e9 / (Now() - a));
    }
    std::printf("pinned cudaMemcpy ceiling (the tensor's bytes): %.2f GB/s\n", Median(v));
    CK(cudaFreeHost(pin));
    CK(cudaFree(dev));
  } else {
    (void)cudaGetLastError();
  }
#endif
  auto rt = hct::Runtime::Create(*opt);
  Die(rt.status(), "runtime");
  std::printf("placement: %s\n", (*rt)->placement() == hct::Placement::kDevice ? "GPU" : "host");
  hct::RuntimeOptions nv = *opt;
  nv.verify = false;
  auto rt_nv = hct::Runtime::Create(nv);
  Die(rt_nv.status(), "runtime");
  struct Src {
    const char* label;
    hct::Result<hct::Catalog> cat;
    hct::Runtime* rt;
  };
  Src srcs[] = {{"safetensors", hct::Catalog::FromSafetensors(dir + "/model.safetensors"), rt->get()},
                {"cache", hct::Catalog::FromCache(dir + "/cache"), rt->get()},
                {"cache (verify off)", hct::Catalog::FromCache(dir + "/cache"), rt_nv->get()},
                {"hct lossy dctq-huff", hct::Catalog::FromHct(dir + "/lossy"), rt->get()},
                {"hct lossless bf16-huff", hct::Catalog::FromHct(dir + "/lossless"), rt->get()}};
  for (Src& s : srcs) {
    Die(s.cat.status(), s.label);
    const hct::TensorSpec* spec = s.cat->Find(kName);
    if (!spec) Die(hct::Status::NotFound(kName), s.label);
    RunSource(s.label, *spec, Ctx{s.rt, stream, runs}, rows, cols);
  }
  fs::remove_all(dir);
  return 0;
}
