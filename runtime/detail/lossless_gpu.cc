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

Status CheckBf16HuffChunk(const PlannedRead& r, size_t ci, const std::byte* stored, bool hash,
                          const void* dev_payload, void* dev_exponents, std::byte* out,
                          HuffChunk* huff, Bf16MergeChunk* merge) {
  const ChunkEntry& cc = r.hct->entry->chunks[ci];
  auto fail = [&](const Status& s) { return InChunks(s, r.file->path, r.name(), ci, 1); };
  if (hash) {
    const uint64_t x = XXH3_64bits(stored, cc.stored_size);
    if (x != cc.xxh3)
      return ChecksumMismatch(r.file->path, r.name(),
                              "chunk " + std::to_string(ci) + " (stored bytes)", x, cc.xxh3);
  }
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

Status LosslessGpu::Launch(const Bf16HuffGroupJob& job) {
  if (pending_.size() != size_t(ring_.nslots()))
    return Status::Internal("bf16-huff GPU decode before Prepare");
  HCT_RETURN_IF_ERROR(Check(job.slot));
#if HCT_WITH_CUDA
  const PlannedRead& r = *job.r;
  auto stream = static_cast<cudaStream_t>(job.stream);
  auto gs = reinterpret_cast<GpuStream>(stream);
  uint32_t* err = dev_err_ + job.slot;
  Status st = HCT_CALL_STATUS(cuda, cudaMemsetAsync(err, 0, sizeof(uint32_t), stream));
  HuffBatchArgs ha;
  ha.chunks = reinterpret_cast<const HuffChunk*>(job.dev);
  ha.count = uint32_t(job.count);
  ha.substream = r.hct->decoder.dctq().huff_substream;
  ha.max_symbols = job.max_elements;
  ha.error = err;
  if (st.ok()) st = LaunchHuffDecodeBatch(ha, gs);
  Bf16MergeBatchArgs ma;
  ma.chunks = reinterpret_cast<const Bf16MergeChunk*>(job.dev + job.count * sizeof(HuffChunk));
  ma.count = uint32_t(job.count);
  ma.max_count = job.max_elements;
  ma.error = err;
  if (st.ok()) st = LaunchBf16MergeBatch(ma, gs);
  if (st.ok())
    st = HCT_CALL_STATUS(cuda, cudaMemcpyAsync(host_err_ + job.slot, err, sizeof(uint32_t),
                                               cudaMemcpyDeviceToHost, stream));
  if (st.ok())
    st = HCT_CALL_STATUS(
        cuda, cudaEventRecord(static_cast<cudaEvent_t>(ring_.event(job.slot)), stream));
  if (!st.ok()) return InChunks(st, r.file->path, r.name(), job.chunk, job.count);
  pending_[job.slot] = {true, r.file->path, r.name(), job.chunk, job.count};
  return Status::OK();
#else
  return Status::Unsupported("bf16-huff GPU decode: built without CUDA");
#endif
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
