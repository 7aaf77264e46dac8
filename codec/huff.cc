// "dctq-huff" payloads: canonical length-limited Huffman code, independent sub-streams
// (codec/detail/huff.h, docs/hct-format.md §5).
#include "codec/detail/huff.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <queue>
#include <string>

#include "codec/detail/bytes.h"

namespace hct::detail {
namespace {

// Canonical codes: by (length, symbol value), consecutive integers per length (DEFLATE's rule).
void CanonicalCodes(const uint8_t* len, uint32_t* code) {
  uint32_t count[kHuffMaxLen + 2] = {}, next[kHuffMaxLen + 2] = {};
  for (int s = 0; s < 256; ++s) ++count[len[s]];
  count[0] = 0;
  uint32_t c = 0;
  for (int l = 1; l <= kHuffMaxLen + 1; ++l) {
    c = (c + count[l - 1]) << 1;
    next[l] = c;
  }
  for (int s = 0; s < 256; ++s)
    if (len[s]) code[s] = next[len[s]]++;
}

int UsedSymbols(const uint8_t* len) {
  int used = 0;
  for (int s = 0; s < 256; ++s) used += len[s] != 0;
  return used;
}

}  // namespace

std::vector<uint8_t> HuffCodeLengths(std::span<const uint64_t> freq, int max_len) {
  const size_t n = freq.size();
  std::vector<uint8_t> len(n, 0);
  std::vector<size_t> used;
  for (size_t s = 0; s < n; ++s)
    if (freq[s]) used.push_back(s);
  if (used.empty()) return len;
  if (used.size() == 1) {
    len[used[0]] = 1;
    return len;
  }
  // Plain Huffman tree (ties broken by node index, so deterministic).
  struct Node {
    uint64_t w;
    int parent;
  };
  std::vector<Node> nodes;
  using Item = std::pair<uint64_t, int>;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> pq;
  for (size_t s : used) {
    pq.push({freq[s], int(nodes.size())});
    nodes.push_back({freq[s], -1});
  }
  while (pq.size() > 1) {
    auto [wa, a] = pq.top();
    pq.pop();
    auto [wb, b] = pq.top();
    pq.pop();
    const int p = int(nodes.size());
    nodes.push_back({wa + wb, -1});
    nodes[a].parent = nodes[b].parent = p;
    pq.push({wa + wb, p});
  }
  std::vector<int> depth(nodes.size(), 0);
  for (int i = int(nodes.size()) - 2; i >= 0; --i) depth[i] = depth[nodes[i].parent] + 1;
  for (size_t i = 0; i < used.size(); ++i)
    len[used[i]] = uint8_t(std::min(depth[i], max_len));
  // Length limit: clamping over-subscribes the Kraft sum; lengthen the rarest symbols that can
  // still grow until it fits, then shorten the most frequent ones while the sum allows.
  const uint64_t cap = uint64_t(1) << max_len;
  uint64_t kraft = 0;
  for (size_t s : used) kraft += cap >> len[s];
  std::vector<size_t> by_freq = used;  // ascending frequency, then symbol
  std::stable_sort(by_freq.begin(), by_freq.end(),
                   [&](size_t a, size_t b) { return freq[a] < freq[b]; });
  while (kraft > cap) {
    // Lengthening a symbol of length l frees cap >> (l + 1); prefer the longest codes (smallest
    // change) among the rarest symbols.
    size_t best = n;
    for (size_t s : by_freq)
      if (len[s] < max_len && (best == n || len[s] > len[best])) best = s;
    kraft -= cap >> (len[best] + 1);
    ++len[best];
  }
  for (auto it = by_freq.rbegin(); it != by_freq.rend(); ++it) {
    while (len[*it] > 1 && kraft + (cap >> len[*it]) <= cap) {
      kraft += cap >> len[*it];
      --len[*it];
    }
  }
  return len;
}

void HuffHistogram(std::span<const int8_t> symbols, uint64_t freq[256]) {
  // Four sub-histograms: consecutive equal symbols (most are 0 or +-1) would otherwise wait on
  // the same counter.
  uint32_t h[4][256] = {};
  const size_t n = symbols.size();
  const uint8_t* s = reinterpret_cast<const uint8_t*>(symbols.data());
  std::fill(freq, freq + 256, 0);
  for (size_t base = 0; base < n; base += size_t(1) << 30) {  // u32 counters never overflow
    const size_t end = std::min(n, base + (size_t(1) << 30));
    size_t i = base;
    for (; i + 4 <= end; i += 4) ++h[0][s[i]], ++h[1][s[i + 1]], ++h[2][s[i + 2]], ++h[3][s[i + 3]];
    for (; i < end; ++i) ++h[0][s[i]];
    for (int v = 0; v < 256; ++v) {
      freq[v] += uint64_t(h[0][v]) + h[1][v] + h[2][v] + h[3][v];
      h[0][v] = h[1][v] = h[2][v] = h[3][v] = 0;
    }
  }
}

uint64_t HuffPayloadBytes(const uint64_t freq[256], uint64_t n, uint32_t substream) {
  const std::vector<uint8_t> len = HuffCodeLengths({freq, 256}, kHuffMaxLen);
  uint64_t bits = 0;
  if (UsedSymbols(len.data()) > 1)
    for (int s = 0; s < 256; ++s) bits += freq[s] * len[s];
  const uint64_t nstreams = (n + substream - 1) / substream;
  const uint64_t head = (kHuffHeaderBytes + 2 * nstreams + 3) / 4 * 4;
  return head + (bits + 31) / 32 * 4;
}

Status HuffEncode(std::span<const int8_t> symbols, uint32_t substream,
                  std::vector<std::byte>* out) {
  uint64_t freq[256];
  HuffHistogram(symbols, freq);
  return HuffEncode(symbols, freq, substream, out);
}

Status HuffEncode(std::span<const int8_t> symbols, const uint64_t freq[256], uint32_t substream,
                  std::vector<std::byte>* out) {
  if (substream < 32 || substream > kHuffMaxSubstream || substream % 32)
    return Status::InvalidArgument("huffman sub-stream size must be a multiple of 32 in 32..4096");
  if (symbols.empty() || symbols.size() > UINT32_MAX)
    return Status::InvalidArgument("huffman chunk must hold 1..2^32-1 symbols");
  const std::vector<uint8_t> lv = HuffCodeLengths({freq, 256}, kHuffMaxLen);
  uint8_t len[256];
  std::copy(lv.begin(), lv.end(), len);
  uint32_t code[256] = {};
  CanonicalCodes(len, code);
  // One used symbol: zero-bit codes (every sub-stream is empty).
  const bool single = UsedSymbols(len) == 1;
  // Code and length in one table entry: code << 8 | length.
  uint32_t entry[256];
  for (int s = 0; s < 256; ++s) entry[s] = single ? 0 : code[s] << 8 | len[s];

  const size_t n = symbols.size();
  const uint32_t nstreams = uint32_t((n + substream - 1) / substream);
  const size_t base = out->size();
  Append32(out, uint32_t(n));
  Append32(out, substream);
  for (int s = 0; s < 256; s += 2) out->push_back(std::byte(len[s] | (len[s + 1] << 4)));
  const size_t sizes_at = out->size();
  out->resize(sizes_at + 2 * size_t(nstreams));
  while ((out->size() - base) % 4) out->push_back(std::byte{0});
  // The words: their count follows from the histogram, so they are written in place.
  uint64_t total = 0;
  for (int s = 0; s < 256; ++s) total += freq[s] * (entry[s] & 0xFF);
  const size_t words_at = out->size();
  out->resize(words_at + (total + 31) / 32 * 4);
  std::byte* wp = out->data() + words_at;
  std::byte* sizes = out->data() + sizes_at;
  const uint8_t* sym = reinterpret_cast<const uint8_t*>(symbols.data());
  // Bits go MSB-first into little-endian u32 words.
  uint64_t acc = 0;  // pending bits, right-aligned (at most 31 + kHuffMaxLen)
  int nacc = 0;
  size_t nw = 0;
  // Sub-stream k holds symbols k, k + S, k + 2S, ... (S = nstreams; interleaved so that GPU
  // threads decoding adjacent sub-streams write adjacent bytes).
  for (uint32_t k = 0; k < nstreams; ++k) {
    uint32_t bits = 0;
    for (size_t i = k; i < n; i += nstreams) {
      const uint32_t e = entry[sym[i]];
      const int l = int(e & 0xFF);
      acc = (acc << l) | (e >> 8);
      nacc += l;
      bits += l;
      if (nacc >= 32) {
        nacc -= 32;
        const uint32_t w = uint32_t(acc >> nacc);
        std::memcpy(wp + 4 * nw++, &w, 4);
      }
    }
    const uint16_t b16 = uint16_t(bits);
    std::memcpy(sizes + 2 * k, &b16, 2);
  }
  if (nacc > 0) {
    const uint32_t w = uint32_t(acc << (32 - nacc));
    std::memcpy(wp + 4 * nw++, &w, 4);
  }
  if (nw * 4 != out->size() - words_at)
    return Status::Internal("huffman encoder: histogram does not match the symbols");
  return Status::OK();
}

namespace {
// wide: "dctq-huffx" (K <= kHuffxMaxSubstream, codes followed by up to 13 extra bits, unused byte
// values of length 0, and a single used symbol may still carry extra bits).
Result<HuffHeader> ParseHeader(std::span<const std::byte> p, bool wide) {
  HuffHeader h;
  if (p.size() < kHuffHeaderBytes)
    return Status::Corruption("huffman payload shorter than its header");
  h.n = Load32(p.data());
  h.substream = Load32(p.data() + 4);
  const uint32_t max_k = wide ? kHuffxMaxSubstream : kHuffMaxSubstream;
  const uint64_t max_bits = wide ? kHuffMaxLen + kHuffxMaxExtra : kHuffMaxLen;
  if (h.n == 0 || h.substream < 32 || h.substream > max_k || h.substream % 32)
    return Status::Corruption("huffman header: bad symbol count or sub-stream size");
  h.nstreams = uint32_t((uint64_t(h.n) + h.substream - 1) / h.substream);
  uint64_t kraft = 0;
  for (int s = 0; s < 256; ++s) {
    const uint8_t b = uint8_t(p[8 + s / 2]);
    h.lengths[s] = (s & 1) ? b >> 4 : b & 15;
    if (h.lengths[s] > kHuffMaxLen)
      return Status::Corruption("huffman code length " + std::to_string(h.lengths[s]) +
                                " exceeds " + std::to_string(kHuffMaxLen));
    if (wide && h.lengths[s] && s >= kHuffxNegClass + kHuffxClasses)
      return Status::Corruption("huffx code length for unused symbol " + std::to_string(s));
    if (h.lengths[s]) kraft += uint64_t(1) << (kHuffMaxLen - h.lengths[s]);
  }
  if (kraft == 0 || kraft > (uint64_t(1) << kHuffMaxLen))
    return Status::Corruption("huffman code lengths are not a prefix code");
  h.sizes_offset = kHuffHeaderBytes;
  h.bits_offset = (h.sizes_offset + 2 * uint64_t(h.nstreams) + 3) / 4 * 4;
  if (h.bits_offset > p.size()) return Status::Corruption("huffman payload truncated (sizes)");
  const bool single = UsedSymbols(h.lengths) == 1;
  for (uint32_t k = 0; k < h.nstreams; ++k) {
    const uint32_t cnt = HuffSubstreamCount(h.n, h.nstreams, k);
    const uint16_t bits = Load16(p.data() + h.sizes_offset + 2 * k);
    if (bits > uint64_t(cnt) * max_bits || (single && !wide && bits != 0))
      return Status::Corruption("huffman sub-stream " + std::to_string(k) + " size out of range");
    h.total_bits += bits;
  }
  if (p.size() != h.bits_offset + (h.total_bits + 31) / 32 * 4)
    return Status::Corruption("huffman payload size " + std::to_string(p.size()) +
                              " does not match its sub-stream sizes");
  return h;
}
}  // namespace

Result<HuffHeader> HuffParseHeader(std::span<const std::byte> p) { return ParseHeader(p, false); }
Result<HuffHeader> HuffxParseHeader(std::span<const std::byte> p) { return ParseHeader(p, true); }

Status HuffDecode(std::span<const std::byte> p, std::span<int8_t> out) {
  HCT_ASSIGN_OR_RETURN(HuffHeader h, HuffParseHeader(p));
  if (h.n != out.size())
    return Status::Corruption("huffman payload holds " + std::to_string(h.n) + " symbols, expected " +
                              std::to_string(out.size()));
  // Table: top kHuffMaxLen bits -> symbol | length << 8; 0xFFFF = no such code.
  constexpr int L = kHuffMaxLen;
  std::vector<uint16_t> table(size_t(1) << L, 0xFFFF);
  uint32_t code[256] = {};
  CanonicalCodes(h.lengths, code);
  const bool single = UsedSymbols(h.lengths) == 1;
  for (int s = 0; s < 256; ++s) {
    if (!h.lengths[s]) continue;
    if (single) {
      std::fill(table.begin(), table.end(), uint16_t(s));
      break;
    }
    const int l = h.lengths[s];
    const uint32_t first = code[s] << (L - l), count = 1u << (L - l);
    for (uint32_t i = 0; i < count; ++i) table[first + i] = uint16_t(s | (l << 8));
  }
  const std::byte* words = p.data() + h.bits_offset;
  const uint64_t nwords = (h.total_bits + 31) / 32;
  auto word = [&](uint64_t w) -> uint64_t { return w < nwords ? Load32(words + 4 * w) : 0; };
  // The 64 bits from bit `pos` on (zeros past the last word), MSB first.
  auto window = [&](uint64_t pos) {
    const uint64_t w = pos / 32;
    const int sh = int(pos % 32);
    const uint64_t hi = word(w) << 32 | word(w + 1);
    return sh ? hi << sh | word(w + 2) >> (32 - sh) : hi;
  };
  uint64_t start = 0;
  for (uint32_t k = 0; k < h.nstreams; ++k) {
    const uint16_t size = Load16(p.data() + h.sizes_offset + 2 * k);
    const uint64_t end = start + size;
    const uint32_t cnt = HuffSubstreamCount(h.n, h.nstreams, k);
    // Symbol t of sub-stream k is symbol k + t * S of the chunk. Five codes of at most 11 bits
    // per 64-bit window; a code running past the sub-stream's end is caught by the position
    // check after the window.
    uint64_t pos = start;
    for (uint32_t t = 0; t < cnt;) {
      const uint64_t win = window(pos);
      const uint32_t stop = std::min(cnt, t + 5);
      int used = 0;
      for (; t < stop; ++t) {
        const uint16_t e = table[(win << used) >> (64 - L)];
        if (e == 0xFFFF)
          return Status::Corruption("huffman sub-stream " + std::to_string(k) +
                                    ": invalid code at symbol " + std::to_string(t));
        out[k + size_t(t) * h.nstreams] = int8_t(uint8_t(e & 0xFF));
        used += e >> 8;
      }
      pos += used;
      if (pos > end)
        return Status::Corruption("huffman sub-stream " + std::to_string(k) +
                                  " runs past its size");
    }
    if (pos != end)
      return Status::Corruption("huffman sub-stream " + std::to_string(k) + " has " +
                                std::to_string(end - pos) + " unused bits");
    start = end;
  }
  return Status::OK();
}

}  // namespace hct::detail

namespace hct::detail {
namespace {

constexpr auto kXBase = [] {
  std::array<uint32_t, kHuffxClasses + 1> b{};
  for (int c = 0; c <= kHuffxClasses; ++c) b[c] = HuffxClassBase(c);
  return b;
}();

// Byte symbol of an int16 value, its extra bits and their count.
struct XSym {
  uint8_t b;
  uint8_t nextra;
  uint32_t extra;
};
inline XSym HuffxMap(int v) {
  const uint32_t m = uint32_t(v < 0 ? -v : v);
  if (m <= uint32_t(kHuffxDirect)) return {uint8_t(v + kHuffxDirect), 0, 0};
  int c = 0;
  while (c + 1 < kHuffxClasses && m >= kXBase[c + 1]) ++c;
  return {uint8_t((v < 0 ? kHuffxNegClass : kHuffxPosClass) + c), uint8_t(HuffxExtraBits(c)),
          m - kXBase[c]};
}
inline int HuffxSymExtra(int b) {
  if (b >= kHuffxPosClass && b < kHuffxNegClass) return HuffxExtraBits(b - kHuffxPosClass);
  if (b >= kHuffxNegClass && b < kHuffxNegClass + kHuffxClasses)
    return HuffxExtraBits(b - kHuffxNegClass);
  return 0;
}

}  // namespace

void HuffxHistogram(std::span<const int16_t> symbols, uint64_t freq[256]) {
  std::fill(freq, freq + 256, 0);
  for (int16_t v : symbols) ++freq[HuffxMap(v).b];
}

uint64_t HuffxPayloadBytes(const uint64_t freq[256], uint64_t n, uint32_t substream) {
  const std::vector<uint8_t> len = HuffCodeLengths({freq, 256}, kHuffMaxLen);
  const bool single = UsedSymbols(len.data()) == 1;
  uint64_t bits = 0;
  for (int s = 0; s < 256; ++s) bits += freq[s] * ((single ? 0 : len[s]) + HuffxSymExtra(s));
  const uint64_t nstreams = (n + substream - 1) / substream;
  const uint64_t head = (kHuffHeaderBytes + 2 * nstreams + 3) / 4 * 4;
  return head + (bits + 31) / 32 * 4;
}

Status HuffxEncode(std::span<const int16_t> symbols, uint32_t substream,
                   std::vector<std::byte>* out) {
  if (substream < 32 || substream > kHuffxMaxSubstream || substream % 32)
    return Status::InvalidArgument("huffx sub-stream size must be a multiple of 32 in 32..2048");
  if (symbols.empty() || symbols.size() > UINT32_MAX)
    return Status::InvalidArgument("huffman chunk must hold 1..2^32-1 symbols");
  for (int16_t v : symbols)
    if (v == INT16_MIN) return Status::InvalidArgument("huffx symbols must be in -32767..32767");
  uint64_t freq[256];
  HuffxHistogram(symbols, freq);
  const std::vector<uint8_t> lv = HuffCodeLengths({freq, 256}, kHuffMaxLen);
  uint8_t len[256];
  std::copy(lv.begin(), lv.end(), len);
  uint32_t code[256] = {};
  CanonicalCodes(len, code);
  const bool single = UsedSymbols(len) == 1;
  const size_t n = symbols.size();
  const uint32_t nstreams = uint32_t((n + substream - 1) / substream);
  const size_t base = out->size();
  Append32(out, uint32_t(n));
  Append32(out, substream);
  for (int s = 0; s < 256; s += 2) out->push_back(std::byte(len[s] | (len[s + 1] << 4)));
  const size_t sizes_at = out->size();
  out->resize(sizes_at + 2 * size_t(nstreams));
  while ((out->size() - base) % 4) out->push_back(std::byte{0});
  std::vector<uint32_t> words;
  uint64_t acc = 0;  // pending bits, right-aligned (at most 31 + 24)
  int nacc = 0;
  for (uint32_t k = 0; k < nstreams; ++k) {
    uint32_t bits = 0;
    for (size_t i = k; i < n; i += nstreams) {
      const XSym x = HuffxMap(symbols[i]);
      const int l = single ? 0 : len[x.b];
      acc = (((acc << l) | code[x.b]) << x.nextra) | x.extra;
      nacc += l + x.nextra;
      bits += l + x.nextra;
      if (nacc >= 32) {
        nacc -= 32;
        words.push_back(uint32_t(acc >> nacc));
      }
    }
    const uint16_t b16 = uint16_t(bits);
    std::memcpy(out->data() + sizes_at + 2 * k, &b16, 2);
  }
  if (nacc > 0) words.push_back(uint32_t(acc << (32 - nacc)));
  const size_t at = out->size();
  out->resize(at + 4 * words.size());
  std::memcpy(out->data() + at, words.data(), 4 * words.size());
  return Status::OK();
}

Status HuffxDecode(std::span<const std::byte> p, std::span<int16_t> out) {
  HCT_ASSIGN_OR_RETURN(HuffHeader h, HuffxParseHeader(p));
  if (h.n != out.size())
    return Status::Corruption("huffx payload holds " + std::to_string(h.n) + " symbols, expected " +
                              std::to_string(out.size()));
  constexpr int L = kHuffMaxLen;
  std::vector<uint16_t> table(size_t(1) << L, 0xFFFF);
  uint32_t code[256] = {};
  CanonicalCodes(h.lengths, code);
  const bool single = UsedSymbols(h.lengths) == 1;
  for (int s = 0; s < 256; ++s) {
    if (!h.lengths[s]) continue;
    if (single) {
      std::fill(table.begin(), table.end(), uint16_t(s));  // zero-bit code
      break;
    }
    const int l = h.lengths[s];
    const uint32_t first = code[s] << (L - l), count = 1u << (L - l);
    for (uint32_t i = 0; i < count; ++i) table[first + i] = uint16_t(s | (l << 8));
  }
  const std::byte* words = p.data() + h.bits_offset;
  const uint64_t nwords = (h.total_bits + 31) / 32;
  auto word = [&](uint64_t w) -> uint64_t { return w < nwords ? Load32(words + 4 * w) : 0; };
  auto window = [&](uint64_t pos) {
    const uint64_t w = pos / 32;
    const int sh = int(pos % 32);
    const uint64_t hi = word(w) << 32 | word(w + 1);
    return sh ? hi << sh | word(w + 2) >> (32 - sh) : hi;
  };
  uint64_t start = 0;
  for (uint32_t k = 0; k < h.nstreams; ++k) {
    const uint16_t size = Load16(p.data() + h.sizes_offset + 2 * k);
    const uint64_t end = start + size;
    const uint32_t cnt = HuffSubstreamCount(h.n, h.nstreams, k);
    uint64_t pos = start;
    for (uint32_t t = 0; t < cnt; ++t) {
      const uint64_t win = window(pos);
      const uint16_t e = table[win >> (64 - L)];
      if (e == 0xFFFF)
        return Status::Corruption("huffx sub-stream " + std::to_string(k) +
                                  ": invalid code at symbol " + std::to_string(t));
      const int b = e & 0xFF, l = e >> 8, ne = HuffxSymExtra(b);
      int v;
      if (b <= 2 * kHuffxDirect) {
        v = b - kHuffxDirect;
      } else {
        const uint32_t extra = uint32_t((win << l) >> (64 - ne));
        const int c = b < kHuffxNegClass ? b - kHuffxPosClass : b - kHuffxNegClass;
        const uint32_t m = kXBase[c] + extra;
        if (m > 32767)
          return Status::Corruption("huffx sub-stream " + std::to_string(k) +
                                    ": value out of range at symbol " + std::to_string(t));
        v = b < kHuffxNegClass ? int(m) : -int(m);
      }
      out[k + size_t(t) * h.nstreams] = int16_t(v);
      pos += l + ne;
      if (pos > end)
        return Status::Corruption("huffx sub-stream " + std::to_string(k) + " runs past its size");
    }
    if (pos != end)
      return Status::Corruption("huffx sub-stream " + std::to_string(k) + " has " +
                                std::to_string(end - pos) + " unused bits");
    start = end;
  }
  return Status::OK();
}

}  // namespace hct::detail
