// GPU decode kernel benchmark (issue 6): the fused dequantize + inverse DCT + BF16 kernel alone
// on a 70B MLP tensor (28672 x 8192 int8 symbols) for tiles 8/16/32 and the identity transform,
// next to the HBM ceiling measured in the same run (cudaMemcpy device-to-device of the output's
// size). CUDA events around each launch; median of --runs after --warmup launches.
// Optional comparison: the same inverse DCT as two cuBLAS SGEMMs (--cublas).
//
//   hct_bench_kernels [--rows 28672] [--cols 8192] [--runs 25] [--tiles 8,16,32] [--cublas]
#include <boost/program_options.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numbers>
#include <sstream>
#include <string>
#include <vector>

#include "hct/kernels.h"

#ifdef HCT_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "bench/bench_check_cublas.h"
#endif

namespace po = boost::program_options;

#ifndef HCT_WITH_CUDA
int main() {
  std::fprintf(stderr, "hct_bench_kernels: built without CUDA\n");
  return 2;
}
#else

namespace hct {
namespace {

struct Options {
  uint64_t rows = 28672, cols = 8192;
  int runs = 25, warmup = 3;
  std::vector<int> tiles = {8, 16, 32};
  bool cublas = false;
  std::string out_type = "BF16";
};

// Median milliseconds of `runs` timed calls of fn (each between two events on `s`).
Result<double> TimeMs(cudaStream_t s, int warmup, int runs, const std::function<Status()>& fn) {
  cudaEvent_t a, b;
  HCT_CHECK(cuda, cudaEventCreate(&a));
  HCT_CHECK(cuda, cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) HCT_RETURN_IF_ERROR(fn());
  HCT_CHECK(cuda, cudaStreamSynchronize(s));
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    HCT_CHECK(cuda, cudaEventRecord(a, s));
    HCT_RETURN_IF_ERROR(fn());
    HCT_CHECK(cuda, cudaEventRecord(b, s));
    HCT_CHECK(cuda, cudaEventSynchronize(b));
    float t = 0;
    HCT_CHECK(cuda, cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Row {
  std::string name;
  double ms;
};

Status Run(const Options& o) {
  const auto out_type = ParseDType(o.out_type);
  if (!out_type) return Status::InvalidArgument("unknown --out-type " + o.out_type);
  const uint64_t n = o.rows * o.cols;
  const size_t out_bytes = n * (*out_type == DType::kF32 ? 4 : 2);
  cudaDeviceProp prop{};
  int dev = 0;
  HCT_CHECK(cuda, cudaGetDevice(&dev));
  HCT_CHECK(cuda, cudaGetDeviceProperties(&prop, dev));

  void *sym = nullptr, *out = nullptr, *copy_dst = nullptr;
  HCT_CHECK(cuda, cudaMalloc(&sym, n));
  HCT_CHECK(cuda, cudaMalloc(&out, out_bytes));
  HCT_CHECK(cuda, cudaMalloc(&copy_dst, out_bytes));
  {  // Random int8 symbols (the kernels' speed does not depend on the values).
    std::vector<int8_t> h(n);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (uint64_t i = 0; i < n; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      h[i] = int8_t(int(x % 61) - 30);
    }
    HCT_CHECK(cuda, cudaMemcpy(sym, h.data(), n, cudaMemcpyHostToDevice));
  }
  cudaStream_t s;
  HCT_CHECK(cuda, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  std::vector<Row> rows;
  HCT_ASSIGN_OR_RETURN(double copy_ms, TimeMs(s, o.warmup, o.runs, [&]() -> Status {
                         HCT_CHECK(cuda, cudaMemcpyAsync(copy_dst, out, out_bytes,
                                                         cudaMemcpyDeviceToDevice, s));
                         return Status::OK();
                       }));
  auto decode = [&](GpuTransform tr, int tile) {
    DctqDecodeArgs a;
    a.symbols = sym;
    a.symbol_type = DType::kI8;
    a.step = 1e-3f;
    a.rows = a.row_end = o.rows;
    a.cols = o.cols;
    a.transform = tr;
    a.tile_rows = a.tile_cols = uint32_t(tile);
    a.out_type = *out_type;
    a.out = out;
    return LaunchDctqDecode(a, s);
  };
  for (int t : o.tiles) {
    HCT_ASSIGN_OR_RETURN(double ms, TimeMs(s, o.warmup, o.runs,
                                           [&] { return decode(GpuTransform::kDct, t); }));
    rows.push_back({"dct " + std::to_string(t) + "x" + std::to_string(t), ms});
  }
  HCT_ASSIGN_OR_RETURN(double id_ms, TimeMs(s, o.warmup, o.runs,
                                            [&] { return decode(GpuTransform::kNone, 1); }));
  rows.push_back({"identity", id_ms});

  if (o.cublas) {
    // Alternative: dequantize to F32 (identity kernel), then X = A C per band and X A^T per
    // tile row as two SGEMMs on F32 (the final BF16 conversion is not even counted).
    float *coef = nullptr, *y = nullptr, *x = nullptr, *basis = nullptr;
    HCT_CHECK(cuda, cudaMalloc(&coef, n * 4));
    HCT_CHECK(cuda, cudaMalloc(&y, n * 4));
    HCT_CHECK(cuda, cudaMalloc(&x, n * 4));
    HCT_CHECK(cuda, cudaMalloc(&basis, 2 * 64 * 64 * 4));
    cublasHandle_t h;
    HCT_CHECK(cublas, cublasCreate(&h));
    HCT_CHECK(cublas, cublasSetStream(h, s));
    for (int t : o.tiles) {
      std::vector<float> a(t * t), at(t * t);  // A[i][k] = a_k cos(pi (2i+1) k / 2t), row-major
      for (int i = 0; i < t; ++i) {
        for (int k = 0; k < t; ++k) {
          const double ak = k == 0 ? std::sqrt(1.0 / t) : std::sqrt(2.0 / t);
          a[i * t + k] = at[k * t + i] = float(ak * std::cos(std::numbers::pi * (2 * i + 1) * k / (2.0 * t)));
        }
      }
      HCT_CHECK(cuda, cudaMemcpy(basis, a.data(), t * t * 4, cudaMemcpyHostToDevice));
      HCT_CHECK(cuda, cudaMemcpy(basis + t * t, at.data(), t * t * 4, cudaMemcpyHostToDevice));
      const float one = 1.0f, zero = 0.0f;
      const long long band = (long long)t * o.cols;
      const int bands = int(o.rows / t), segs = int(n / t);
      HCT_ASSIGN_OR_RETURN(double ms, TimeMs(s, o.warmup, o.runs, [&]() -> Status {
        DctqDecodeArgs d;
        d.symbols = sym;
        d.rows = d.row_end = o.rows;
        d.cols = o.cols;
        d.transform = GpuTransform::kNone;
        d.out_type = DType::kF32;
        d.step = 1e-3f;
        d.out = coef;
        HCT_RETURN_IF_ERROR(LaunchDctqDecode(d, s));
        // Column-major view: a band is a cols x t matrix; Y_b = C_b * A^T (A^T = A's memory).
        HCT_CHECK(cublas, cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, int(o.cols), t,
                                                    t, &one, coef, int(o.cols), band, basis, t, 0,
                                                    &zero, y, int(o.cols), band, bands));
        // Tile-row segments: a t x segs matrix; X = A * Y (A = A^T's memory).
        HCT_CHECK(cublas, cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, t, segs, t, &one,
                                      basis + t * t, t, y, t, &zero, x, t));
        return Status::OK();
      }));
      rows.push_back({"cuBLAS " + std::to_string(t) + "x" + std::to_string(t) + " (F32 out)", ms});
    }
    cublasDestroy(h);
    cudaFree(coef);
    cudaFree(y);
    cudaFree(x);
    cudaFree(basis);
  }

  std::printf("device: %s (%d SMs), tensor %llu x %llu int8 -> %s, median of %d runs\n",
              prop.name, prop.multiProcessorCount, (unsigned long long)o.rows,
              (unsigned long long)o.cols, o.out_type.c_str(), o.runs);
  std::printf("%-28s %10s %14s %16s %10s\n", "variant", "ms", "output GB/s", "in+out GB/s",
              "vs copy");
  const double out_gbs_copy = out_bytes / copy_ms / 1e6;
  std::printf("%-28s %10.4f %14.1f %16.1f %10s\n", "D2D memcpy (HBM ceiling)", copy_ms,
              out_gbs_copy, 2.0 * out_bytes / copy_ms / 1e6, "1.00");
  for (const Row& r : rows) {
    const double out_gbs = out_bytes / r.ms / 1e6;
    std::printf("%-28s %10.4f %14.1f %16.1f %10.2f\n", r.name.c_str(), r.ms, out_gbs,
                double(out_bytes + n) / r.ms / 1e6, out_gbs / out_gbs_copy);
  }
  cudaStreamDestroy(s);
  cudaFree(sym);
  cudaFree(out);
  cudaFree(copy_dst);
  return Status::OK();
}

}  // namespace
}  // namespace hct

int main(int argc, char** argv) {
  hct::Options o;
  std::string tiles = "8,16,32";
  po::options_description desc("hct_bench_kernels options");
  desc.add_options()("help,h", "this help")(
      "rows", po::value(&o.rows)->default_value(o.rows), "tensor rows")(
      "cols", po::value(&o.cols)->default_value(o.cols), "tensor columns")(
      "runs", po::value(&o.runs)->default_value(o.runs), "timed launches per variant")(
      "warmup", po::value(&o.warmup)->default_value(o.warmup), "untimed launches first")(
      "tiles", po::value(&tiles)->default_value(tiles), "square DCT tile sizes, comma-separated")(
      "out-type", po::value(&o.out_type)->default_value(o.out_type), "BF16, F16 or F32")(
      "cublas", po::bool_switch(&o.cublas), "also time the cuBLAS two-SGEMM variant");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hct_bench_kernels: %s\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::ostringstream os;
    os << desc;
    std::printf("%s", os.str().c_str());
    return 0;
  }
  o.tiles.clear();
  std::stringstream ss(tiles);
  for (std::string t; std::getline(ss, t, ',');) o.tiles.push_back(std::stoi(t));
  if (o.runs < 1 || o.rows == 0 || o.cols == 0) {
    std::fprintf(stderr, "hct_bench_kernels: --runs, --rows and --cols must be positive\n");
    return 2;
  }
  hct::Status s = hct::Run(o);
  if (!s.ok()) {
    std::fprintf(stderr, "hct_bench_kernels: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
#endif
