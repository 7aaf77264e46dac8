#include "runtime/detail/lossless_gpu.h"

#include <xxhash.h>

#include <algorithm>

#include "codec/detail/bf16_huff.h"
#include "hct/codec.h"
#include "hct/kernels.h"
#include "runtime/detail/file_reader.h"
#include "runtime/detail/verify.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#include "runtime/detail/device.h"
#endif

namespace hct::detail {

// The group layout is the batched Huffman workspace of 2 count descriptors (the second half
// holds the merge descriptors, of the same size), payloads at 4096-aligned offsets, then the
// exponent planes as the "symbols": one rule for the layout (QueryHuffDecodeBatchWorkspace).
static_assert(sizeof(Bf16MergeChunk) == sizeof(HuffChunk));

namespace {

// "<file>: tensor '<name>': chunks <a>..<b>: <message>" (or "chunk <a>" for one).
Status InChunks(const Status& s, const std::string& file, const std::string& tensor, size_t c0,
                size_t count) {
  const std::string what = count == 1 ? "chunk " + std::to_string(c0)
                                      : "chunks " + std::to_string(c0) + ".." +
                                            std::to_string(c0 + count - 1);
  return s.WithContext(what).WithContext(TensorCtx(tensor)).WithContext(file);
}

// Whether chunk c can be decoded by the GPU path at all (else the generic path decodes it on
// the CPU, which reports what is wrong with it).
bool GpuChunk(const ChunkEntry& c) {
  return c.elem_count > 0 && c.elem_count < (uint64_t(1) << 32) &&
         c.decoded_size == 2 * c.elem_count && c.offset % kAlign == 0 &&
         c.stored_size > Bf16HuffExpOffset(c.elem_count);
}

}  // namespace

bool IsBf16HuffGpu(const HctRef& h, bool gpu) {
  return gpu && h.decoder.codec() == kCodecBf16Huff && h.decoder.dtype() == DType::kBF16;
}

Bf16HuffGroupLayout Bf16HuffLayoutOf(const std::vector<ChunkEntry>& ch, size_t c0, size_t count) {
  std::vector<uint64_t> pay(2 * count, 0), exps(2 * count, 0);
  for (size_t k = 0; k < count; ++k) {
    pay[k] = ch[c0 + k].stored_size;
    exps[k] = Bf16HuffWorkspaceBytes(ch[c0 + k].elem_count);
  }
  const HuffBatchWorkspace w =
      QueryHuffDecodeBatchWorkspace(pay.data(), exps.data(), uint32_t(2 * count), kAlign);
  return {w.payload_begin, w.symbols_begin, w.bytes};
}

size_t Bf16HuffGroupSize(const PlannedRead& r, size_t c0, uint64_t slot_bytes, bool gpu) {
  if (!IsBf16HuffGpu(*r.hct, gpu) || r.spec->dtype != DType::kBF16) return 0;
  const std::vector<ChunkEntry>& ch = r.hct->entry->chunks;
  // Grown one chunk at a time: the layout's size is monotone in the chunk count.
  size_t m = 0;
  uint64_t bytes = 0;
  for (size_t c = c0; c < ch.size() && m < 32767; ++c) {
    if (!GpuChunk(ch[c])) break;
    // Descriptors grow by 64 bytes per chunk (rounded to a page), payloads and planes add.
    const uint64_t next = bytes + AlignUp(ch[c].stored_size) +
                          Bf16HuffWorkspaceBytes(ch[c].elem_count);
    if (AlignUp(2 * (m + 1) * sizeof(HuffChunk)) + next > slot_bytes) break;
    bytes = next;
    m = c - c0 + 1;
  }
  return m;
}

// ------------------------------------------------------------------------------- LosslessGpu
LosslessGpu::~LosslessGpu() {
#if HCT_WITH_CUDA
  DeviceGuard g(env_.device);
  if (dev_err_) (void)cudaFree(dev_err_);
  if (host_err_) (void)cudaFreeHost(host_err_);
#endif
}

Status LosslessGpu::Prepare() {
  if (!pending_.empty()) return Status::OK();
#if HCT_WITH_CUDA
  const double t0 = NowSeconds();
  DeviceGuard g(env_.device);
  const size_t n = size_t(ring_.nslots());
  void* d = nullptr;
  void* h = nullptr;
  HCT_CHECK(cuda, cudaMalloc(&d, n * sizeof(uint32_t)));
  dev_err_ = static_cast<uint32_t*>(d);
  HCT_CHECK(cuda, cudaHostAlloc(&h, n * sizeof(uint32_t), cudaHostAllocDefault));
  host_err_ = static_cast<uint32_t*>(h);
  std::fill(host_err_, host_err_ + n, 0u);
  pending_.assign(n, Pending{});
  CountSetup(env_.stats, t0, 2 * n * sizeof(uint32_t));
  return Status::OK();
#else
  return Status::Unsupported("bf16-huff GPU decode: built without CUDA");
#endif
}

Status LosslessGpu::Check(size_t slot) {
  Pending& p = pending_[slot];
  if (!p.active) return Status::OK();
  p.active = false;
  const uint32_t e = host_err_[slot];
  if (e == 0) return Status::OK();
  std::string why = "the GPU decoder found the payload inconsistent (";
  why += (e & kHuffErrorHeader) ? "header " : "";
  why += (e & kHuffErrorCode) ? "code " : "";
  why += (e & kHuffErrorStream) ? "sub-stream size " : "";
  why += "error)";
  return InChunks(Status::Corruption(why), p.file, p.tensor, p.chunk, p.count);
}

Status CheckBf16HuffChunk(const PlannedRead& r, size_t ci, const std::byte* stored,
                          const void* dev_payload, void* dev_exponents, std::byte* out,
                          HuffChunk* huff, Bf16MergeChunk* merge) {
  const ChunkEntry& cc = r.hct->entry->chunks[ci];
  auto fail = [&](const Status& s) { return InChunks(s, r.file->path, r.name(), ci, 1); };
  const uint64_t x = XXH3_64bits(stored, cc.stored_size);
  if (x != cc.xxh3)
    return ChecksumMismatch(r.file->path, r.name(),
                            "chunk " + std::to_string(ci) + " (stored bytes)", x, cc.xxh3);
  auto hdr = Bf16HuffParseHeader({stored, cc.stored_size});
  if (!hdr.ok()) return fail(hdr.status());
  if (hdr->n != cc.elem_count || hdr->substream != r.hct->decoder.dctq().huff_substream)
    return fail(Status::Corruption("bf16-huff header does not match the chunk"));
  auto out_off = DTypeBytes(DType::kBF16, cc.elem_offset);
  if (!out_off || *out_off > r.length() || cc.decoded_size > r.length() - *out_off)
    return fail(Status::Corruption("lies outside the tensor"));
  Status st = DescribeBf16HuffChunk(dev_payload, cc.stored_size, cc.elem_count, dev_exponents,
                                    out + *out_off, huff, merge);
  return st.ok() ? st : fail(st);
}

// Stored bytes straight into the slot at their layout offsets, each checked there.
Status LosslessGpu::Read(const Bf16HuffGroupJob& job, uint64_t* max_n, double* cpu_seconds) {
  const PlannedRead& r = *job.r;
  const std::vector<ChunkEntry>& chs = r.hct->entry->chunks;
  const Bf16HuffGroupLayout L = Bf16HuffLayoutOf(chs, job.chunk, job.count);
  auto* huff = reinterpret_cast<HuffChunk*>(job.host);
  auto* merge = reinterpret_cast<Bf16MergeChunk*>(job.host + job.count * sizeof(HuffChunk));
  uint64_t poff = L.payload_begin, eoff = L.copy_bytes;
  for (size_t k = 0; k < job.count; ++k) {
    const size_t ci = job.chunk + k;
    const ChunkEntry& cc = chs[ci];
    auto data = ReadRange(*r.file, job.direct, job.host + poff, cc.offset, cc.stored_size);
    if (!data.ok()) return data.status().WithContext(TensorCtx(r.name()));
    if (*data != job.host + poff)
      return InChunks(Status::Internal("chunk read off its slot offset"), r.file->path, r.name(),
                      ci, 1);
    const double t0 = NowSeconds();
    Status st = CheckBf16HuffChunk(r, ci, *data, job.dev + poff, job.dev + eoff, job.out,
                                   &huff[k], &merge[k]);
    *cpu_seconds += NowSeconds() - t0;
    HCT_RETURN_IF_ERROR(st);
    *max_n = std::max<uint64_t>(*max_n, cc.elem_count);
    poff += AlignUp(cc.stored_size);
    eoff += Bf16HuffWorkspaceBytes(cc.elem_count);
  }
  return Status::OK();
}

// One copy of descriptors + payloads, the two batched kernels, the error word back, the event.
Status LosslessGpu::Enqueue(const Bf16HuffGroupJob& job, uint64_t max_n) {
#if HCT_WITH_CUDA
  const PlannedRead& r = *job.r;
  const Bf16HuffGroupLayout L = Bf16HuffLayoutOf(r.hct->entry->chunks, job.chunk, job.count);
  auto stream = static_cast<cudaStream_t>(job.stream);
  uint32_t* err = dev_err_ + job.slot;
  HCT_CHECK(cuda, cudaMemcpyAsync(job.dev, job.host, L.copy_bytes, cudaMemcpyHostToDevice,
                                  stream));
  HCT_CHECK(cuda, cudaMemsetAsync(err, 0, sizeof(uint32_t), stream));
  HuffBatchArgs ha;
  ha.chunks = reinterpret_cast<const HuffChunk*>(job.dev);
  ha.count = uint32_t(job.count);
  ha.substream = r.hct->decoder.dctq().huff_substream;
  ha.max_symbols = max_n;
  ha.error = err;
  HCT_RETURN_IF_ERROR(LaunchHuffDecodeBatch(ha, reinterpret_cast<GpuStream>(stream)));
  Bf16MergeBatchArgs ma;
  ma.chunks = reinterpret_cast<const Bf16MergeChunk*>(job.dev + job.count * sizeof(HuffChunk));
  ma.count = uint32_t(job.count);
  ma.max_count = max_n;
  ma.error = err;
  HCT_RETURN_IF_ERROR(LaunchBf16MergeBatch(ma, reinterpret_cast<GpuStream>(stream)));
  HCT_CHECK(cuda, cudaMemcpyAsync(host_err_ + job.slot, err, sizeof(uint32_t),
                                  cudaMemcpyDeviceToHost, stream));
  HCT_CHECK(cuda, cudaEventRecord(static_cast<cudaEvent_t>(ring_.event(job.slot)), stream));
  return Status::OK();
#else
  (void)job, (void)max_n;
  return Status::Unsupported("bf16-huff GPU decode: built without CUDA");
#endif
}

Status LosslessGpu::Run(const Bf16HuffGroupJob& job, double* cpu_seconds) {
  if (pending_.size() != size_t(ring_.nslots()))
    return Status::Internal("bf16-huff GPU decode before Prepare");
  // The holder of the slot waited for its event: the previous group's word is final.
  HCT_RETURN_IF_ERROR(Check(job.slot));
  uint64_t max_n = 0;
  HCT_RETURN_IF_ERROR(Read(job, &max_n, cpu_seconds));
  Status st = Enqueue(job, max_n);
  if (!st.ok()) return InChunks(st, job.r->file->path, job.r->name(), job.chunk, job.count);
  pending_[job.slot] = {true, job.r->file->path, job.r->name(), job.chunk, job.count};
  return Status::OK();
}

Status LosslessGpu::Finish() {
  Status first;
  for (size_t s = 0; s < pending_.size(); ++s) {
    if (!pending_[s].active) continue;
#if HCT_WITH_CUDA
    // The slot's event follows this group's work (or a later item's, recorded after it).
    Status w = HCT_CALL_STATUS(cuda,
                               cudaEventSynchronize(static_cast<cudaEvent_t>(ring_.event(s))));
    if (!w.ok()) {
      pending_[s].active = false;
      if (first.ok()) first = w;
      continue;
    }
#endif
    Status st = Check(s);
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

}  // namespace hct::detail
