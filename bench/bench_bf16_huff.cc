// "bf16-huff" vs "bytesplit-zstd" (lossless BF16, docs/hct-format.md §5.5).
//
// CPU (default): every model under --weights; per model the BF16 tensors' bits per weight of
// both codecs, the exponent plane's order-0 entropy, and encode / decode MB/s on one thread (CPU
// time: the machine is shared). Models stored in F32 or F16 are also measured after conversion
// to BF16 (round to nearest even), marked "derived": they are not real BF16 checkpoints.
//
// GPU (--gpu): a 70B-shaped tensor (--rows x --cols, Gaussian weights, sigma 0.02, as BF16)
// encoded in --chunk elements per chunk, then decoded on the GPU the way a loader does it: one
// LaunchHuffDecodeBatch over all chunks' exponent planes + one LaunchBf16MergeBatch; also each
// stage alone and one LaunchBf16HuffDecode per chunk; next to cudaMemcpyAsync device-to-device
// of the same BF16 bytes measured in the same run. Median of --runs after --warmup. Checks the
// output bit-exact against the input once.
//
//   hct_bench_bf16_huff [--weights DIR] [--gpu [--rows 28672 --cols 8192 --chunk 1048576
//                        --substream 2048,1024 --runs 20]]
#include <time.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "hct/codec.h"
#include "hct/kernels.h"
#include "tests/codec/codec_weights.h"

#if HCT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace hct {
namespace {

double CpuNow() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

using Bytes = std::vector<std::byte>;

Bytes ToBf16(const testing::StTensor& t) {
  const uint64_t n = t.elements();
  std::vector<float> f(n);
  bench::Die(ToFloat(t.data, t.dtype, f), "to float");
  Bytes b(2 * n);
  bench::Die(FromFloat(f, DType::kBF16, b), "to bf16");
  return b;
}

// Counts the BF16 exponent fields (bits 7..14).
void AddExponentHistogram(const Bytes& b, std::vector<double>* hist) {
  for (size_t i = 0; i + 1 < b.size(); i += 2)
    (*hist)[(uint8_t(b[i]) >> 7 | uint8_t(b[i + 1]) << 1) & 0xff] += 1;
}

struct CodecStats {
  uint64_t stored = 0;
  double enc_s = 0, dec_s = 0;
};

// Encodes (one thread) and decodes every chunk, checking the result bit-exact.
void Measure(const Bytes& b, uint64_t n, Entropy e, CodecStats* s) {
  EncodeOptions o;
  o.lossless_options.entropy = e;
  o.lossless_options.chunk_bytes = 2u << 20;  // hct-convert's default 1 M weights per chunk
  double t0 = CpuNow();
  auto enc = EncodeTensor({b, DType::kBF16, {n}}, o);
  s->enc_s += CpuNow() - t0;
  bench::Die(enc.status(), "encode");
  s->stored += enc->metrics.stored_bytes;
  auto dec = ChunkDecoder::Create(enc->codec, enc->params, DType::kBF16);
  bench::Die(dec.status(), "decoder");
  Bytes out(b.size());
  t0 = CpuNow();
  for (const EncodedChunk& c : enc->chunks)
    bench::Die(dec->Decode(c.bytes, ChunkMeta(c),
                           std::span(out).subspan(2 * c.elem_offset, 2 * c.elem_count)),
               "decode");
  s->dec_s += CpuNow() - t0;
  if (out != b) bench::Die(Status::Internal("round trip differs"), "check");
}

void CpuReport(const std::string& weights) {
  std::printf(
      "| model | BF16 | weights | bytesplit-zstd bits/w | bf16-huff bits/w | exp entropy "
      "| ratio vs BF16 (zstd / huff) | huff vs zstd size | encode MB/s (zstd / huff) | "
      "decode MB/s (zstd / huff) |\n|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<fs::path> models;
  for (const auto& e : fs::directory_iterator(weights))
    if (e.is_directory()) models.push_back(e.path());
  std::sort(models.begin(), models.end());
  for (const fs::path& dir : models) {
    CodecStats z, h;
    uint64_t elems = 0;
    bool derived = false;
    std::vector<double> hist(256, 0);
    for (const std::string& f : testing::SafetensorsFiles(dir.string())) {
      auto file = testing::LoadSafetensors(f);
      bench::Die(file.status(), f.c_str());
      for (const auto& t : file->tensors) {
        if (t.dtype != DType::kBF16 && t.dtype != DType::kF32 && t.dtype != DType::kF16) continue;
        if (t.elements() == 0) continue;
        derived |= t.dtype != DType::kBF16;
        const Bytes b = t.dtype == DType::kBF16 ? Bytes(t.data.begin(), t.data.end()) : ToBf16(t);
        AddExponentHistogram(b, &hist);
        Measure(b, t.elements(), Entropy::kZstd, &z);
        Measure(b, t.elements(), Entropy::kHuffman, &h);
        elems += t.elements();
      }
    }
    if (elems == 0) continue;
    double ent = 0;
    for (double c : hist)
      if (c) ent -= c / double(elems) * std::log2(c / double(elems));
    const double mb = 2.0 * double(elems) / 1e6;
    std::printf(
        "| %s | %s | %.2f M | %.3f | %.3f | %.3f | %.3fx / %.3fx | %.4f | %.0f / %.0f | "
        "%.0f / %.0f |\n",
        dir.filename().c_str(), derived ? "derived (from F32/F16)" : "native", double(elems) / 1e6,
        z.stored * 8.0 / double(elems), h.stored * 8.0 / double(elems), ent,
        2.0 * double(elems) / double(z.stored), 2.0 * double(elems) / double(h.stored),
        double(h.stored) / double(z.stored), mb / z.enc_s, mb / h.enc_s, mb / z.dec_s,
        mb / h.dec_s);
  }
}

#if HCT_WITH_CUDA
struct GpuOptions {
  uint64_t rows = 28672, cols = 8192, chunk = 1u << 20;
  std::vector<uint32_t> substreams = {2048};
  int runs = 20, warmup = 3;
};

double TimeMs(cudaStream_t s, const GpuOptions& o, const std::function<void()>& fn) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < o.warmup; ++i) fn();
  CK(cudaStreamSynchronize(s));
  std::vector<double> ms;
  for (int i = 0; i < o.runs; ++i) {
    CK(cudaEventRecord(a, s));
    fn();
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float t = 0;
    CK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return bench::Median(ms);
}

void GpuReport(const GpuOptions& o) {
  const uint64_t n = o.rows * o.cols, out_bytes = 2 * n;
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %llu x %llu BF16 (%.1f MB), %llu elements per chunk\n", prop.name,
              (unsigned long long)o.rows, (unsigned long long)o.cols, out_bytes / 1e6,
              (unsigned long long)o.chunk);
  Bytes src(out_bytes);
  {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> f(n);
    for (float& v : f) v = nd(rng);
    bench::Die(FromFloat(f, DType::kBF16, src), "bf16");
  }
  char *dout = nullptr, *dcopy = nullptr;
  CK(cudaMalloc(&dout, out_bytes));
  CK(cudaMalloc(&dcopy, out_bytes));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const double copy_ms = TimeMs(
      s, o, [&] { CK(cudaMemcpyAsync(dcopy, dout, out_bytes, cudaMemcpyDeviceToDevice, s)); });
  std::printf("D2D copy of the %.1f MB: %.3f ms = %.1f GB/s (written)\n", out_bytes / 1e6, copy_ms,
              out_bytes / copy_ms / 1e6);
  for (uint32_t k : o.substreams) {
    EncodeOptions eo;
    eo.lossless_options.entropy = Entropy::kHuffman;
    eo.lossless_options.chunk_bytes = 2 * o.chunk;
    eo.lossless_options.huff_substream = k;
    eo.parallel = ThreadsParallelFor(int(std::thread::hardware_concurrency()));
    auto enc = EncodeTensor({src, DType::kBF16, {o.rows, o.cols}}, eo);
    bench::Die(enc.status(), "encode");
    const size_t m = enc->chunks.size();
    std::vector<size_t> poff(m), woff(m);
    size_t ptotal = 0, wtotal = 0;
    for (size_t i = 0; i < m; ++i) {
      poff[i] = ptotal, woff[i] = wtotal;
      ptotal += (enc->chunks[i].bytes.size() + 4095) / 4096 * 4096;
      wtotal += Bf16HuffWorkspaceBytes(enc->chunks[i].elem_count);
    }
    char *dp, *dw;
    HuffChunk* dh;
    Bf16MergeChunk* dm;
    uint32_t* derr;
    CK(cudaMalloc(&dp, ptotal));
    CK(cudaMalloc(&dw, wtotal));
    CK(cudaMalloc(&dh, m * sizeof(HuffChunk)));
    CK(cudaMalloc(&dm, m * sizeof(Bf16MergeChunk)));
    CK(cudaMalloc(&derr, 4));
    CK(cudaMemset(derr, 0, 4));
    std::vector<HuffChunk> h(m);
    std::vector<Bf16MergeChunk> mc(m);
    uint64_t maxn = 0;
    for (size_t i = 0; i < m; ++i) {
      const EncodedChunk& c = enc->chunks[i];
      CK(cudaMemcpy(dp + poff[i], c.bytes.data(), c.bytes.size(), cudaMemcpyHostToDevice));
      bench::Die(DescribeBf16HuffChunk(dp + poff[i], c.bytes.size(), c.elem_count, dw + woff[i],
                                       dout + 2 * c.elem_offset, &h[i], &mc[i]),
                 "describe");
      maxn = std::max<uint64_t>(maxn, c.elem_count);
    }
    CK(cudaMemcpy(dh, h.data(), m * sizeof(HuffChunk), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dm, mc.data(), m * sizeof(Bf16MergeChunk), cudaMemcpyHostToDevice));
    HuffBatchArgs ha;
    ha.chunks = dh, ha.count = uint32_t(m), ha.substream = k, ha.max_symbols = maxn;
    ha.error = derr;
    Bf16MergeBatchArgs ma;
    ma.chunks = dm, ma.count = uint32_t(m), ma.max_count = maxn, ma.error = derr;
    auto huff = [&] { bench::Die(LaunchHuffDecodeBatch(ha, s), "huff batch"); };
    auto merge = [&] { bench::Die(LaunchBf16MergeBatch(ma, s), "merge batch"); };
    const double huff_ms = TimeMs(s, o, huff);
    const double merge_ms = TimeMs(s, o, merge);
    const double both_ms = TimeMs(s, o, [&] { huff(), merge(); });
    const double per_chunk_ms = TimeMs(s, o, [&] {
      for (size_t i = 0; i < m; ++i) {
        Bf16HuffDecodeArgs a;
        a.payload = dp + poff[i], a.payload_bytes = enc->chunks[i].bytes.size();
        a.elements = enc->chunks[i].elem_count, a.substream = k;
        a.workspace = dw + woff[i], a.workspace_bytes = Bf16HuffWorkspaceBytes(a.elements);
        a.out = dout + 2 * enc->chunks[i].elem_offset, a.error = derr;
        bench::Die(LaunchBf16HuffDecode(a, s), "decode");
      }
    });
    Bytes back(out_bytes);
    uint32_t err = 0;
    CK(cudaMemcpy(back.data(), dout, out_bytes, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&err, derr, 4, cudaMemcpyDeviceToHost));
    const bool exact = back == src && err == 0;
    auto gbs = [&](double ms) { return out_bytes / ms / 1e6; };
    std::printf("substream %u: %zu chunks, %.3f bits/weight, output %s\n", k, m,
                enc->metrics.bits_per_weight, exact ? "bit-exact" : "DIFFERS");
    std::printf("  huffman batch (exponents) %.3f ms = %.1f GB/s BF16-equivalent (%.2fx copy)\n",
                huff_ms, gbs(huff_ms), copy_ms / huff_ms);
    std::printf("  merge batch               %.3f ms = %.1f GB/s BF16 (%.2fx copy)\n", merge_ms,
                gbs(merge_ms), copy_ms / merge_ms);
    std::printf("  full decode (both)        %.3f ms = %.1f GB/s BF16 (%.2fx copy)\n", both_ms,
                gbs(both_ms), copy_ms / both_ms);
    std::printf("  per-chunk LaunchBf16HuffDecode x%zu %.3f ms = %.1f GB/s BF16 (%.2fx copy)\n", m,
                per_chunk_ms, gbs(per_chunk_ms), copy_ms / per_chunk_ms);
    for (void* p : {static_cast<void*>(dp), static_cast<void*>(dw), static_cast<void*>(dh),
                    static_cast<void*>(dm), static_cast<void*>(derr)})
      cudaFree(p);
    if (!exact) std::exit(1);
  }
}
#endif

}  // namespace
}  // namespace hct

int main(int argc, char** argv) {
  std::string weights = "../shared/weights", subs = "2048";
  bool gpu = false;
#if HCT_WITH_CUDA
  hct::GpuOptions g;
#endif
  uint64_t rows = 28672, cols = 8192, chunk = 1u << 20;
  int runs = 20;
  po::options_description d("hct_bench_bf16_huff");
  d.add_options()("help", "this text")("weights", po::value(&weights), "models folder")(
      "gpu", po::bool_switch(&gpu), "GPU kernel throughput instead")(
      "rows", po::value(&rows), "GPU tensor rows")("cols", po::value(&cols), "GPU tensor cols")(
      "chunk", po::value(&chunk), "elements per chunk")(
      "substream", po::value(&subs), "comma-separated sub-stream sizes")("runs", po::value(&runs),
                                                                         "timed launches");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, d), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << d << "\n";
    return 0;
  }
  if (!gpu) {
    hct::CpuReport(weights);
    return 0;
  }
#if HCT_WITH_CUDA
  g.rows = rows, g.cols = cols, g.chunk = chunk, g.runs = runs;
  g.substreams.clear();
  std::stringstream ss(subs);
  for (std::string t; std::getline(ss, t, ',');) g.substreams.push_back(uint32_t(std::stoul(t)));
  hct::GpuReport(g);
  return 0;
#else
  std::fprintf(stderr, "hct_bench_bf16_huff: built without CUDA\n");
  return 2;
#endif
}
