// "dctq-huff" payload -> int8 symbols on the GPU (LaunchHuffDecode, include/hct/kernels.h;
// format: docs/hct-format.md §5). One thread decodes one sub-stream; a block of kThreads threads
// shares a 2048-entry decode table in shared memory, built from the 256 code lengths by the
// block itself (so the CPU only reads and checksums the stored bytes).
//
// Each block: (1) reads the header and checks it against the launch arguments, (2) builds the
// canonical code table (warp 0 ranks the symbols, all threads fill the table), (3) finds its
// sub-streams' start bits by summing the u16 sizes before them and a block scan, (4) decodes
// with a 64-bit bit buffer refilled from 32-bit words, writing 16 symbols at a time.
// Every global read is bounded by payload_bytes and every write by the symbol count.
#include <cstdint>

#include "kernels/detail/gpu_common.cuh"

namespace hct::detail {
namespace {

constexpr int kThreads = 64;
constexpr int kL = 11;  // max code length (convert/detail/huff.h kHuffMaxLen)
constexpr int kTable = 1 << kL;
constexpr uint32_t kHeader = 136;
constexpr uint16_t kNoCode = 0xFFFF;

__device__ __forceinline__ uint32_t LdWord(const uint32_t* w, uint64_t i, uint64_t nwords) {
  return i < nwords ? __ldg(w + i) : 0u;
}

__global__ void __launch_bounds__(kThreads)
    HuffDecodeKernel(const uint8_t* __restrict__ payload, uint64_t payload_bytes, uint32_t n,
                     uint32_t substream, uint8_t* __restrict__ out, uint32_t* error,
                     bool vec_out) {
  __shared__ uint16_t table[kTable];
  __shared__ uint8_t len[256];
  __shared__ uint8_t sorted[256];
  __shared__ uint32_t count[kL + 1], first[kL + 1], base[kL + 1];
  __shared__ uint32_t bad, used_syms, single_sym;
  __shared__ uint64_t warp_sums[kThreads / 32][2];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const uint32_t nstreams = (n + substream - 1) / substream;

  // (1) Header.
  if (tid == 0) {
    bad = 0;
    if (payload_bytes < kHeader) {
      bad = kHuffErrorHeader;
    } else {
      const uint32_t* h = reinterpret_cast<const uint32_t*>(payload);
      if (h[0] != n || h[1] != substream) bad = kHuffErrorHeader;
    }
  }
  __syncthreads();
  if (bad) {
    if (tid == 0 && error) atomicOr(error, bad);
    return;
  }
  for (int s = tid; s < 256; s += kThreads) {
    const uint8_t b = payload[8 + s / 2];
    len[s] = (s & 1) ? b >> 4 : b & 15;
  }
  __syncthreads();

  // (2) Canonical code: warp 0 ranks symbols by (length, value); lane owns symbols 8l..8l+7.
  if (warp == 0) {
    uint32_t rank_base = 0, code = 0, kraft = 0, prev = 0, any_bad = 0;
    uint32_t my_len[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      my_len[k] = len[lane * 8 + k];
      any_bad |= my_len[k] > kL;
    }
    any_bad = __any_sync(0xFFFFFFFFu, any_bad);
    for (int l = 1; l <= kL; ++l) {
      uint32_t c = 0;
#pragma unroll
      for (int k = 0; k < 8; ++k) c += my_len[k] == uint32_t(l);
      uint32_t incl = c;
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const uint32_t v = __shfl_up_sync(0xFFFFFFFFu, incl, d);
        if (lane >= d) incl += v;
      }
      const uint32_t total = __shfl_sync(0xFFFFFFFFu, incl, 31);
      uint32_t r = rank_base + incl - c;
#pragma unroll
      for (int k = 0; k < 8; ++k)
        if (my_len[k] == uint32_t(l)) sorted[r++] = uint8_t(lane * 8 + k);
      code = (code + prev) << 1;
      if (lane == 0) count[l] = total, first[l] = code, base[l] = rank_base;
      kraft += total << (kL - l);
      rank_base += total;
      prev = total;
    }
    if (lane == 0) {
      used_syms = rank_base;
      if (any_bad || rank_base == 0 || kraft > uint32_t(kTable)) bad = kHuffErrorHeader;
    }
  }
  __syncthreads();
  if (bad) {
    if (tid == 0 && error) atomicOr(error, bad);
    return;
  }
  if (tid == 0) single_sym = sorted[0];
  __syncthreads();
  const bool single = used_syms == 1;
  for (int i = tid; i < kTable; i += kThreads) {
    uint16_t e = kNoCode;
    if (single) {
      e = single_sym;  // zero-bit code
    } else {
      for (int l = 1; l <= kL; ++l) {
        const uint32_t lo = first[l] << (kL - l), hi = (first[l] + count[l]) << (kL - l);
        if (uint32_t(i) >= lo && uint32_t(i) < hi) {
          e = uint16_t(sorted[base[l] + ((i - lo) >> (kL - l))] | (l << 8));
          break;
        }
      }
    }
    table[i] = e;
  }

  // (3) Start bits: the sizes before this block's first stream, then a block scan.
  const uint64_t sizes_end = kHeader + 2ull * nstreams;
  const uint64_t bits_off = (sizes_end + 3) / 4 * 4;
  if (bits_off > payload_bytes) {
    if (tid == 0 && error) atomicOr(error, kHuffErrorHeader);
    return;  // uniform across the block (no barrier skipped by only some threads)
  }
  const uint16_t* sizes = reinterpret_cast<const uint16_t*>(payload + kHeader);
  const uint32_t s0 = blockIdx.x * kThreads;
  uint64_t before = 0, total = 0;
  for (uint32_t j = tid; j < nstreams; j += kThreads) {
    const uint32_t v = sizes[j];
    total += v;
    if (j < s0) before += v;
  }
  const uint32_t k = s0 + tid;
  const uint32_t my_size = k < nstreams ? sizes[k] : 0;
  uint64_t incl = my_size;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const uint64_t v = __shfl_up_sync(0xFFFFFFFFu, incl, d);
    if (lane >= d) incl += v;
  }
#pragma unroll
  for (int d = 16; d >= 1; d >>= 1) {
    before += __shfl_xor_sync(0xFFFFFFFFu, before, d);
    total += __shfl_xor_sync(0xFFFFFFFFu, total, d);
  }
  if (lane == 31) warp_sums[warp][0] = incl;
  if (lane == 0) warp_sums[warp][1] = before;
  __shared__ uint64_t totals[kThreads / 32];
  if (lane == 0) totals[warp] = total;
  __syncthreads();
  uint64_t start = incl - my_size;
  uint64_t block_before = 0, all = 0;
  for (int w = 0; w < kThreads / 32; ++w) {
    if (w < warp) start += warp_sums[w][0];
    block_before += warp_sums[w][1];
    all += totals[w];
  }
  start += block_before;
  const uint64_t nwords = (all + 31) / 32;
  if (bits_off + 4 * nwords != payload_bytes) {
    if (tid == 0 && error) atomicOr(error, kHuffErrorHeader);
    return;
  }
  if (k >= nstreams) return;

  // (4) Decode this thread's sub-stream.
  const uint32_t b = k * substream;
  const uint32_t cnt = min(substream, n - b);
  if (my_size > uint64_t(cnt) * kL || (single && my_size != 0)) {
    if (error) atomicOr(error, kHuffErrorHeader);
    return;
  }
  const uint32_t* words = reinterpret_cast<const uint32_t*>(payload + bits_off);
  const uint64_t end = start + my_size;
  uint64_t pos = start, buf = 0;
  int nbuf = 0;
  uint32_t err = 0;
  uint8_t* dst = out + b;
  uint32_t packed[4] = {0, 0, 0, 0};
  for (uint32_t i = 0; i < cnt; ++i) {
    if (nbuf <= 32 && pos < end) {
      const int skip = int(pos & 31);
      const uint32_t word = LdWord(words, pos >> 5, nwords);
      const int take = int(min(uint64_t(32 - skip), end - pos));
      const uint64_t bits = uint64_t(uint32_t(word << skip)) >> (32 - take);
      buf |= bits << (64 - nbuf - take);
      nbuf += take;
      pos += take;
      if (nbuf <= 32 && pos < end) {  // a word boundary was crossed: top up once more
        const uint32_t w2 = LdWord(words, pos >> 5, nwords);
        const int t2 = int(min(uint64_t(32), end - pos));
        buf |= (uint64_t(w2) >> (32 - t2)) << (64 - nbuf - t2);
        nbuf += t2;
        pos += t2;
      }
    }
    const uint16_t e = table[buf >> (64 - kL)];
    const int l = e >> 8;
    if (e == kNoCode || l > nbuf) {
      err = kHuffErrorCode;
      break;
    }
    buf <<= l;
    nbuf -= l;
    const uint32_t sym = e & 0xFF;
    const uint32_t slot = i & 15;
    const int word_i = slot >> 2, shift = (slot & 3) * 8;
#pragma unroll
    for (int q = 0; q < 4; ++q)
      if (q == word_i) packed[q] = (shift ? packed[q] : 0u) | (sym << shift);
    if (slot == 15) {
      if (vec_out) {
        *reinterpret_cast<uint4*>(dst + (i - 15)) =
            make_uint4(packed[0], packed[1], packed[2], packed[3]);
      } else {
#pragma unroll
        for (int q = 0; q < 16; ++q) dst[i - 15 + q] = uint8_t(packed[q >> 2] >> ((q & 3) * 8));
      }
    }
  }
  if (!err) {
    const uint32_t tail = cnt & 15;
    for (uint32_t q = 0; q < tail; ++q)
      dst[cnt - tail + q] = uint8_t(packed[q >> 2] >> ((q & 3) * 8));
    // Every bit of the stream consumed, no more.
    if (pos != end || nbuf != 0) err = kHuffErrorStream;
  }
  if (err && error) atomicOr(error, err);
}

}  // namespace
}  // namespace hct::detail

namespace hct {

Status LaunchHuffDecode(const HuffDecodeArgs& a, GpuStream stream) {
  HCT_RETURN_IF_ERROR(ValidateHuffDecode(a));
  if (a.symbols == 0) return Status::OK();
  const uint32_t n = uint32_t(a.symbols);
  const uint32_t nstreams = (n + a.substream - 1) / a.substream;
  const uint32_t blocks = (nstreams + detail::kThreads - 1) / detail::kThreads;
  const bool vec = reinterpret_cast<uintptr_t>(a.out) % 16 == 0;
  detail::HuffDecodeKernel<<<blocks, detail::kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      static_cast<const uint8_t*>(a.payload), a.payload_bytes, n, a.substream,
      static_cast<uint8_t*>(a.out), a.error, vec);
  HCT_CHECK(cuda, cudaGetLastError());
  return Status::OK();
}

}  // namespace hct
