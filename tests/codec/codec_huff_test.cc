// dctq-huff: the Huffman sub-stream payload (codec/detail/huff.h) and the codec around it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "symbol_test_util.h"
#include "codec/detail/huff.h"
#include "hct/codec.h"
#include "params_test_util.h"

namespace hct {
namespace {

using test::JsonOf;

using detail::HuffCodeLengths;
using detail::HuffDecode;
using detail::HuffEncode;
using detail::kHuffMaxLen;

using test::Peaked;

std::vector<int8_t> RoundTrip(const std::vector<int8_t>& s, uint32_t k) {
  std::vector<std::byte> p;
  EXPECT_TRUE(HuffEncode(s, k, &p).ok());
  std::vector<int8_t> out(s.size(), 0x55);
  Status st = HuffDecode(p, out);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

TEST(HuffTest, RoundTripOddSizes) {
  for (uint32_t k : {32u, 2048u, 4096u}) {
    for (size_t n : {size_t(1), size_t(31), size_t(32), size_t(33), size_t(2047), size_t(2048),
                     size_t(2049), size_t(100003)}) {
      const auto s = Peaked(n, uint32_t(n + k));
      EXPECT_EQ(RoundTrip(s, k), s) << "n=" << n << " k=" << k;
    }
  }
}

TEST(HuffTest, RoundTripInterleavedTails) {
  // n mod S != 0 (S = ceil(n / K) sub-streams): the first n mod S sub-streams hold one more.
  for (uint32_t k : {32u, 64u, 256u, 2048u}) {
    for (size_t n : {size_t(2), size_t(5), size_t(63), size_t(65), size_t(32 * 7 + 3),
                     size_t(4097), size_t(12345), size_t(3 * 2048 - 1)}) {
      const auto s = Peaked(n, uint32_t(3 * n + k), 3.0);
      EXPECT_EQ(RoundTrip(s, k), s) << "n=" << n << " k=" << k;
    }
  }
}

// Bits MSB-first into little-endian u32 words (docs/hct-format.md §5.4), written here
// independently of the encoder.
void PackBits(const std::vector<int>& bits, std::vector<std::byte>* out) {
  for (size_t w = 0; w * 32 < bits.size(); ++w) {
    uint32_t v = 0;
    for (size_t j = 0; j < 32; ++j)
      if (w * 32 + j < bits.size() && bits[w * 32 + j]) v |= 1u << (31 - j);
    for (int b = 0; b < 4; ++b) out->push_back(std::byte(v >> (8 * b)));
  }
}

TEST(HuffTest, SubstreamsAreInterleaved) {
  // Two symbols (0 and 1), both of length 1: canonical codes 0 -> "0", 1 -> "1". n = 70, K = 32:
  // S = 3 sub-streams; sub-stream k holds symbols k, k + 3, ...: 24, 23 and 23 symbols.
  std::vector<int8_t> s(70);
  std::mt19937 rng(21);
  for (auto& v : s) v = int8_t(rng() & 1);
  s[0] = 0, s[1] = 1;  // both symbols used
  std::vector<std::byte> want;
  const uint32_t n = 70, k = 32;
  for (uint32_t v : {n, k})
    for (int b = 0; b < 4; ++b) want.push_back(std::byte(v >> (8 * b)));
  want.push_back(std::byte{0x11});  // symbol 0: low nibble, symbol 1: high nibble
  want.resize(136, std::byte{0});
  for (uint16_t size : {24, 23, 23}) {
    want.push_back(std::byte(size & 0xFF));
    want.push_back(std::byte(size >> 8));
  }
  want.resize(144, std::byte{0});  // pad to a multiple of 4
  std::vector<int> bits;
  for (int sub = 0; sub < 3; ++sub)
    for (int i = sub; i < 70; i += 3) bits.push_back(s[size_t(i)]);
  PackBits(bits, &want);
  std::vector<std::byte> p;
  ASSERT_TRUE(HuffEncode(s, k, &p).ok());
  EXPECT_EQ(p, want);
  std::vector<int8_t> out(70, 0x55);
  ASSERT_TRUE(HuffDecode(want, out).ok());
  EXPECT_EQ(out, s);
  // The consecutive layout (sub-stream k = symbols [32k, 32k+32)) is not a valid payload:
  std::vector<std::byte> consecutive(want.begin(), want.begin() + 136);
  for (uint16_t size : {32, 32, 6}) {
    consecutive.push_back(std::byte(size & 0xFF));
    consecutive.push_back(std::byte(size >> 8));
  }
  consecutive.resize(144, std::byte{0});
  PackBits(std::vector<int>(s.begin(), s.end()), &consecutive);
  // sub-stream 0 decodes 24 one-bit codes and leaves 8 of its 32 bits unused.
  EXPECT_EQ(HuffDecode(consecutive, out).code(), Code::kCorruption);
}

TEST(HuffTest, OneSymbolAlphabetOddSizes) {
  for (uint32_t k : {32u, 2048u})
    for (size_t n : {size_t(1), size_t(33), size_t(100), size_t(4099)}) {
      std::vector<int8_t> s(n, int8_t(-7));
      EXPECT_EQ(RoundTrip(s, k), s) << "n=" << n << " k=" << k;
    }
}

TEST(HuffTest, FullAlphabetUniform) {
  std::vector<int8_t> s(70000);
  std::mt19937 rng(3);
  for (auto& v : s) v = int8_t(rng());
  EXPECT_EQ(RoundTrip(s, 1024), s);
}

TEST(HuffTest, OneSymbolAlphabetStoresNoBits) {
  for (int8_t sym : {int8_t(0), int8_t(-128), int8_t(127)}) {
    std::vector<int8_t> s(5000, sym);
    std::vector<std::byte> p;
    ASSERT_TRUE(HuffEncode(s, 2048, &p).ok());
    // Header, three u16 sizes (all 0), padding to 4: no bitstream at all.
    EXPECT_EQ(p.size(), (detail::kHuffHeaderBytes + 2 * 3 + 3) / 4 * 4);
    EXPECT_EQ(RoundTrip(s, 2048), s);
  }
}

TEST(HuffTest, DyadicLengthsAreExact) {
  std::vector<uint64_t> f(256, 0);
  f[0] = 8, f[1] = 4, f[2] = 2, f[3] = 1, f[200] = 1;
  const auto l = HuffCodeLengths(f, kHuffMaxLen);
  EXPECT_EQ(l[0], 1);
  EXPECT_EQ(l[1], 2);
  EXPECT_EQ(l[2], 3);
  EXPECT_EQ(l[3], 4);
  EXPECT_EQ(l[200], 4);
  EXPECT_EQ(l[4], 0);
}

TEST(HuffTest, LengthLimitOnSkewedHistogram) {
  // Powers of two: unlimited Huffman would give lengths 1..39.
  std::vector<uint64_t> f(256, 0);
  for (int i = 0; i < 40; ++i) f[i] = uint64_t(1) << i;
  const auto l = HuffCodeLengths(f, kHuffMaxLen);
  double kraft = 0;
  for (int i = 0; i < 256; ++i) {
    if (i < 40) {
      EXPECT_GE(l[i], 1);
      EXPECT_LE(l[i], kHuffMaxLen) << i;
      kraft += std::ldexp(1.0, -l[i]);
    } else {
      EXPECT_EQ(l[i], 0);
    }
  }
  EXPECT_LE(kraft, 1.0);
  EXPECT_EQ(l[39], 1);  // the most frequent symbol keeps the shortest code
  // Data with that skew round-trips (codes of the limited length are used).
  std::vector<int8_t> s;
  for (int i = 0; i < 40; ++i) s.insert(s.end(), size_t(1) << std::min(i, 16), int8_t(i));
  std::shuffle(s.begin(), s.end(), std::mt19937(5));
  EXPECT_EQ(RoundTrip(s, 4096), s);
}

TEST(HuffTest, CostNearEntropy) {
  const auto s = Peaked(1 << 20, 9);
  std::vector<uint64_t> f(256, 0);
  for (int8_t v : s) ++f[uint8_t(v)];
  double h = 0;
  for (uint64_t c : f)
    if (c) h -= double(c) / s.size() * std::log2(double(c) / s.size());
  std::vector<std::byte> p;
  ASSERT_TRUE(HuffEncode(s, 2048, &p).ok());
  const double bits = p.size() * 8.0 / s.size();
  EXPECT_GE(bits, h);
  EXPECT_LT(bits, h + 0.1) << "entropy " << h;
}

// The rate search prices a step by HuffPayloadBytes instead of coding the chunk: it must be the
// size HuffEncode writes, for every alphabet shape (one symbol, skewed, full, odd sizes).
TEST(HuffTest, PayloadBytesIsTheEncodedSize) {
  std::mt19937 rng(7);
  for (uint32_t k : {32u, 2048u, 4096u}) {
    for (size_t n : {size_t(1), size_t(33), size_t(4095), size_t(100003), size_t(1) << 20}) {
      for (double scale : {0.01, 1.5, 40.0}) {
        const auto s = Peaked(n, uint32_t(n * 3 + k), scale);
        std::vector<std::byte> p;
        ASSERT_TRUE(HuffEncode(s, k, &p).ok());
        uint64_t freq[256];
        detail::HuffHistogram(s, freq);
        uint64_t direct[256] = {};
        for (int8_t v : s) ++direct[uint8_t(v)];
        EXPECT_TRUE(std::equal(freq, freq + 256, direct));
        EXPECT_EQ(detail::HuffPayloadBytes(freq, n, k), p.size())
            << "n=" << n << " k=" << k << " scale=" << scale;
      }
    }
  }
  std::vector<int8_t> uniform(70000);
  for (auto& v : uniform) v = int8_t(rng());
  std::vector<std::byte> p;
  ASSERT_TRUE(HuffEncode(uniform, 2048, &p).ok());
  uint64_t freq[256];
  detail::HuffHistogram(uniform, freq);
  EXPECT_EQ(detail::HuffPayloadBytes(freq, uniform.size(), 2048), p.size());
}

TEST(HuffTest, RejectsBadArguments) {
  std::vector<std::byte> p;
  std::vector<int8_t> s(100, 1);
  EXPECT_EQ(HuffEncode(s, 48, &p).code(), Code::kInvalidArgument);
  EXPECT_EQ(HuffEncode(s, 8192, &p).code(), Code::kInvalidArgument);
  EXPECT_EQ(HuffEncode({}, 2048, &p).code(), Code::kInvalidArgument);
}

TEST(HuffTest, CorruptPayloadsAreCorruption) {
  const auto s = Peaked(10000, 11);
  std::vector<std::byte> p;
  ASSERT_TRUE(HuffEncode(s, 1024, &p).ok());
  std::vector<int8_t> out(s.size());
  // Truncated, extended.
  for (size_t cut : {size_t(0), size_t(10), size_t(136), p.size() - 1}) {
    std::vector<std::byte> q(p.begin(), p.begin() + cut);
    EXPECT_EQ(HuffDecode(q, out).code(), Code::kCorruption) << cut;
  }
  auto q = p;
  q.push_back(std::byte{0});
  EXPECT_EQ(HuffDecode(q, out).code(), Code::kCorruption);
  // Wrong count.
  std::vector<int8_t> small(s.size() - 1);
  EXPECT_EQ(HuffDecode(p, small).code(), Code::kCorruption);
  // Code length 15 (over the limit), and all lengths zero.
  q = p;
  q[8] = std::byte{0xFF};
  EXPECT_EQ(HuffDecode(q, out).code(), Code::kCorruption);
  q = p;
  std::fill(q.begin() + 8, q.begin() + 136, std::byte{0});
  EXPECT_EQ(HuffDecode(q, out).code(), Code::kCorruption);
  // Over-subscribed code: every symbol length 1.
  q = p;
  std::fill(q.begin() + 8, q.begin() + 136, std::byte{0x11});
  EXPECT_EQ(HuffDecode(q, out).code(), Code::kCorruption);
  // Moving bits between sub-streams keeps the total but breaks both.
  q = p;
  uint16_t a, b;
  std::memcpy(&a, q.data() + 136, 2);
  std::memcpy(&b, q.data() + 138, 2);
  a += 3, b -= 3;
  std::memcpy(q.data() + 136, &a, 2);
  std::memcpy(q.data() + 138, &b, 2);
  EXPECT_EQ(HuffDecode(q, out).code(), Code::kCorruption);
  // Sub-stream size (K=1024 -> 64 bits more than allowed) over the limit.
  q = p;
  a = uint16_t(1024 * kHuffMaxLen + 1);
  std::memcpy(q.data() + 136, &a, 2);
  EXPECT_EQ(HuffDecode(q, out).code(), Code::kCorruption);
}

// Random damage through ChunkDecoder: never a crash, always Corruption (the symbol checksum
// catches the flips that still parse).
TEST(HuffTest, RandomDamageIsCorruption) {
  std::vector<float> x(64 * 256);
  std::mt19937 rng(2);
  std::normal_distribution<float> g(0, 0.02f);
  for (float& v : x) v = g(rng);
  std::vector<std::byte> bytes(x.size() * 4);
  std::memcpy(bytes.data(), x.data(), bytes.size());
  EncodeOptions o;
  o.lossy = true;
  o.lossy_options.entropy = Entropy::kHuffman;
  o.lossy_options.huff_substream = 256;
  auto enc = EncodeTensor({bytes, DType::kF32, {64, 256}}, o);
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  ASSERT_EQ(enc->codec, kCodecDctqHuff);
  auto dec = ChunkDecoder::Create(enc->codec, enc->params, DType::kF32);
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  const EncodedChunk& c = enc->chunks[0];
  std::vector<std::byte> sym(c.decoded_size);
  ASSERT_TRUE(dec->DecodePayload(c.bytes, ChunkMeta(c), sym).ok());
  for (int t = 0; t < 300; ++t) {
    auto q = c.bytes;
    const size_t at = rng() % q.size();
    q[at] ^= std::byte(1 + rng() % 255);
    Status st = dec->DecodePayload(q, ChunkMeta(c), sym);
    EXPECT_EQ(st.code(), Code::kCorruption) << "byte " << at;
  }
}

// The same quantization as dctq-zstd: identical symbols, identical values; a smaller payload.
TEST(HuffCodecTest, SameSymbolsAsZstd) {
  const uint64_t rows = 200, cols = 300;  // edge tiles, several chunks
  std::vector<float> x(rows * cols);
  std::mt19937 rng(4);
  std::normal_distribution<float> g(0, 0.02f);
  for (uint64_t i = 0; i < rows; ++i)
    for (uint64_t j = 0; j < cols; ++j) x[i * cols + j] = g(rng) + 0.05f * std::sin(0.1f * j);
  std::vector<std::byte> bytes(x.size() * 4);
  std::memcpy(bytes.data(), x.data(), bytes.size());
  EncodeOptions o;
  o.lossy = true;
  o.lossy_options.chunk_symbols = 16 * cols * 3;
  o.lossy_options.mode = RateMode::kStep;  // same step for both: same symbols
  o.lossy_options.step = 0.01;
  o.lossy_options.entropy = Entropy::kZstd;
  auto z = EncodeTensor({bytes, DType::kF32, {rows, cols}}, o);
  o.lossy_options.entropy = Entropy::kHuffman;
  auto h = EncodeTensor({bytes, DType::kF32, {rows, cols}}, o);
  ASSERT_TRUE(z.ok() && h.ok());
  EXPECT_EQ(z->codec, kCodecDctqZstd);
  EXPECT_EQ(h->codec, kCodecDctqHuff);
  EXPECT_EQ(JsonOf(h->params)["entropy"], "huff");
  EXPECT_EQ(JsonOf(h->params)["substream"], 2048);
  ASSERT_EQ(z->chunks.size(), h->chunks.size());
  ASSERT_GT(h->chunks.size(), 1u);
  auto dz = ChunkDecoder::Create(z->codec, z->params, DType::kF32);
  auto dh = ChunkDecoder::Create(h->codec, h->params, DType::kF32);
  ASSERT_TRUE(dz.ok() && dh.ok());
  for (size_t i = 0; i < z->chunks.size(); ++i) {
    const EncodedChunk &cz = z->chunks[i], &ch = h->chunks[i];
    EXPECT_EQ(cz.decoded_xxh3, ch.decoded_xxh3);
    std::vector<std::byte> vz(cz.elem_count * 4), vh(ch.elem_count * 4);
    ASSERT_TRUE(dz->Decode(cz.bytes, ChunkMeta(cz), vz).ok());
    Status st = dh->Decode(ch.bytes, ChunkMeta(ch), vh);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(vz, vh);
  }
  EXPECT_EQ(z->metrics.rel_rms_error, h->metrics.rel_rms_error);
}

// int16 symbols (|q| far above 127) go to dctq-huffx, whose payload decodes to exactly the
// symbols dctq-zstd stores for the same step, in fewer bytes than zstd's int16 frames.
TEST(HuffCodecTest, Int16SymbolsUseHuffx) {
  std::vector<float> x(256 * 256);
  std::mt19937 rng(6);
  std::normal_distribution<float> g(0, 1);
  for (float& v : x) v = g(rng);
  x[77] = 300;  // an outlier needing the widest classes at this step
  std::vector<std::byte> bytes(x.size() * 4);
  std::memcpy(bytes.data(), x.data(), bytes.size());
  EncodeOptions o;
  o.lossy = true;
  o.lossy_options.mode = RateMode::kStep;
  o.lossy_options.step = 0.01;  // |q| up to 30000, sigma 100 steps
  o.lossy_options.transform = Transform::kNone;
  o.lossy_options.chunk_symbols = 256 * 100;
  o.lossy_options.entropy = Entropy::kHuffman;
  auto h = EncodeTensor({bytes, DType::kF32, {256, 256}}, o);
  o.lossy_options.entropy = Entropy::kZstd;
  auto z = EncodeTensor({bytes, DType::kF32, {256, 256}}, o);
  ASSERT_TRUE(h.ok() && z.ok());
  EXPECT_EQ(h->codec, kCodecDctqHuffx);
  EXPECT_EQ(JsonOf(h->params)["symbol_bits"], 16);
  EXPECT_EQ(z->codec, kCodecDctqZstd);
  ASSERT_EQ(h->chunks.size(), z->chunks.size());
  auto dh = ChunkDecoder::Create(h->codec, h->params, DType::kF32);
  auto dz = ChunkDecoder::Create(z->codec, z->params, DType::kF32);
  ASSERT_TRUE(dh.ok() && dz.ok());
  for (size_t i = 0; i < h->chunks.size(); ++i) {
    const EncodedChunk &ch = h->chunks[i], &cz = z->chunks[i];
    EXPECT_EQ(ch.decoded_xxh3, cz.decoded_xxh3);
    std::vector<std::byte> sh(ch.decoded_size), sz(cz.decoded_size);
    ASSERT_TRUE(dh->DecodePayload(ch.bytes, ChunkMeta(ch), sh).ok());
    ASSERT_TRUE(dz->DecodePayload(cz.bytes, ChunkMeta(cz), sz).ok());
    EXPECT_EQ(sh, sz);
  }
  EXPECT_EQ(h->metrics.rel_rms_error, z->metrics.rel_rms_error);
  // Gaussian with sigma = 100 steps: order-0 entropy log2(100 * 4.13) = 8.69 bits.
  EXPECT_LT(h->metrics.bits_per_weight, 8.85);
  EXPECT_LT(h->metrics.stored_bytes, z->metrics.stored_bytes);
}

// Random int16 values of every magnitude, the class boundaries, one-symbol chunks: exact round
// trips and HuffxPayloadBytes == the encoded size.
TEST(HuffxTest, RoundTripAndExactSize) {
  std::mt19937 rng(11);
  std::vector<std::vector<int16_t>> cases;
  for (double sigma : {0.3, 30.0, 150.0, 3000.0}) {
    std::normal_distribution<double> g(0, sigma);
    std::vector<int16_t> s(50001);
    for (auto& v : s) v = int16_t(std::clamp(std::lround(g(rng)), -32767L, 32767L));
    cases.push_back(s);
  }
  std::vector<int16_t> edges;
  for (int c = 0; c <= detail::kHuffxClasses; ++c)
    for (int d : {-1, 0, 1}) {
      const long m = std::min<long>(32767, long(detail::HuffxClassBase(c)) + d);
      edges.push_back(int16_t(m)), edges.push_back(int16_t(-m));
    }
  edges.push_back(32767), edges.push_back(-32767), edges.push_back(0);
  edges.push_back(95), edges.push_back(-95), edges.push_back(96), edges.push_back(-96);
  cases.push_back(edges);
  cases.push_back(std::vector<int16_t>(3000, 20000));  // one symbol, still extra bits
  cases.push_back(std::vector<int16_t>(77, -3));       // one direct symbol: no bits
  for (uint32_t k : {32u, 2048u}) {
    for (const auto& s : cases) {
      std::vector<std::byte> p;
      ASSERT_TRUE(detail::HuffxEncode(s, k, &p).ok());
      uint64_t freq[256];
      detail::HuffxHistogram(s, freq);
      EXPECT_EQ(detail::HuffxPayloadBytes(freq, s.size(), k), p.size());
      std::vector<int16_t> out(s.size(), 0x5555);
      Status st = detail::HuffxDecode(p, out);
      ASSERT_TRUE(st.ok()) << st.ToString();
      EXPECT_EQ(out, s) << "k=" << k << " n=" << s.size();
    }
  }
  std::vector<std::byte> p;
  const std::vector<int16_t> bad = {1, -32768};
  EXPECT_EQ(detail::HuffxEncode(bad, 2048, &p).code(), Code::kInvalidArgument);
  EXPECT_EQ(detail::HuffxEncode(cases[0], 4096, &p).code(), Code::kInvalidArgument);
}

// Damaged payloads are Corruption, never a crash: every single-byte change is either caught or
// decodes to other symbols (then the chunk's decoded_xxh3 catches it).
TEST(HuffxTest, DamageIsCorruption) {
  std::mt19937 rng(12);
  std::normal_distribution<double> g(0, 200);
  std::vector<int16_t> s(9000);
  for (auto& v : s) v = int16_t(std::clamp(std::lround(g(rng)), -32767L, 32767L));
  std::vector<std::byte> p;
  ASSERT_TRUE(detail::HuffxEncode(s, 1024, &p).ok());
  std::vector<int16_t> out(s.size());
  // Truncated, extended, wrong count.
  EXPECT_EQ(detail::HuffxDecode(std::span(p).first(p.size() - 4), out).code(), Code::kCorruption);
  std::vector<std::byte> longer = p;
  longer.resize(p.size() + 4);
  EXPECT_EQ(detail::HuffxDecode(longer, out).code(), Code::kCorruption);
  std::vector<int16_t> small(s.size() - 1);
  EXPECT_EQ(detail::HuffxDecode(p, small).code(), Code::kCorruption);
  // A length for an unused byte value (235..255).
  std::vector<std::byte> q = p;
  q[8 + 240 / 2] = std::byte(uint8_t(q[8 + 240 / 2]) | 0x05);
  EXPECT_EQ(detail::HuffxDecode(q, out).code(), Code::kCorruption);
  int caught = 0;
  for (int t = 0; t < 300; ++t) {
    std::vector<std::byte> d = p;
    const size_t at = rng() % d.size();
    d[at] ^= std::byte(uint8_t(1 + rng() % 255));
    Status st = detail::HuffxDecode(d, out);
    if (!st.ok()) {
      EXPECT_EQ(st.code(), Code::kCorruption);
      ++caught;
    } else {
      EXPECT_NE(out, s) << "a damaged byte at " << at << " decoded to the original";
    }
  }
  EXPECT_GT(caught, 30);  // header, sizes and code damage; raw extra bits are left to the xxh3
}

TEST(HuffCodecTest, ParamsChecked) {
  nlohmann::json p = {{"transform", "dct"}, {"tile_r", 16},   {"tile_c", 16},
                      {"step", 0.1},        {"symbol_bits", 8}, {"rows", 32},
                      {"cols", 32},         {"rows_per_chunk", 16}};
  EXPECT_EQ(ChunkDecoder::Create(kCodecDctqHuff, p.dump(), DType::kBF16).status().code(),
            Code::kCorruption);  // no substream
  p["substream"] = 100;
  EXPECT_EQ(ChunkDecoder::Create(kCodecDctqHuff, p.dump(), DType::kBF16).status().code(),
            Code::kCorruption);
  p["substream"] = 2048;
  EXPECT_TRUE(ChunkDecoder::Create(kCodecDctqHuff, p.dump(), DType::kBF16).ok());
  EXPECT_EQ(ChunkDecoder::Create(kCodecDctqHuffx, p.dump(), DType::kBF16).status().code(),
            Code::kCorruption);  // huffx needs symbol_bits 16
  p["symbol_bits"] = 16;
  EXPECT_TRUE(ChunkDecoder::Create(kCodecDctqHuffx, p.dump(), DType::kBF16).ok());
  p["substream"] = 4096;  // over huffx's 2048
  EXPECT_EQ(ChunkDecoder::Create(kCodecDctqHuffx, p.dump(), DType::kBF16).status().code(),
            Code::kCorruption);
  p["substream"] = 2048;
  EXPECT_EQ(ChunkDecoder::Create(kCodecDctqHuff, p.dump(), DType::kBF16).status().code(),
            Code::kCorruption);
}

}  // namespace
}  // namespace hct
