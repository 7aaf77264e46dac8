#include "runtime/detail/compressed.h"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <thread>

#include "hct/detail/huff_format.h"
#include "hct/codec.h"
#include "hct/kernels.h"
#include "runtime/detail/file_reader.h"
#include "runtime/detail/verify.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#endif

namespace hct::detail {

// ------------------------------------------------------------------------------- resources
CompressedLoader::~CompressedLoader() {
  pool_.reset();
  for (auto& [p, n] : read_bufs_) std::free(p);
#if HCT_WITH_CUDA
  if (scratch_) {
    DeviceGuard g(env_.device);
    (void)cudaFree(scratch_);
  }
#endif
}

Status CompressedLoader::Prepare(uint64_t read_bytes) {
  if (!pool_) {
    const double t0 = NowSeconds();
    const int n = env_.opt.decode_threads > 0
                      ? env_.opt.decode_threads
                      : int(std::max(1u, std::thread::hardware_concurrency()));
    const int dev = env_.device;
    const bool gpu = env_.gpu();
    pool_ = std::make_unique<WorkerPool>(n, [dev, gpu](int) {
#if HCT_WITH_CUDA
      if (gpu) (void)cudaSetDevice(dev);
#endif
      (void)dev, (void)gpu;
    });
    read_bufs_.assign(size_t(n), {nullptr, 0});
    CountSetup(env_.stats, t0, 0);
  }
  if (!ring_) {
    ring_ = &raw_;
    if (env_.gpu() && env_.opt.hct_slot_bytes > 0) {
      const double t0 = NowSeconds();
      const uint64_t slot = std::max<uint64_t>(env_.opt.hct_slot_bytes, raw_.slot_bytes());
      const int nslots = int(std::max<uint64_t>(2, env_.opt.hct_staging_bytes / slot));
      HCT_ASSIGN_OR_RETURN(own_ring_,
                           StagingRing::Create(env_.placement, env_.device, slot, nslots));
      ring_ = own_ring_.get();
      env_.stats.pinned_staging_bytes += own_ring_->bytes();
      CountSetup(env_.stats, t0, own_ring_->bytes());
    }
  }
#if HCT_WITH_CUDA
  if (env_.gpu() && !scratch_) {
    // Each slot's device twin holds what the slot's work item needs on the GPU: a chunk's
    // symbols (QueryDctqDecodeSymbolBytes <= decoded_size <= slot) or a Huffman group's
    // workspace (QueryHuffDecodeBatchWorkspace, at most a slot: groups are cut to fit).
    const double t0 = NowSeconds();
    DeviceGuard g(env_.device);
    void* p = nullptr;
    HCT_CHECK(cuda, cudaMalloc(&p, ring_->bytes()));
    scratch_ = static_cast<std::byte*>(p);
    env_.stats.hct_device_scratch_bytes = ring_->bytes();
    CountSetup(env_.stats, t0, ring_->bytes());
  }
  if (env_.gpu() && !lossless_) {
    lossless_ = std::make_unique<LosslessGpu>(env_, *ring_);
    HCT_RETURN_IF_ERROR(lossless_->Prepare());
  }
#endif
  if (read_bytes > 0) {
    const double t0 = NowSeconds();
    for (int w = 0; w < int(read_bufs_.size()); ++w)
      HCT_RETURN_IF_ERROR(ReadBuffer(w, read_bytes).status());
    if (grown_count_ > 0) env_.stats.setup_seconds += NowSeconds() - t0;
    CountGrowth();
  }
  return Status::OK();
}

uint64_t CompressedLoader::ReadBytesFor(const HctRef& h) const {
  if (env_.gpu() && h.decoder.codec() == kCodecDctqHuff) return 0;  // read into the ring
  if (IsBf16HuffGpu(h, env_.gpu())) return 0;                         // likewise
  uint64_t most = 0;
  for (const ChunkEntry& c : h.entry->chunks) most = std::max(most, CoverBytes(c.offset, c.stored_size));
  return most;
}

Result<std::byte*> CompressedLoader::ReadBuffer(int w, uint64_t bytes) {
  auto& rb = read_bufs_[size_t(w)];
  if (rb.second < bytes) {
    std::free(rb.first);
    rb.first = static_cast<std::byte*>(std::aligned_alloc(kAlign, AlignUp(bytes)));
    rb.second = rb.first ? bytes : 0;
    if (!rb.first) return Status::ResourceExhausted("read buffer of " + std::to_string(bytes));
    grown_bytes_ += AlignUp(bytes);
    ++grown_count_;
  }
  return rb.first;
}

// Growths are counted in the setup stats (the time is in the load that grew them).
void CompressedLoader::CountGrowth() {
  env_.stats.setup_bytes += grown_bytes_.exchange(0);
  env_.stats.setup_allocations += grown_count_.exchange(0);
}

namespace {

// One chunk of one tensor, or (huff) `count` consecutive dctq-huff chunks decoded together.
struct Item {
  size_t t;      // index into plan.reads
  size_t chunk;  // index into the tensor's chunks (the first one of a group)
  bool direct = false;
  size_t count = 1;
  bool huff = false;
  bool bf16 = false;  // a bf16-huff GPU group (runtime/detail/lossless_gpu.h)
};

HuffBatchWorkspace GroupWorkspace(const std::vector<ChunkEntry>& ch, size_t c0, size_t m) {
  std::vector<uint64_t> pay(m), sym(m);
  for (size_t k = 0; k < m; ++k) {
    pay[k] = ch[c0 + k].stored_size;
    sym[k] = ch[c0 + k].decoded_size;
  }
  return QueryHuffDecodeBatchWorkspace(pay.data(), sym.data(), uint32_t(m), kAlign);
}

// "<file>: tensor '<name>': chunk <i>: <message>"
Status InChunk(const Status& s, const PlannedRead& r, size_t chunk) {
  return s.WithContext("chunk " + std::to_string(chunk))
      .WithContext(TensorCtx(r.name()))
      .WithContext(r.file->path);
}

DctqDecodeArgs DctqArgs(const ChunkDecoder::DctqParams& q, const PlannedRead& r, void* out,
                        uint64_t row_begin, uint64_t row_end) {
  DctqDecodeArgs a;
  a.symbol_type = q.symbol_bits == 8 ? DType::kI8 : DType::kI16;
  a.step = q.step;
  a.rows = q.rows;
  a.cols = q.cols;
  a.row_begin = row_begin;
  a.row_end = row_end;
  a.transform = q.dct ? GpuTransform::kDct : GpuTransform::kNone;
  a.tile_rows = uint32_t(q.tile_r);
  a.tile_cols = uint32_t(q.tile_c);
  a.out_type = r.spec->dtype;
  a.out = out;
  return a;
}

class CompressedRun {
 public:
  CompressedRun(const LoadEnv& env, CompressedLoader& res, const ReadPlan& plan,
                const Destination& dst)
      : env_(env), res_(res), plan_(plan), dst_(dst), turns_(res.ring()) {}
  void Cut(std::span<const size_t> which);
  Status Run();

 private:
  size_t HuffGroup(const PlannedRead& r, size_t c0) const;
  Status Do(int worker, int64_t j);
  Status HuffItem(int64_t j, const Item& it);
  Status Bf16Item(int64_t j, const Item& it);
  Status ReadHuffGroup(const Item& it, std::byte* host, std::byte* dev, uint64_t* max_sym);
  Status ChunkItem(int worker, int64_t j, const Item& it);
  Status DecodeOnDevice(int64_t j, const Item& it, std::span<const std::byte> stored,
                        std::byte* out);
  void Count(const Item& it, uint64_t stored, uint64_t verified) {
    stored_ += stored;
    (it.direct ? direct_ : buffered_) += stored;
    verified_ += verified;
  }

  const LoadEnv& env_;
  CompressedLoader& res_;
  const ReadPlan& plan_;
  const Destination& dst_;
  RingTurns turns_;
  std::vector<Item> items_;
  std::atomic<int64_t> next_{0};
  uint64_t stored_ = 0, direct_ = 0, buffered_ = 0, verified_ = 0;  // under the turns' lock
  uint64_t bf16_gpu_ = 0;                                             // likewise
  double decode_s_ = 0;
};

// How many chunks from c0 on form one dctq-huff GPU group (0: this chunk takes the generic
// path, e.g. it alone does not fit a slot). Chunks join while they continue the previous
// chunk's elements with one int8 symbol per element and the group's workspace fits one slot.
size_t CompressedRun::HuffGroup(const PlannedRead& r, size_t c0) const {
  if (!env_.gpu() || r.hct->decoder.codec() != kCodecDctqHuff) return 0;
  const std::vector<ChunkEntry>& ch = r.hct->entry->chunks;
  size_t m = 0;
  for (size_t c = c0; c < ch.size() && m < 65535; ++c) {
    if (ch[c].decoded_size != ch[c].elem_count) break;
    if (c > c0 && ch[c].elem_offset != ch[c - 1].elem_offset + ch[c - 1].elem_count) break;
    if (GroupWorkspace(ch, c0, c - c0 + 1).bytes > res_.ring().slot_bytes()) break;
    m = c - c0 + 1;
  }
  return m;
}

// Items in tensor order, chunk order; O_DIRECT decided per file over its chunk ranges.
void CompressedRun::Cut(std::span<const size_t> which) {
  std::map<const OpenFile*, std::vector<std::pair<uint64_t, uint64_t>>> ranges;
  for (size_t i : which) {
    const PlannedRead& r = plan_.reads[i];
    const std::vector<ChunkEntry>& ch = r.hct->entry->chunks;
    for (const ChunkEntry& c : ch) ranges[r.file].emplace_back(c.offset, c.stored_size);
    for (size_t c = 0; c < ch.size();) {
      const size_t m = HuffGroup(r, c);
      const size_t b = m ? 0 : Bf16HuffGroupSize(r, c, res_.ring().slot_bytes(), env_.gpu());
      items_.push_back({i, c, false, std::max<size_t>(m + b, 1), m > 0, b > 0});
      c += std::max<size_t>(m + b, 1);
    }
  }
  std::map<const OpenFile*, bool> direct;
  for (auto& [f, rg] : ranges) direct[f] = UseDirect(*f, env_.opt.o_direct, rg);
  for (Item& it : items_) it.direct = direct[plan_.reads[it.t].file];
}

// The stored bytes of a dctq-huff group go straight into the pinned slot at their workspace
// offsets and are checked there (stored XXH3, always: the symbols' checksum is not computed on
// this path; header on the CPU); the descriptors point into the device twin of the slot.
Status CompressedRun::ReadHuffGroup(const Item& it, std::byte* host, std::byte* dev,
                                    uint64_t* max_sym) {
  const PlannedRead& r = plan_.reads[it.t];
  const std::vector<ChunkEntry>& chs = r.hct->entry->chunks;
  const ChunkDecoder::DctqParams& q = r.hct->decoder.dctq();
  const HuffBatchWorkspace ws = GroupWorkspace(chs, it.chunk, it.count);
  auto* desc = reinterpret_cast<HuffChunk*>(host);
  uint64_t poff = ws.payload_begin, soff = ws.symbols_begin;
  for (size_t k = 0; k < it.count; ++k) {
    const size_t ci = it.chunk + k;
    const ChunkEntry& cc = chs[ci];
    auto data = ReadRange(*r.file, it.direct, host + poff, cc.offset, cc.stored_size);
    if (!data.ok()) return data.status().WithContext(TensorCtx(r.name()));
    const double t0 = NowSeconds();
    const uint64_t x = XXH3_64bits(*data, cc.stored_size);
    if (x != cc.xxh3)
      return ChecksumMismatch(r.file->path, r.name(),
                              "chunk " + std::to_string(ci) + " (stored bytes)", x, cc.xxh3);
    auto hdr = HuffParseHeader({*data, cc.stored_size});
    if (!hdr.ok()) return InChunk(hdr.status(), r, ci);
    if (hdr->n != cc.decoded_size || hdr->substream != q.huff_substream)
      return InChunk(Status::Corruption("huffman header does not match the chunk"), r, ci);
    turns_.Update([&] { decode_s_ += NowSeconds() - t0; });
    auto out_off = DTypeBytes(r.spec->dtype, cc.elem_offset);
    auto out_len = DTypeBytes(r.spec->dtype, cc.elem_count);
    if (!out_off || !out_len || *out_off + *out_len > r.length() || q.cols == 0 ||
        cc.elem_offset % q.cols || cc.elem_count % q.cols)
      return InChunk(Status::Corruption("lies outside the tensor"), r, ci);
    desc[k] = HuffChunk{dev + poff, cc.stored_size, cc.decoded_size, dev + soff};
    *max_sym = std::max(*max_sym, cc.decoded_size);
    poff += AlignUp(cc.stored_size);
    soff += cc.decoded_size;
  }
  return Status::OK();
}

// A group of it.count dctq-huff chunks: read and checked into the slot, copied as they are
// with the descriptors in one copy, decoded by the GPU (one batched Huffman launch, then
// dequant + IDCT over the rows).
Status CompressedRun::HuffItem(int64_t j, const Item& it) {
  const PlannedRead& r = plan_.reads[it.t];
  size_t slot = 0;
  if (!turns_.Acquire(j, &slot, TensorCtx(r.name()))) return Status::Internal("aborted");
  std::byte* host = res_.ring().slot(slot);
  std::byte* dev = res_.scratch() + slot * res_.ring().slot_bytes();
  uint64_t max_sym = 0;
  HCT_RETURN_IF_ERROR(ReadHuffGroup(it, host, dev, &max_sym));
  const std::vector<ChunkEntry>& chs = r.hct->entry->chunks;
  const ChunkEntry& c0 = chs[it.chunk];
  const ChunkEntry& cl = chs[it.chunk + it.count - 1];
  const HuffBatchWorkspace ws = GroupWorkspace(chs, it.chunk, it.count);
  Status st;
#if HCT_WITH_CUDA
  auto stream = static_cast<cudaStream_t>(env_.streams.at(uint64_t(j)));
  st = HCT_CALL_STATUS(cuda, cudaMemcpyAsync(dev, host, ws.symbols_begin,
                                             cudaMemcpyHostToDevice, stream));
  if (st.ok()) {
    HuffBatchArgs ha;
    ha.chunks = reinterpret_cast<const HuffChunk*>(dev);
    ha.count = uint32_t(it.count);
    ha.substream = r.hct->decoder.dctq().huff_substream;
    ha.max_symbols = max_sym;
    st = LaunchHuffDecodeBatch(ha, reinterpret_cast<GpuStream>(stream));
  }
  if (st.ok()) {
    const uint64_t cols = r.hct->decoder.dctq().cols;
    DctqDecodeArgs a = DctqArgs(r.hct->decoder.dctq(), r, dst_.at(it.t), c0.elem_offset / cols,
                                (cl.elem_offset + cl.elem_count) / cols);
    a.symbols = dev + ws.symbols_begin;
    a.symbol_type = DType::kI8;
    st = LaunchDctqDecode(a, reinterpret_cast<GpuStream>(stream));
  }
  if (st.ok())
    st = HCT_CALL_STATUS(
        cuda, cudaEventRecord(static_cast<cudaEvent_t>(res_.ring().event(slot)), stream));
#endif
  if (!st.ok()) return InChunk(st, r, it.chunk);
  uint64_t group_stored = 0;
  for (size_t k = 0; k < it.count; ++k) group_stored += chs[it.chunk + k].stored_size;
  turns_.Release(slot, j, [&] { Count(it, group_stored, group_stored); });
  return Status::OK();
}

// A group of it.count bf16-huff chunks, read, checked and decoded by LosslessGpu.
Status CompressedRun::Bf16Item(int64_t j, const Item& it) {
  const PlannedRead& r = plan_.reads[it.t];
  size_t slot = 0;
  if (!turns_.Acquire(j, &slot, TensorCtx(r.name()))) return Status::Internal("aborted");
  Bf16HuffGroupJob job;
  job.r = &r;
  job.chunk = it.chunk;
  job.count = it.count;
  job.direct = it.direct;
  job.slot = slot;
  job.host = res_.ring().slot(slot);
  job.dev = res_.scratch() + slot * res_.ring().slot_bytes();
  job.out = dst_.at(it.t);
  job.stream = env_.streams.at(uint64_t(j));
  double cpu_s = 0;
  HCT_RETURN_IF_ERROR(res_.lossless()->Run(job, &cpu_s));
  uint64_t stored = 0;
  for (size_t k = 0; k < it.count; ++k) stored += r.hct->entry->chunks[it.chunk + k].stored_size;
  turns_.Release(slot, j, [&] {
    decode_s_ += cpu_s;
    bf16_gpu_ += it.count;
    Count(it, stored, stored);
  });
  return Status::OK();
}

// A chunk too large for a slot (rare: chunk_bytes below the codec's chunks) decodes into
// pageable memory and a stream-ordered device allocation.
Status CompressedRun::DecodeOnDevice(int64_t j, const Item& it, std::span<const std::byte> stored,
                                     std::byte* out) {
  const PlannedRead& r = plan_.reads[it.t];
  const HctRef& h = *r.hct;
  const ChunkEntry& c = h.entry->chunks[it.chunk];
  size_t slot = 0;
  if (!turns_.Acquire(j, &slot, TensorCtx(r.name()))) return Status::Internal("aborted");
  Status st;
#if HCT_WITH_CUDA
  auto stream = static_cast<cudaStream_t>(env_.streams.at(uint64_t(j)));
  const bool fits = c.decoded_size <= res_.ring().slot_bytes();
  std::vector<std::byte> big;
  std::byte* host = fits ? res_.ring().slot(slot) : nullptr;
  if (!fits) {
    big.resize(c.decoded_size);
    host = big.data();
  }
  // zstd -> symbols (lossy) or original bytes, the checksum of the decoded form verified.
  const double t0 = NowSeconds();
  const ChunkMeta meta(c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count);
  st = h.decoder.DecodePayload(stored, meta, {host, c.decoded_size});
  turns_.Update([&] { decode_s_ += NowSeconds() - t0; });
  if (!st.ok()) return InChunk(st, r, it.chunk);
  if (!h.lossy) {
    st = HCT_CALL_STATUS(cuda, cudaMemcpyAsync(out, host, c.decoded_size, cudaMemcpyHostToDevice,
                                               stream));
  } else {
    // The kernel dequantizes (and inverse-transforms) in place.
    const uint64_t cols = h.decoder.dctq().cols;
    DctqDecodeArgs a = DctqArgs(h.decoder.dctq(), r, dst_.at(it.t), c.elem_offset / cols,
                                c.elem_offset / cols + c.elem_count / cols);
    const uint64_t sym_bytes = QueryDctqDecodeSymbolBytes(a);
    if (sym_bytes != c.decoded_size)
      return InChunk(Status::Corruption("decoded symbols do not cover the chunk's rows"), r,
                     it.chunk);
    void* sym = fits ? static_cast<void*>(res_.scratch() + slot * res_.ring().slot_bytes())
                     : nullptr;
    if (!fits) st = HCT_CALL_STATUS(cuda, cudaMallocAsync(&sym, sym_bytes, stream));
    if (st.ok())
      st = HCT_CALL_STATUS(cuda, cudaMemcpyAsync(sym, host, sym_bytes, cudaMemcpyHostToDevice,
                                                 stream));
    a.symbols = sym;
    if (st.ok()) st = LaunchDctqDecode(a, reinterpret_cast<GpuStream>(stream));
    if (!fits && sym) {
      Status f = HCT_CALL_STATUS(cuda, cudaFreeAsync(sym, stream));
      if (st.ok()) st = f;
    }
  }
  if (st.ok())
    st = HCT_CALL_STATUS(
        cuda, cudaEventRecord(static_cast<cudaEvent_t>(res_.ring().event(slot)), stream));
#else
  (void)stored, (void)out;
#endif
  if (!st.ok()) return InChunk(st, r, it.chunk);
  turns_.Release(slot, j, [&] { Count(it, c.stored_size, c.decoded_size); });
  return Status::OK();
}

// One chunk: read the stored bytes (chunk offsets are 4096-aligned; the aligned length may pass
// the end of the file, so only stored_size bytes are required), verify, decode.
Status CompressedRun::ChunkItem(int worker, int64_t j, const Item& it) {
  const PlannedRead& r = plan_.reads[it.t];
  const HctRef& h = *r.hct;
  const ChunkEntry& c = h.entry->chunks[it.chunk];
  auto rb = res_.ReadBuffer(worker, CoverBytes(c.offset, c.stored_size));
  if (!rb.ok()) return rb.status().WithContext(TensorCtx(r.name()));
  auto data = ReadRange(*r.file, it.direct, *rb, c.offset, c.stored_size);
  if (!data.ok()) return data.status().WithContext(TensorCtx(r.name()));
  std::span<const std::byte> stored(*data, c.stored_size);
  if (env_.opt.verify) {
    const uint64_t x = XXH3_64bits(stored.data(), stored.size());
    if (x != c.xxh3)
      return ChecksumMismatch(r.file->path, r.name(),
                              "chunk " + std::to_string(it.chunk) + " (stored bytes)", x, c.xxh3);
  }
  auto out_off = DTypeBytes(r.spec->dtype, c.elem_offset);
  auto out_len = DTypeBytes(r.spec->dtype, c.elem_count);
  if (!out_off || !out_len || *out_off + *out_len > r.length())
    return InChunk(Status::Corruption("lies outside the tensor"), r, it.chunk);
  std::byte* out = dst_.at(it.t) + *out_off;
  if (env_.gpu()) return DecodeOnDevice(j, it, stored, out);
  // Host: the reference decoder, straight into place.
  const double t0 = NowSeconds();
  const ChunkMeta meta(c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count);
  Status st = h.decoder.Decode(stored, meta, {out, *out_len});
  const double dt = NowSeconds() - t0;
  if (!st.ok()) return InChunk(st, r, it.chunk);
  turns_.Update([&] {
    decode_s_ += dt;
    Count(it, c.stored_size, c.decoded_size);
  });
  return Status::OK();
}

Status CompressedRun::Do(int worker, int64_t j) {
  const Item& it = items_[size_t(j)];
  if (it.bf16) return Bf16Item(j, it);
  return it.huff ? HuffItem(j, it) : ChunkItem(worker, j, it);
}

Status CompressedRun::Run() {
  if (items_.empty()) return Status::OK();
  res_.pool().Run([&](int worker) {
    for (int64_t j; (j = next_.fetch_add(1)) < int64_t(items_.size());) {
      if (Status st = Do(worker, j); !st.ok()) return turns_.Fail(std::move(st));
    }
  });
  // The bf16-huff groups' GPU error words (also after a failure: none stays pending).
  if (LosslessGpu* l = res_.lossless())
    if (Status st = l->Finish(); !st.ok()) turns_.Fail(std::move(st));
  env_.stats.bytes_o_direct += direct_;
  env_.stats.bytes_buffered += buffered_;
  env_.stats.bytes_verified += verified_;
  env_.stats.bytes_hct_stored += stored_;
  env_.stats.hct_bf16_gpu_chunks += bf16_gpu_;
  env_.stats.hct_decode_thread_seconds += decode_s_;
  return turns_.status();
}

}  // namespace

Status CompressedLoader::Load(const ReadPlan& plan, std::span<const size_t> which,
                              const Destination& dst) {
  HCT_RETURN_IF_ERROR(Prepare());
  CompressedRun run(env_, *this, plan, dst);
  run.Cut(which);
  Status st = run.Run();
  CountGrowth();
  HCT_RETURN_IF_ERROR(st);
  for (size_t i : which) {
    ++env_.stats.loads_hct;
    env_.stats.bytes_hct_decoded += plan.reads[i].length();
    env_.stats.hct_chunks += plan.reads[i].hct->entry->chunks.size();
  }
  return Status::OK();
}

}  // namespace hct::detail
