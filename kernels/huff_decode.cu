// "dctq-huff" payload -> int8 symbols on the GPU (LaunchHuffDecode, include/hct/kernels.h;
// format: docs/hct-format.md §5.4). One thread decodes one sub-stream (symbols k, k+S, k+2S, ...:
// interleaved, so a warp's stores are coalesced); a block of kThreads threads
// shares a 2048-entry decode table in shared memory, built from the 256 code lengths by the
// block itself (so the CPU only reads and checksums the stored bytes).
//
// Each block: (1) reads the header and checks it against the launch arguments, (2) builds the
// canonical code table (warp 0 ranks the symbols, all threads fill the table), (3) finds its
// sub-streams' start bits by summing the u16 sizes before them and a block scan, (4) decodes
// with a 64-bit bit buffer refilled from 32-bit words loaded four ahead, one byte per step.
// Every global read is bounded by payload_bytes and every write by the symbol count.
// LaunchHuffDecodeBatch decodes many chunks in one launch (blockIdx.y = chunk): one chunk's
// 4-8 blocks cannot fill a GPU, and the per-thread decode is a latency-bound dependent chain.
#include <cstdint>

#include "hct/detail/huff_format.h"
#include "kernels/detail/gpu_common.cuh"

namespace hct::detail {
namespace {

constexpr int kThreads = 128;
constexpr int kL = kHuffMaxLen;  // max code length (hct/detail/huff_format.h)
constexpr int kTable = 1 << kL;
constexpr uint32_t kHeader = uint32_t(kHuffHeaderBytes);
constexpr uint16_t kNoCode = 0xFFFF;

__device__ __forceinline__ uint32_t LdWord(const uint32_t* w, uint64_t i, uint64_t nwords) {
  return i < nwords ? __ldg(w + i) : 0u;
}

// The whole per-block decode; `bx` is the block's index within its chunk. Every exit is uniform
// across the block (or follows the last barrier).
__device__ __forceinline__ void HuffDecodeBlock(const uint8_t* __restrict__ payload,
                                                uint64_t payload_bytes, uint32_t n,
                                                uint32_t substream, uint8_t* __restrict__ out,
                                                uint32_t* error, uint32_t bx) {
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
  const uint32_t s0 = bx * kThreads;
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

  // (4) Decode this thread's sub-stream: symbols k, k + S, k + 2S, ... (S = nstreams), so at
  // each step the lanes of a warp write adjacent bytes (one coalesced store). The first
  // n mod S sub-streams hold one symbol more.
  const uint32_t cnt = HuffSubstreamCount(n, nstreams, k);
  if (my_size > uint64_t(cnt) * kL || (single && my_size != 0)) {
    if (error) atomicOr(error, kHuffErrorHeader);
    return;
  }
  const uint32_t* words = reinterpret_cast<const uint32_t*>(payload + bits_off);
  // 64-bit MSB-aligned bit buffer holding nbuf bits; refilled by whole 32-bit words (bits past
  // this sub-stream's end are the next one's or zeros past the last word, exactly the CPU
  // decoder's view). Four words are loaded ahead so that a refill never waits on memory.
  uint64_t w = start >> 5;
  const int skip = int(start & 31);
  uint64_t buf = uint64_t(uint32_t(LdWord(words, w, nwords) << skip)) << 32;
  int nbuf = 32 - skip;
  uint32_t pf0 = LdWord(words, w + 1, nwords), pf1 = LdWord(words, w + 2, nwords);
  uint32_t pf2 = LdWord(words, w + 3, nwords), pf3 = LdWord(words, w + 4, nwords);
  w += 5;
  uint32_t consumed = 0;  // <= cnt * 11 < 2^16
  uint32_t err = 0;
  uint8_t* dst = out + k;
  for (uint32_t i = 0; i < cnt; ++i) {
    if (nbuf <= 32) {
      buf |= uint64_t(pf0) << (32 - nbuf);
      nbuf += 32;
      pf0 = pf1;
      pf1 = pf2;
      pf2 = pf3;
      pf3 = LdWord(words, w++, nwords);
    }
    const uint32_t e = table[buf >> (64 - kL)];
    if (e == kNoCode) {
      err = kHuffErrorCode;
      break;
    }
    const int l = int(e >> 8);  // nbuf >= 33 > l here
    buf <<= l;
    nbuf -= l;
    consumed += uint32_t(l);
    dst[i * nstreams] = uint8_t(e & 0xFF);  // i * nstreams + k < n
  }
  // Every bit of the sub-stream consumed, no more.
  if (!err && consumed != my_size) err = kHuffErrorStream;
  if (err && error) atomicOr(error, err);
}

__global__ void __launch_bounds__(kThreads)
    HuffDecodeKernel(const uint8_t* __restrict__ payload, uint64_t payload_bytes, uint32_t n,
                     uint32_t substream, uint8_t* __restrict__ out, uint32_t* error) {
  HuffDecodeBlock(payload, payload_bytes, n, substream, out, error, blockIdx.x);
}

// blockIdx.y = chunk, blockIdx.x = block within the chunk (the grid is sized for the largest
// chunk; blocks past a smaller chunk's sub-streams leave at once). A block never mixes chunks,
// so each builds its own chunk's table. Descriptors live in device memory and are checked here.
__global__ void __launch_bounds__(kThreads)
    HuffDecodeBatchKernel(const HuffChunk* __restrict__ chunks, uint32_t substream,
                          uint64_t max_symbols, uint32_t* error) {
  const HuffChunk c = chunks[blockIdx.y];
  if (c.symbols == 0) return;
  if (c.symbols > max_symbols || c.symbols >= (uint64_t(1) << 32) || c.payload == nullptr ||
      c.out == nullptr || reinterpret_cast<uintptr_t>(c.payload) % 4) {
    if (threadIdx.x == 0 && blockIdx.x == 0 && error) atomicOr(error, kHuffErrorHeader);
    return;
  }
  const uint32_t n = uint32_t(c.symbols);
  const uint32_t nstreams = (n + substream - 1) / substream;
  if (blockIdx.x * uint64_t(kThreads) >= nstreams) return;  // uniform per block
  HuffDecodeBlock(static_cast<const uint8_t*>(c.payload), c.payload_bytes, n, substream,
                  static_cast<uint8_t*>(c.out), error, blockIdx.x);
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
  detail::HuffDecodeKernel<<<blocks, detail::kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      static_cast<const uint8_t*>(a.payload), a.payload_bytes, n, a.substream,
      static_cast<uint8_t*>(a.out), a.error);
  HCT_CHECK(cuda, cudaGetLastError());
  return Status::OK();
}

}  // namespace hct

namespace hct {

Status LaunchHuffDecodeBatch(const HuffBatchArgs& a, GpuStream stream) {
  HCT_RETURN_IF_ERROR(ValidateHuffDecodeBatch(a));
  if (a.count == 0 || a.max_symbols == 0) return Status::OK();
  const uint64_t nstreams = (a.max_symbols + a.substream - 1) / a.substream;
  const dim3 grid(uint32_t((nstreams + detail::kThreads - 1) / detail::kThreads), a.count);
  detail::HuffDecodeBatchKernel<<<grid, detail::kThreads, 0,
                                  reinterpret_cast<cudaStream_t>(stream)>>>(
      a.chunks, a.substream, a.max_symbols, a.error);
  HCT_CHECK(cuda, cudaGetLastError());
  return Status::OK();
}

}  // namespace hct
