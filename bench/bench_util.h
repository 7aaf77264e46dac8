// Helpers shared by the benchmarks: timing, medians, fatal errors, page-cache control.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "hct/status.h"

#if HCT_WITH_CUDA
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
