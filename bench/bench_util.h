// Helpers shared by the benchmarks: timing, medians, fatal errors, page-cache control.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hct/status.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#endif

namespace hct::bench {

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Benchmarks stop at the first error: `program: what: status`.
inline void Die(const Status& s, const char* what) {
  if (s.ok()) return;
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

// Parses the command line into `vm`. nullopt: go on; otherwise main's exit code: 0 after --help
// (when `desc` has it) printed the options, 2 after a bad option (message and options on stderr).
inline std::optional<int> ParseCommandLine(int argc, char** argv,
                                           const boost::program_options::options_description& desc,
                                           boost::program_options::variables_map& vm) {
  namespace po = boost::program_options;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << argv[0] << ": " << e.what() << "\n" << desc;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  return std::nullopt;
}

// Drops the page cache for cold-read figures (root only); false when not permitted.
inline bool DropCaches() {
  ::sync();
  int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY);
  if (fd < 0) return false;
  bool ok = ::write(fd, "3", 1) == 1;
  ::close(fd);
  return ok;
}

// The line of /proc/self/status that starts with `key` ("VmLck:", "VmPin:").
inline std::string ProcStatus(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return line;
  return std::string(key) + " ?";
}

// The tensors of one Llama-70B decoder layer (hidden 8192, 64 heads and 8 KV heads of 128, MLP
// 28672): 1.59 GiB in BF16. `scale` shrinks the row counts (multiples of 16) for quick runs.
struct LayerTensor {
  std::string name;
  uint64_t rows, cols;  // rows == 1: a 1-D tensor of `cols`
};
inline std::vector<LayerTensor> Llama70bLayer(double scale = 1.0) {
  auto r = [&](uint64_t n) { return std::max<uint64_t>(16, uint64_t(double(n) * scale) / 16 * 16); };
  const std::string p = "model.layers.0.";
  return {{p + "input_layernorm.weight", 1, 8192},
          {p + "self_attn.q_proj.weight", r(8192), 8192},
          {p + "self_attn.k_proj.weight", r(1024), 8192},
          {p + "self_attn.v_proj.weight", r(1024), 8192},
          {p + "self_attn.o_proj.weight", r(8192), 8192},
          {p + "post_attention_layernorm.weight", 1, 8192},
          {p + "mlp.gate_proj.weight", r(28672), 8192},
          {p + "mlp.up_proj.weight", r(28672), 8192},
          {p + "mlp.down_proj.weight", r(8192), 28672}};
}


inline uint16_t ToBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);  // round to nearest even (finite inputs)
  return uint16_t(u >> 16);
}

// `n` Gaussian-like BF16 weights (Irwin-Hall of 4 uniforms), sigma 0.02, filled by `threads`
// threads; the same seed gives the same weights.
inline void FillGaussianBF16(std::vector<uint16_t>* out, uint64_t n, int threads, uint64_t seed) {
  out->resize(n);
  uint16_t* d = out->data();
  const uint64_t per = (n + uint64_t(threads) - 1) / uint64_t(threads);
  std::vector<std::thread> th;
  for (int k = 0; k < threads; ++k)
    th.emplace_back([=] {
      uint64_t x = seed * 0x9E3779B97F4A7C15ull + uint64_t(k) * 0xD1B54A32D192ED03ull + 1;
      const float scale = 0.02f * std::sqrt(3.0f) / 2.0f / 2147483648.0f;
      for (uint64_t i = uint64_t(k) * per; i < std::min(n, uint64_t(k + 1) * per); ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const float s = float(int32_t(uint32_t(x))) + float(int32_t(uint32_t(x >> 32)));
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const float r = float(int32_t(uint32_t(x))) + float(int32_t(uint32_t(x >> 32)));
        d[i] = ToBF16((s + r) * scale);
      }
    });
  for (auto& x : th) x.join();
}

// N threads pread `path` in `chunk` pieces into pinned buffers (when CUDA is on). ring == 0: each
// thread reuses its own buffer (the classic page-cache rate); ring > 0: the pieces rotate through
// one ring of `ring` bytes as the one-shot engine's do (same memory footprint, no copies).
inline double ReadRate(const std::string& path, int threads, bool direct,
                       uint64_t chunk = 8ull << 20, uint64_t ring = 0) {
  struct stat st {};
  ::stat(path.c_str(), &st);
  const uint64_t size = uint64_t(st.st_size), n = (size + chunk - 1) / chunk;
  const uint64_t nslots = ring ? std::max<uint64_t>(1, ring / chunk) : 0;
  void* ring_mem = nullptr;
  if (nslots) {
#if HCT_WITH_CUDA
    if (cudaHostAlloc(&ring_mem, nslots * chunk, 0) != cudaSuccess) ring_mem = nullptr;
#endif
    if (!ring_mem) ring_mem = std::aligned_alloc(4096, nslots * chunk);
    std::memset(ring_mem, 0, nslots * chunk);
  }
  std::atomic<uint64_t> next{0};
  std::vector<std::thread> th;
  double t0 = Now();
  for (int t = 0; t < threads; ++t)
    th.emplace_back([&] {
      int fd = ::open(path.c_str(), O_RDONLY | (direct ? O_DIRECT : 0));
      if (fd < 0) return;
      void* b = nullptr;
      bool pinned = false;
      if (!nslots) {
#if HCT_WITH_CUDA
        pinned = cudaHostAlloc(&b, chunk, 0) == cudaSuccess;
        if (!pinned) b = nullptr;
#endif
        if (!b) b = std::aligned_alloc(4096, chunk);
      }
      for (uint64_t c; (c = next.fetch_add(1)) < n;) {
        uint64_t len = std::min(chunk, size - c * chunk);
        if (direct) len = (len + 4095) & ~4095ull;
        void* dst = nslots ? static_cast<char*>(ring_mem) + (c % nslots) * chunk : b;
        if (::pread(fd, dst, len, off_t(c * chunk)) < 0) std::perror("pread");
      }
      ::close(fd);
#if HCT_WITH_CUDA
      if (pinned) {
        cudaFreeHost(b);
        b = nullptr;
      }
#endif
      std::free(b);
    });
  for (auto& x : th) x.join();
  const double rate = double(size) / (Now() - t0) / 1e9;
#if HCT_WITH_CUDA
  if (ring_mem && cudaFreeHost(ring_mem) == cudaSuccess) ring_mem = nullptr;
  (void)cudaGetLastError();
#endif
  std::free(ring_mem);
  return rate;
}

}  // namespace hct::bench

#if HCT_WITH_CUDA
// CUDA calls in benchmarks: the project's check macro, fatal on error.
#define CK(x) ::hct::bench::Die(HCT_CALL_STATUS(cuda, x), "bench")

namespace hct::bench {

// Whether the GPU path runs: a device is present and the options do not force host placement.
inline bool UseDevice(bool force_host) {
  int n = 0;
  return !force_host && cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// Prints the name of `device`, makes it current and returns a new non-blocking stream on it.
inline cudaStream_t OpenDevice(int device) {
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, device));
  std::printf("device: %s\n", prop.name);
  CK(cudaSetDevice(device));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

// The ceiling a load figure is printed next to, measured in the same run: GB/s (1e9) of one
// pinned cudaMemcpyAsync of `bytes` to `dev` on `s`, median of `runs` after one warm-up.
inline double PinnedCopyCeiling(void* dev, uint64_t bytes, cudaStream_t s, int runs) {
  void* pin = nullptr;
  CK(cudaHostAlloc(&pin, bytes, 0));
  std::memset(pin, 1, bytes);
  std::vector<double> v;
  for (int r = 0; r < runs + 1; ++r) {
    const double a = Now();
    CK(cudaMemcpyAsync(dev, pin, bytes, cudaMemcpyHostToDevice, s));
    CK(cudaStreamSynchronize(s));
    if (r > 0) v.push_back(double(bytes) / 1e9 / (Now() - a));
  }
  CK(cudaFreeHost(pin));
  return Median(v);
}

}  // namespace hct::bench
#endif
