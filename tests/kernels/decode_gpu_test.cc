// GPU tests of the decode kernels against the library's CPU reference decoder
// (hct::ChunkDecoder::Reconstruct) and, for the byte-plane merge, against the codec's
// documented split. Outputs are poisoned with 0xFF bytes (NaN in every float type) before each
// launch, so an element the kernel fails to write fails the comparison. Skips without a GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpu_test_util.h"
#include "hct/codec.h"
#include "hct/kernels.h"
#include "hct/safetensors.h"

namespace hct {
namespace {



#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(size_t n) {
    if (cudaMalloc(&p, std::max<size_t>(n, 1)) != cudaSuccess) p = nullptr;
  }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  std::byte* b() const { return static_cast<std::byte*>(p); }
};

size_t OutBytes(DType t) { return t == DType::kF32 ? 4 : 2; }

float ToFloat(const std::byte* p, DType t) {
  if (t == DType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  if (t == DType::kBF16) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return float(v);
}

// A "dctq-zstd" tensor's symbols, described as the codec's params describe it.
struct Lossy {
  uint64_t rows = 0, cols = 0;
  int tile_r = 16, tile_c = 16;
  bool dct = true;
  int symbol_bits = 8;
  float step = 1e-3f;
  uint64_t rows_per_chunk = 0;  // 0: the whole tensor in one chunk
  std::vector<std::byte> symbols;

  uint64_t rpc() const {
    if (rows_per_chunk) return rows_per_chunk;
    return dct ? (rows + tile_r - 1) / tile_r * tile_r : rows;
  }
};

Lossy RandomLossy(uint64_t rows, uint64_t cols, int tr, int tc, int bits, uint32_t seed) {
  Lossy l;
  l.rows = rows;
  l.cols = cols;
  l.tile_r = tr;
  l.tile_c = tc;
  l.symbol_bits = bits;
  l.step = bits == 8 ? 1e-3f : 3e-5f;
  std::mt19937 rng(seed);
  const uint64_t n = rows * cols;
  l.symbols.resize(n * (bits / 8));
  // Wide, heavy-tailed symbols: most small, some at the ends of the range.
  std::normal_distribution<double> g(0.0, bits == 8 ? 25.0 : 4000.0);
  const double lim = bits == 8 ? 127 : 32767;
  for (uint64_t i = 0; i < n; ++i) {
    const double v = std::clamp(std::round(g(rng)), -lim, lim);
    if (bits == 8) {
      l.symbols[i] = std::byte(uint8_t(int8_t(v)));
    } else {
      const int16_t s = int16_t(v);
      std::memcpy(&l.symbols[2 * i], &s, 2);
    }
  }
  return l;
}

// The library's CPU decoder, chunk by chunk, in `out_type`.
std::vector<std::byte> CpuReference(const Lossy& l, DType out_type) {
  nlohmann::json params = {{"transform", l.dct ? "dct" : "none"},
                           {"tile_r", l.dct ? l.tile_r : 1},
                           {"tile_c", l.dct ? l.tile_c : 1},
                           {"step", double(l.step)},
                           {"symbol_bits", l.symbol_bits},
                           {"rows", l.rows},
                           {"cols", l.cols},
                           {"rows_per_chunk", l.rpc()},
                           {"entropy", "zstd"}};
  auto dec = ChunkDecoder::Create(kCodecDctqZstd, params.dump(), out_type);
  EXPECT_TRUE(dec.ok()) << dec.status().ToString();
  std::vector<std::byte> out(l.rows * l.cols * OutBytes(out_type));
  if (!dec.ok()) return out;
  const size_t sb = l.symbol_bits / 8;
  for (uint64_t r0 = 0; r0 < l.rows; r0 += l.rpc()) {
    const uint64_t nr = std::min(l.rpc(), l.rows - r0);
    const uint64_t e0 = r0 * l.cols, ne = nr * l.cols;
    ChunkMeta meta(ne * sb, 0, e0, ne);
    Status s = dec->Reconstruct(std::span(l.symbols).subspan(e0 * sb, ne * sb), meta,
                                std::span(out).subspan(e0 * OutBytes(out_type),
                                                       ne * OutBytes(out_type)));
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  return out;
}

struct GpuRun {
  std::vector<std::pair<uint64_t, uint64_t>> row_ranges;  // one launch each; empty: whole
  size_t sym_offset = 0;  // byte offsets from 256-byte alignment, to exercise unaligned paths
  size_t out_offset = 0;
};

// Decodes l on the GPU into a poisoned buffer; returns the whole output (poison included).
std::vector<std::byte> GpuDecode(const Lossy& l, DType out_type, const GpuRun& run = {}) {
  const size_t sb = l.symbol_bits / 8, ob = OutBytes(out_type);
  const size_t nbytes = l.rows * l.cols * ob;
  DevBuf dsym(l.symbols.size() + run.sym_offset), dout(nbytes + run.out_offset);
  EXPECT_TRUE(dsym.p && dout.p);
  std::vector<std::byte> host(nbytes);
  if (!dsym.p || !dout.p) return host;
  EXPECT_EQ(cudaMemcpy(dsym.b() + run.sym_offset, l.symbols.data(), l.symbols.size(),
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  EXPECT_EQ(cudaMemset(dout.p, 0xFF, nbytes + run.out_offset), cudaSuccess);
  cudaStream_t stream;
  EXPECT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  auto ranges = run.row_ranges;
  if (ranges.empty()) ranges.push_back({0, l.rows});
  for (auto [r0, r1] : ranges) {
    DctqDecodeArgs a;
    a.symbols = dsym.b() + run.sym_offset + r0 * l.cols * sb;
    a.symbol_type = l.symbol_bits == 8 ? DType::kI8 : DType::kI16;
    a.step = l.step;
    a.rows = l.rows;
    a.cols = l.cols;
    a.row_begin = r0;
    a.row_end = r1;
    a.transform = l.dct ? GpuTransform::kDct : GpuTransform::kNone;
    a.tile_rows = l.tile_r;
    a.tile_cols = l.tile_c;
    a.out_type = out_type;
    a.out = dout.b() + run.out_offset;
    Status s = LaunchDctqDecode(a, stream);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaStreamDestroy(stream);
  EXPECT_EQ(cudaMemcpy(host.data(), dout.b() + run.out_offset, nbytes, cudaMemcpyDeviceToHost),
            cudaSuccess);
  return host;
}

// Lossy comparison. F32: relative RMS error and max error (relative to the largest |ref|)
// <= 1e-6. BF16/F16: equal to the reference's rounding except rare one-ulp differences where
// the two float summation orders straddle a rounding boundary.
void ExpectMatches(const std::vector<std::byte>& gpu, const std::vector<std::byte>& ref,
                   DType t, const std::string& what) {
  ASSERT_EQ(gpu.size(), ref.size()) << what;
  const size_t ob = OutBytes(t), n = ref.size() / ob;
  if (t == DType::kF32) {
    double se = 0, sr = 0, max_err = 0, max_ref = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const double g = ToFloat(&gpu[i * 4], t), r = ToFloat(&ref[i * 4], t);
      if (!std::isfinite(g)) ++bad;
      se += (g - r) * (g - r);
      sr += r * r;
      max_err = std::max(max_err, std::fabs(g - r));
      max_ref = std::max(max_ref, std::fabs(r));
    }
    EXPECT_EQ(bad, 0u) << what << ": unwritten (NaN) or non-finite outputs";
    EXPECT_LE(std::sqrt(se / std::max(sr, 1e-300)), 1e-6) << what;
    EXPECT_LE(max_err, 1e-6 * max_ref) << what;
    return;
  }
  // Float summation order changes results by ~1e-7 of the tensor's scale; near zero that can be
  // several ulps of the output type, so differences within 2e-6 * max|ref| are accepted outright.
  double max_ref = 0;
  for (size_t i = 0; i < n; ++i) max_ref = std::max<double>(max_ref, std::fabs(ToFloat(&ref[i * 2], t)));
  const double abs_tol = 2e-6 * max_ref;
  size_t off_by_one = 0, first_bad = n;
  for (size_t i = 0; i < n; ++i) {
    uint16_t g, r;
    std::memcpy(&g, &gpu[i * 2], 2);
    std::memcpy(&r, &ref[i * 2], 2);
    if (g == r) continue;
    const double gf = ToFloat(&gpu[i * 2], t), rf = ToFloat(&ref[i * 2], t);
    if (std::isfinite(gf) && std::fabs(gf - rf) <= abs_tol) continue;
    // Adjacent representable values: same sign, bit patterns one apart (or +-0 around zero).
    const bool adjacent = ((g ^ r) & 0x8000) == 0 ? (std::max(g, r) - std::min(g, r) == 1)
                                                  : ((g | r) & 0x7fff) <= 1;
    if (adjacent) {
      ++off_by_one;
    } else if (first_bad == n) {
      first_bad = i;
    }
  }
  EXPECT_EQ(first_bad, n) << what << ": element " << first_bad << " differs by more than one ulp"
                          << (first_bad < n ? " (gpu " +
                                                  std::to_string(ToFloat(&gpu[first_bad * 2], t)) +
                                                  ", ref " +
                                                  std::to_string(ToFloat(&ref[first_bad * 2], t)) +
                                                  ")"
                                            : "");
  const size_t allowed = std::max<size_t>(4, n / (t == DType::kBF16 ? 1000 : 200));
  EXPECT_LE(off_by_one, allowed) << what << ": one-ulp differences";
}

std::string Name(const Lossy& l, DType t) {
  return std::to_string(l.rows) + "x" + std::to_string(l.cols) + " tile " +
         std::to_string(l.tile_r) + "x" + std::to_string(l.tile_c) + (l.dct ? "" : " identity") +
         " int" + std::to_string(l.symbol_bits) + " -> " + std::string(DTypeName(t));
}

struct Shape {
  uint64_t rows, cols;
  int tr, tc;
};

TEST(DctqDecodeGpu, RandomSymbolsAllShapesAndTypes) {
  REQUIRE_GPU();
  const Shape shapes[] = {
      {64, 512, 8, 8},      // fast path only
      {96, 768, 16, 16},    // fast path only
      {128, 1024, 32, 32},  // fast path only
      {37, 53, 16, 16},     // fast path + right strip + bottom band + corner
      {1, 1000, 16, 16},    // a single short tile-row
      {1000, 1, 16, 16},    // a single narrow tile column
      {300, 700, 16, 16},   // several column blocks, the last partial, and edges
      {72, 600, 32, 32},    // 32-tile edges of 24 rows and 24 columns
      {100, 200, 8, 32},    // non-square: generic path
      {45, 77, 5, 12},      // odd tile sizes
      {130, 140, 64, 64},   // largest tile (64 KiB of shared memory)
  };
  uint32_t seed = 1;
  for (const Shape& sh : shapes) {
    for (int bits : {8, 16}) {
      const Lossy l = RandomLossy(sh.rows, sh.cols, sh.tr, sh.tc, bits, seed++);
      for (DType t : {DType::kBF16, DType::kF16, DType::kF32}) {
        ExpectMatches(GpuDecode(l, t), CpuReference(l, t), t, Name(l, t));
      }
    }
  }
}

TEST(DctqDecodeGpu, ChunksLaunchedOneByOneOrTogether) {
  REQUIRE_GPU();
  Lossy l = RandomLossy(300, 700, 16, 16, 8, 99);
  l.rows_per_chunk = 64;  // chunks of 4 tile-rows; the last has 44 rows
  const auto ref = CpuReference(l, DType::kBF16);
  GpuRun one_by_one;
  for (uint64_t r = 0; r < l.rows; r += 64) one_by_one.row_ranges.push_back({r, std::min(r + 64, l.rows)});
  ExpectMatches(GpuDecode(l, DType::kBF16, one_by_one), ref, DType::kBF16, "chunk by chunk");
  GpuRun two_launches;  // chunks 0-2 in one launch, 3-4 in another
  two_launches.row_ranges = {{0, 192}, {192, 300}};
  ExpectMatches(GpuDecode(l, DType::kBF16, two_launches), ref, DType::kBF16, "grouped chunks");
}

TEST(DctqDecodeGpu, WritesOnlyItsRows) {
  REQUIRE_GPU();
  for (bool dct : {true, false}) {
    Lossy l = RandomLossy(200, 96, 16, 16, 8, 5);
    l.dct = dct;
    GpuRun run;
    run.row_ranges = {{64, 128}};
    const auto gpu = GpuDecode(l, DType::kF32, run);
    const auto ref = CpuReference(l, DType::kF32);
    const size_t row_bytes = l.cols * 4;
    for (size_t i = 0; i < gpu.size(); ++i) {
      const size_t row = i / row_bytes;
      if (row < 64 || row >= 128) {
        ASSERT_EQ(gpu[i], std::byte{0xFF}) << "byte " << i << " outside the chunk was written";
      }
    }
    std::vector<std::byte> g(gpu.begin() + 64 * row_bytes, gpu.begin() + 128 * row_bytes);
    std::vector<std::byte> r(ref.begin() + 64 * row_bytes, ref.begin() + 128 * row_bytes);
    ExpectMatches(g, r, DType::kF32, dct ? "rows 64..128" : "identity rows 64..128");
  }
}

TEST(DctqDecodeGpu, UnalignedPointers) {
  REQUIRE_GPU();
  for (int tile : {8, 16, 32}) {
    const Lossy l = RandomLossy(64, 512, tile, tile, 8, 40 + tile);
    for (DType t : {DType::kBF16, DType::kF32}) {
      GpuRun run;
      run.sym_offset = 3;
      run.out_offset = OutBytes(t);  // one element off 16-byte alignment: scalar stores
      ExpectMatches(GpuDecode(l, t, run), CpuReference(l, t), t, "unaligned " + Name(l, t));
    }
  }
}

TEST(DctqDecodeGpu, IdentityIsBitExact) {
  REQUIRE_GPU();
  const Shape shapes[] = {{1000, 1001, 1, 1}, {1, 7, 1, 1}, {64, 64, 1, 1}};
  uint32_t seed = 300;
  for (const Shape& sh : shapes) {
    for (int bits : {8, 16}) {
      Lossy l = RandomLossy(sh.rows, sh.cols, 1, 1, bits, seed++);
      l.dct = false;
      for (DType t : {DType::kBF16, DType::kF16, DType::kF32}) {
        for (size_t off : {size_t(0), size_t(1)}) {
          GpuRun run;
          run.sym_offset = off * (bits / 8);  // one element off alignment
          run.out_offset = off * OutBytes(t);
          EXPECT_EQ(GpuDecode(l, t, run), CpuReference(l, t))
              << Name(l, t) << " offset " << off;
        }
      }
    }
  }
}

// ---- Byte-plane merge ---------------------------------------------------------------------

// The codec's split (docs/hct-format.md §5, codec/codec_lossless.cc): plane p holds byte
// (W-1-p) of the word rotated left by `rot`.
std::vector<uint8_t> Split(const std::vector<uint8_t>& words, int wb, int rot) {
  const size_t n = words.size() / wb;
  std::vector<uint8_t> planes(words.size());
  const int bits = 8 * wb;
  for (size_t i = 0; i < n; ++i) {
    uint64_t w = 0;
    for (int b = 0; b < wb; ++b) w |= uint64_t(words[i * wb + b]) << (8 * b);
    if (rot) {
      const uint64_t mask = bits == 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
      w = ((w << rot) | (w >> (bits - rot))) & mask;
    }
    for (int p = 0; p < wb; ++p) planes[p * n + i] = uint8_t(w >> (8 * (wb - 1 - p)));
  }
  return planes;
}

TEST(BytePlaneMergeGpu, BitExactRoundTrip) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  for (int wb : {1, 2, 4, 8}) {
    for (int rot : {0, 1, 3}) {
      if (wb == 1 && rot) continue;
      for (size_t n : {size_t(1), size_t(15), size_t(16), size_t(1000), size_t(4099),
                       size_t(1) << 20}) {
        for (size_t off : {size_t(0), size_t(1)}) {
          std::vector<uint8_t> words(n * wb);
          for (auto& b : words) b = uint8_t(rng());
          const auto planes = Split(words, wb, rot);
          DevBuf dp(planes.size() + off), dout(words.size() + off);
          ASSERT_TRUE(dp.p && dout.p);
          CUDA_OK(cudaMemcpy(dp.b() + off, planes.data(), planes.size(), cudaMemcpyHostToDevice));
          CUDA_OK(cudaMemset(dout.p, 0xFF, words.size() + off));
          BytePlaneMergeArgs a;
          a.planes = dp.b() + off;
          a.plane_stride = n;
          a.count = n;
          a.word_bytes = wb;
          a.rotate_bits = rot;
          a.out = dout.b() + off;
          Status s = LaunchBytePlaneMerge(a, nullptr);
          ASSERT_TRUE(s.ok()) << s.ToString();
          CUDA_OK(cudaDeviceSynchronize());
          std::vector<uint8_t> got(words.size());
          CUDA_OK(cudaMemcpy(got.data(), dout.b() + off, got.size(), cudaMemcpyDeviceToHost));
          EXPECT_EQ(got, words) << "word_bytes " << wb << " rot " << rot << " n " << n
                                << " offset " << off;
        }
      }
    }
  }
}

// ---- Real weights -------------------------------------------------------------------------

std::string WeightsDir() {
  if (const char* e = std::getenv("HCT_WEIGHTS_DIR")) return e;
  return HCT_SOURCE_DIR "/../shared/weights";
}

// Encodes real 2-D tensors with the library's lossy encoder, then decodes each chunk's symbols
// on the GPU and with the CPU reference decoder.
TEST(DctqDecodeGpu, RealWeights) {
  REQUIRE_GPU();
  const std::string path = WeightsDir() + "/kdoc-lm-25m/model-00001-of-00004.safetensors";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " absent";
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  int tested = 0;
  for (const TensorInfo& ti : file->tensors()) {
    if (ti.shape.size() != 2 || ti.shape[0] < 64 || ti.shape[1] < 64 || tested >= 3) continue;
    auto data = file->data(ti);
    ASSERT_TRUE(data.ok()) << data.status().ToString();
    for (int tile : {8, 16, 32}) {
      EncodeOptions o;
      o.lossy = true;
      o.lossy_options.transform = Transform::kDct;
      o.lossy_options.tile_r = o.lossy_options.tile_c = tile;
      o.lossy_options.chunk_symbols = 1 << 16;
      auto enc = EncodeTensor({*data, ti.dtype, ti.shape}, o);
      ASSERT_TRUE(enc.ok()) << ti.name << ": " << enc.status().ToString();
      if (enc->codec != kCodecDctqZstd) continue;
      auto dec = ChunkDecoder::Create(enc->codec, enc->params, ti.dtype);
      ASSERT_TRUE(dec.ok()) << dec.status().ToString();
      const auto& p = dec->dctq();
      Lossy l;
      l.rows = p.rows;
      l.cols = p.cols;
      l.tile_r = p.tile_r;
      l.tile_c = p.tile_c;
      l.dct = p.dct;
      l.symbol_bits = p.symbol_bits;
      l.step = p.step;
      l.rows_per_chunk = p.rows_per_chunk;
      GpuRun run;
      for (const EncodedChunk& ch : enc->chunks) {
        std::vector<std::byte> sym(ch.decoded_size);
        Status s = dec->DecodePayload(ch.bytes, ChunkMeta(ch), sym);
        ASSERT_TRUE(s.ok()) << s.ToString();
        l.symbols.insert(l.symbols.end(), sym.begin(), sym.end());
        const uint64_t r0 = ch.elem_offset / l.cols;
        run.row_ranges.push_back({r0, r0 + ch.elem_count / l.cols});
      }
      ASSERT_EQ(l.symbols.size(), l.rows * l.cols * (l.symbol_bits / 8));
      for (DType t : {DType::kBF16, DType::kF32}) {
        ExpectMatches(GpuDecode(l, t, run), CpuReference(l, t), t, ti.name + " " + Name(l, t));
      }
    }
    ++tested;
  }
  EXPECT_GT(tested, 0) << "no 2-D tensor in " << path;
}

}  // namespace
}  // namespace hct
