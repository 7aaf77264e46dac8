// Lossy codec dctq-zstd (entropy kZstd; dctq-huff: codec_huff_test.cc): DCT, rate control, shapes, symbol widths, round trips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numbers>
#include <random>

#include <xxhash.h>
#include <zstd.h>

#include <nlohmann/json.hpp>

#include "codec/detail/dct.h"
#include "codec/detail/float_convert.h"
#include "hct/codec.h"
#include "params_test_util.h"

namespace hct {
namespace {

using test::JsonOf;

struct Data {
  std::vector<std::byte> bytes;
  DType dtype;
  std::vector<uint64_t> shape;
  TensorView view() const { return {bytes, dtype, shape}; }
};

Data FromFloats(const std::vector<float>& x, DType d, std::vector<uint64_t> shape) {
  Data out{std::vector<std::byte>(*DTypeBytes(d, x.size())), d, std::move(shape)};
  EXPECT_TRUE(FromFloat(x, d, out.bytes).ok());
  return out;
}

std::vector<float> Gaussian(size_t n, uint32_t seed, float sigma = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0, sigma);
  std::vector<float> x(n);
  for (float& v : x) v = g(rng);
  return x;
}

// Smooth along both axes (low-frequency content) plus a little noise.
std::vector<float> Smooth(uint64_t rows, uint64_t cols, uint32_t seed) {
  std::vector<float> x = Gaussian(rows * cols, seed, 0.002f);
  for (uint64_t i = 0; i < rows; ++i)
    for (uint64_t j = 0; j < cols; ++j)
      x[i * cols + j] += std::sin(0.05f * i) * std::cos(0.03f * j) + 0.3f * std::sin(0.011f * j);
  return x;
}

struct Decoded {
  std::vector<std::byte> values;
  std::vector<std::vector<std::byte>> symbols;
};

Decoded DecodeAll(const EncodedTensor& enc, const Data& d) {
  auto dec = ChunkDecoder::Create(enc.codec, enc.params, d.dtype);
  EXPECT_TRUE(dec.ok()) << dec.status().ToString();
  Decoded out;
  out.values.resize(d.bytes.size());
  const uint64_t es = DTypeBits(d.dtype) / 8;
  for (const EncodedChunk& c : enc.chunks) {
    std::vector<std::byte> sym(c.decoded_size);
    Status st = dec->DecodePayload(c.bytes, ChunkMeta(c), sym);
    EXPECT_TRUE(st.ok()) << st.ToString();
    st = dec->Reconstruct(sym, ChunkMeta(c),
                          std::span(out.values).subspan(c.elem_offset * es, c.elem_count * es));
    EXPECT_TRUE(st.ok()) << st.ToString();
    out.symbols.push_back(std::move(sym));
  }
  return out;
}

EncodedTensor MustEncode(const Data& d, const LossyOptions& lo) {
  EncodeOptions o;
  o.lossy = true;
  o.lossy_options = lo;
  o.lossy_options.entropy = Entropy::kZstd;  // these tests read the zstd layout
  auto enc = EncodeTensor(d.view(), o);
  EXPECT_TRUE(enc.ok()) << enc.status().ToString();
  EXPECT_EQ(enc->codec, "dctq-zstd") << enc->note;
  return std::move(enc).value();
}

// The metrics the encoder reports are those of the decoder's output (sums are float lanes per
// chunk, so agreement is to ~1e-6 relative, not bitwise).
void ExpectReportedQuality(const EncodedTensor& enc, const Data& d) {
  Decoded dec = DecodeAll(enc, d);
  auto q = MeasureQuality(d.bytes, dec.values, d.dtype);
  ASSERT_TRUE(q.ok());
  EXPECT_NEAR(q->rel_rms_error, enc.metrics.rel_rms_error, 1e-6 * q->rel_rms_error);
  EXPECT_EQ(q->max_abs_error, enc.metrics.max_abs_error);
  EXPECT_NEAR(q->cosine, enc.metrics.cosine, 1e-6);
  uint64_t stored = 0;
  for (const EncodedChunk& c : enc.chunks) stored += c.bytes.size();
  EXPECT_EQ(enc.metrics.stored_bytes, stored);
  EXPECT_DOUBLE_EQ(enc.metrics.bits_per_weight, stored * 8.0 / q->elements);
}

TEST(CodecDct, OrthonormalAndInverse) {
  for (int n = 1; n <= detail::kMaxTile; ++n) {
    const float* c = detail::DctMatrix(n);
    const float* ct = detail::DctMatrixT(n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int k = 0; k < n; ++k) s += static_cast<double>(c[i * n + k]) * c[j * n + k];
        ASSERT_NEAR(s, i == j ? 1.0 : 0.0, 1e-6) << n << " " << i << " " << j;
        ASSERT_EQ(ct[j * n + i], c[i * n + j]);
      }
  }
  // Forward then inverse on a 37 x 53 array with 16 x 16 tiles (edge tiles 5 x 16, 16 x 5, 5x5).
  std::vector<float> x = Gaussian(37 * 53, 1, 1.0f), y = x;
  detail::DctTiled(y.data(), 37, 53, 16, 16, false);
  double energy_x = 0, energy_y = 0;
  for (size_t i = 0; i < x.size(); ++i) energy_x += x[i] * x[i], energy_y += y[i] * y[i];
  EXPECT_NEAR(energy_y / energy_x, 1.0, 1e-5);  // orthonormal: energy preserved
  detail::DctTiled(y.data(), 37, 53, 16, 16, true);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], 1e-5) << i;
}

TEST(CodecDct, MatchesTheFormulaOnEdgeTiles) {
  // 11 x 7 with tile 8 x 4: tiles 8x4, 8x3, 3x4, 3x3. Forward must equal the DCT-II definition.
  const int R = 11, C = 7, tr = 8, tc = 4;
  std::vector<float> x = Gaussian(R * C, 2, 1.0f), y = x;
  detail::DctTiled(y.data(), R, C, tr, tc, false);
  auto basis = [](int k, int i, int n) {
    return (k == 0 ? std::sqrt(1.0 / n) : std::sqrt(2.0 / n)) *
           std::cos(std::numbers::pi * (2 * i + 1) * k / (2.0 * n));
  };
  for (int r0 = 0; r0 < R; r0 += tr)
    for (int c0 = 0; c0 < C; c0 += tc) {
      const int h = std::min(tr, R - r0), w = std::min(tc, C - c0);
      for (int u = 0; u < h; ++u)
        for (int v = 0; v < w; ++v) {
          double s = 0;
          for (int i = 0; i < h; ++i)
            for (int j = 0; j < w; ++j)
              s += basis(u, i, h) * basis(v, j, w) * x[(r0 + i) * C + c0 + j];
          ASSERT_NEAR(y[(r0 + u) * C + c0 + v], s, 1e-5) << r0 << "," << c0 << " " << u << v;
        }
    }
}

TEST(CodecLossy, MaxErrorTargetMetAndReportedTruthfully) {
  for (DType d : {DType::kBF16, DType::kF16, DType::kF32}) {
    Data data = FromFloats(Gaussian(37 * 53, 3, d == DType::kF16 ? 1.0f : 0.02f), d, {37, 53});
    for (Transform tr : {Transform::kDct, Transform::kNone, Transform::kAuto}) {
      LossyOptions lo;
      lo.max_error = 0.05;
      lo.transform = tr;
      EncodedTensor enc = MustEncode(data, lo);
      EXPECT_LE(enc.metrics.rel_rms_error, 0.05 * (1 + lo.tolerance)) << DTypeName(d);
      EXPECT_GE(enc.metrics.rel_rms_error, 0.05 * 0.9) << DTypeName(d);
      const nlohmann::json params = JsonOf(enc.params);
      EXPECT_EQ(params["transform"], tr == Transform::kNone ? "none" : params["transform"]);
      if (tr == Transform::kDct) {
        EXPECT_EQ(JsonOf(enc.params)["tile_r"], 16);
      }
      ExpectReportedQuality(enc, data);
    }
  }
}

TEST(CodecLossy, ShapesViewedTwoD) {
  const std::vector<std::vector<uint64_t>> shapes = {{5000}, {3, 37, 53}, {2, 3, 17, 19}, {1, 1},
                                                     {70, 1}};
  for (const auto& shape : shapes) {
    uint64_t n = 1;
    for (uint64_t s : shape) n *= s;
    Data data = FromFloats(Gaussian(n, 4), DType::kBF16, shape);
    LossyOptions lo;
    lo.max_error = 0.1;
    lo.transform = Transform::kDct;
    lo.chunk_symbols = 600;  // several chunks where possible
    EncodedTensor enc = MustEncode(data, lo);
    uint64_t rows, cols;
    View2D(shape, &rows, &cols);
    EXPECT_EQ(JsonOf(enc.params)["rows"], rows);
    EXPECT_EQ(JsonOf(enc.params)["cols"], cols);
    EXPECT_EQ(JsonOf(enc.params)["rows_per_chunk"].get<uint64_t>() % 16, 0u);
    if (n > 4) EXPECT_LE(enc.metrics.rel_rms_error, 0.1 * 1.01);
    ExpectReportedQuality(enc, data);
  }
}

TEST(CodecLossy, EdgeTilesDecodeToTheFormula) {
  // 37 x 53, tile 16: the decoder equals q*step through the DCT-III definition, per tile.
  Data data = FromFloats(Gaussian(37 * 53, 5, 1.0f), DType::kF32, {37, 53});
  LossyOptions lo;
  lo.max_error = 0.02;
  lo.transform = Transform::kDct;
  EncodedTensor enc = MustEncode(data, lo);
  ASSERT_EQ(enc.chunks.size(), 1u);
  Decoded dec = DecodeAll(enc, data);
  const float step = JsonOf(enc.params)["step"].get<double>();
  const int bytes = JsonOf(enc.params)["symbol_bits"].get<int>() / 8;
  auto q = [&](int r, int c) -> double {
    const std::byte* p = dec.symbols[0].data() + (r * 53 + c) * bytes;
    if (bytes == 1) return static_cast<int8_t>(*p);
    int16_t v;
    std::memcpy(&v, p, 2);
    return v;
  };
  auto basis = [](int k, int i, int n) {
    return (k == 0 ? std::sqrt(1.0 / n) : std::sqrt(2.0 / n)) *
           std::cos(std::numbers::pi * (2 * i + 1) * k / (2.0 * n));
  };
  const float* out = reinterpret_cast<const float*>(dec.values.data());
  for (int r0 = 0; r0 < 37; r0 += 16)
    for (int c0 = 0; c0 < 53; c0 += 16) {
      const int h = std::min(16, 37 - r0), w = std::min(16, 53 - c0);
      for (int i = 0; i < h; ++i)
        for (int j = 0; j < w; ++j) {
          double s = 0;
          for (int u = 0; u < h; ++u)
            for (int v = 0; v < w; ++v)
              s += basis(u, i, h) * basis(v, j, w) * q(r0 + u, c0 + v) * step;
          ASSERT_NEAR(out[(r0 + i) * 53 + c0 + j], s, 1e-5) << r0 + i << "," << c0 + j;
        }
    }
}

TEST(CodecLossy, SymbolsHashAndZstdLayout) {
  Data data = FromFloats(Gaussian(64 * 300, 6), DType::kBF16, {64, 300});
  LossyOptions lo;
  lo.chunk_symbols = 32 * 300;
  lo.transform = Transform::kDct;
  lo.tile_r = lo.tile_c = 8;
  EncodedTensor enc = MustEncode(data, lo);
  ASSERT_EQ(enc.chunks.size(), 2u);
  for (const EncodedChunk& c : enc.chunks) {
    // Each chunk is one plain zstd frame of row-major symbols.
    std::vector<std::byte> sym(c.decoded_size);
    ASSERT_EQ(ZSTD_decompress(sym.data(), sym.size(), c.bytes.data(), c.bytes.size()),
              sym.size());
    EXPECT_EQ(c.decoded_xxh3, XXH3_64bits(sym.data(), sym.size()));
    EXPECT_EQ(c.decoded_size, c.elem_count * JsonOf(enc.params)["symbol_bits"].get<uint64_t>() / 8);
  }
  EXPECT_EQ(enc.chunks[1].elem_offset, 32u * 300);
}

TEST(CodecLossy, Int16SymbolsForLargeDynamicRange) {
  std::vector<float> x = Gaussian(64 * 64, 7, 1.0f);
  x[100] = 1000.0f;  // 20000 steps: int16
  Data data = FromFloats(x, DType::kF32, {64, 64});
  LossyOptions lo;
  lo.mode = RateMode::kStep;
  lo.step = 0.05;
  lo.transform = Transform::kNone;
  EncodedTensor enc = MustEncode(data, lo);
  EXPECT_EQ(JsonOf(enc.params)["symbol_bits"], 16);
  EXPECT_FLOAT_EQ(JsonOf(enc.params)["step"].get<double>(), 0.05f);
  EXPECT_LE(enc.metrics.max_abs_error, 0.025 + 1e-6);
  ExpectReportedQuality(enc, data);
  // Steps below max|x| / 32767 are raised so symbols still fit in int16.
  lo.step = 1e-6;
  enc = MustEncode(data, lo);
  EXPECT_EQ(JsonOf(enc.params)["symbol_bits"], 16);
  EXPECT_GE(JsonOf(enc.params)["step"].get<double>(), 1000.0 / 32767 * 0.999);
  ExpectReportedQuality(enc, data);
}

TEST(CodecLossy, BitsTarget) {
  Data data = FromFloats(Gaussian(256 * 256, 8), DType::kBF16, {256, 256});
  for (double bits : {2.0, 3.0, 4.5}) {
    LossyOptions lo;
    lo.mode = RateMode::kBits;
    lo.bits = bits;
    EncodedTensor enc = MustEncode(data, lo);
    EXPECT_LE(enc.metrics.bits_per_weight, bits * 1.01);
    EXPECT_GE(enc.metrics.bits_per_weight, bits * 0.9);
    ExpectReportedQuality(enc, data);
  }
}

TEST(CodecLossy, RetentionKeepsTheLargestCoefficients) {
  Data data = FromFloats(Gaussian(128 * 128, 9), DType::kF32, {128, 128});
  LossyOptions lo;
  lo.mode = RateMode::kRetention;
  lo.retention = 0.7;
  EncodedTensor enc = MustEncode(data, lo);
  EXPECT_EQ(JsonOf(enc.params)["transform"], "dct");
  EXPECT_GE(enc.metrics.cosine, 0.99);
  Decoded dec = DecodeAll(enc, data);
  uint64_t zeros = 0, total = 0;
  const int bytes = JsonOf(enc.params)["symbol_bits"].get<int>() / 8;
  for (const auto& s : dec.symbols)
    for (size_t i = 0; i < s.size(); i += bytes, ++total)
      zeros += bytes == 1 ? s[i] == std::byte{0} : (s[i] == std::byte{0} && s[i + 1] == std::byte{0});
  EXPECT_NEAR(static_cast<double>(zeros) / total, 0.3, 0.02);
  ExpectReportedQuality(enc, data);
}

TEST(CodecLossy, AutoPicksDctOnSmoothDataAndNoneOnNoise) {
  Data smooth = FromFloats(Smooth(256, 256, 10), DType::kBF16, {256, 256});
  LossyOptions lo;
  lo.max_error = 0.01;
  lo.transform = Transform::kDct;
  const double dct_bits = MustEncode(smooth, lo).metrics.bits_per_weight;
  lo.transform = Transform::kNone;
  const double none_bits = MustEncode(smooth, lo).metrics.bits_per_weight;
  EXPECT_LT(dct_bits, 0.8 * none_bits);
  lo.transform = Transform::kAuto;
  EXPECT_EQ(JsonOf(MustEncode(smooth, lo).params)["transform"], "dct");

  Data noise = FromFloats(Gaussian(256 * 256, 11), DType::kBF16, {256, 256});
  lo.max_error = 0.1;
  EXPECT_EQ(JsonOf(MustEncode(noise, lo).params)["transform"], "none");
}

TEST(CodecLossy, DeterministicAcrossThreadCounts) {
  Data data = FromFloats(Smooth(300, 200, 12), DType::kBF16, {300, 200});
  EncodeOptions o;
  o.lossy = true;
  o.lossy_options.chunk_symbols = 32 * 200;
  auto one = EncodeTensor(data.view(), o);
  o.parallel = ThreadsParallelFor(3);
  auto three = EncodeTensor(data.view(), o);
  ASSERT_TRUE(one.ok() && three.ok());
  ASSERT_GT(one->chunks.size(), 3u);
  EXPECT_EQ(one->params, three->params);
  for (size_t i = 0; i < one->chunks.size(); ++i)
    EXPECT_EQ(one->chunks[i].bytes, three->chunks[i].bytes);
  EXPECT_EQ(one->metrics.rel_rms_error, three->metrics.rel_rms_error);
}

TEST(CodecLossy, CorruptChunkFailsCleanly) {
  Data data = FromFloats(Gaussian(64 * 64, 13), DType::kBF16, {64, 64});
  EncodedTensor enc = MustEncode(data, {});
  auto dec = ChunkDecoder::Create(enc.codec, enc.params, DType::kBF16);
  ASSERT_TRUE(dec.ok());
  const EncodedChunk& c = enc.chunks[0];
  std::vector<std::byte> out(c.elem_count * 2);
  for (size_t pos = 0; pos < c.bytes.size(); pos += 7) {
    std::vector<std::byte> bad = c.bytes;
    bad[pos] ^= std::byte{0xa5};
    EXPECT_EQ(dec->Decode(bad, ChunkMeta(c), out).code(), Code::kCorruption) << pos;
  }
  std::vector<std::byte> cut(c.bytes.begin(), c.bytes.begin() + c.bytes.size() / 2);
  EXPECT_EQ(dec->Decode(cut, ChunkMeta(c), out).code(), Code::kCorruption);
  ChunkMeta shifted(c);
  shifted.elem_offset += 64;  // not the start of a chunk
  std::vector<std::byte> sym(c.decoded_size);
  ASSERT_TRUE(dec->DecodePayload(c.bytes, ChunkMeta(c), sym).ok());
  EXPECT_EQ(dec->Reconstruct(sym, shifted, out).code(), Code::kCorruption);
}

TEST(CodecLossy, NonFiniteAndIntegerInputsFallBackToLossless) {
  std::vector<float> x = Gaussian(64 * 64, 14);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  Data data = FromFloats(x, DType::kBF16, {64, 64});
  EncodeOptions o;
  o.lossy = true;
  auto enc = EncodeTensor(data.view(), o);
  ASSERT_TRUE(enc.ok());
  EXPECT_FALSE(IsDctqCodec(enc->codec));
  EXPECT_NE(enc->note.find("NaN"), std::string::npos) << enc->note;
  std::vector<std::byte> ints(64 * 64 * 4, std::byte{1});
  enc = EncodeTensor({ints, DType::kI32, {64, 64}}, o);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->note, "lossless: dtype I32");
}

TEST(CodecLossy, RejectsBadOptions) {
  Data data = FromFloats(Gaussian(64, 15), DType::kF32, {8, 8});
  EncodeOptions o;
  o.lossy = true;
  o.lossy_options.tile_r = 65;
  EXPECT_EQ(EncodeTensor(data.view(), o).status().code(), Code::kInvalidArgument);
  o.lossy_options.tile_r = 8;
  o.lossy_options.dead_zone = 0.5;
  EXPECT_EQ(EncodeTensor(data.view(), o).status().code(), Code::kInvalidArgument);
  o.lossy_options.dead_zone = 0;
  o.lossy_options.max_error = 0;
  EXPECT_EQ(EncodeTensor(data.view(), o).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace hct
