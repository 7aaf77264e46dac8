#include "runtime/detail/compressed.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
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
  DeviceGuard g(env_.device);
  for (void* s : decode_) {  // nothing may still write the scratch
    (void)cudaStreamSynchronize(static_cast<cudaStream_t>(s));
    (void)cudaStreamDestroy(static_cast<cudaStream_t>(s));
  }
  for (void* e : joined_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
  for (void* e : copied_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
  if (scratch_) (void)cudaFree(scratch_);
#endif
}

// The decode streams (non-blocking, like the copy streams) and their events, once.
Status CompressedLoader::MakeDecodeStreams() {
#if HCT_WITH_CUDA
  if (!env_.gpu() || env_.opt.hct_decode_streams <= 0 || !decode_.empty()) return Status::OK();
  const double t0 = NowSeconds();
  DeviceGuard g(env_.device);
  for (int k = 0; k < env_.opt.hct_decode_streams; ++k) {
    cudaStream_t s;
    HCT_CHECK(cuda, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    decode_.push_back(s);
    cudaEvent_t e;
    HCT_CHECK(cuda, cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    joined_.push_back(e);
  }
  for (int k = 0; k < ring_->nslots(); ++k) {
    cudaEvent_t e;
    HCT_CHECK(cuda, cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    copied_.push_back(e);
  }
  CountSetup(env_.stats, t0, 0);
#endif
  return Status::OK();
}

Status CompressedLoader::JoinDecodeStreams(void* to) const {
#if HCT_WITH_CUDA
  for (size_t k = 0; k < decode_.size(); ++k) {
    auto e = static_cast<cudaEvent_t>(joined_[k]);
    HCT_CHECK(cuda, cudaEventRecord(e, static_cast<cudaStream_t>(decode_[k])));
    HCT_CHECK(cuda, cudaStreamWaitEvent(static_cast<cudaStream_t>(to), e, 0));
  }
#else
  (void)to;
#endif
  return Status::OK();
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
  HCT_RETURN_IF_ERROR(MakeDecodeStreams());
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

// One turn of the ring: one chunk of one tensor, or (huff) `count` consecutive dctq-huff
// chunks decoded together from one slot.
struct Group {
  size_t t;      // index into plan.reads
  size_t chunk;  // index into the tensor's chunks (the first one of a group)
  size_t count = 1;
  bool huff = false;  // read in units into one slot and decoded there on the GPU
  bool bf16 = false;  // huff: bf16-huff (runtime/detail/lossless_gpu.h), else dctq-huff
  bool direct = false;
  const std::byte* mapped = nullptr;  // the resident file's mapping: no read, no CPU copy
  HuffBatchWorkspace ws{};            // huff: the slot's layout
  uint64_t max_sym = 0;               // huff: the largest chunk's symbols
};

// What one thread does at a time: chunks [k0, k1) of group g (huff groups read from the page
// cache are cut into several units so that all threads read, whatever the group size).
struct Unit {
  size_t g;
  size_t k0, k1;
  uint64_t poff, soff;  // huff: workspace offsets of chunk k0's payload and symbols
};

// Stored bytes of one read unit of a huff group read from the page cache: small enough that
// every thread gets several units of a layer (a 70B layer's 0.36 GB is ~170 units), large
// enough that a unit is many page-cache copies of whole chunks.
constexpr uint64_t kUnitBytes = 2ull << 20;

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
                const Destination& dst, const ResidentFiles* resident)
      : env_(env), res_(res), plan_(plan), dst_(dst), resident_(resident), turns_(res.ring()) {}
  void Cut(std::span<const size_t> which);
  Status Run();

 private:
  size_t HuffGroup(const PlannedRead& r, size_t c0) const;
  void CutUnits(size_t g);
  Status Do(int worker, int64_t u);
  Status HuffUnit(const Unit& u);
  Status CheckHuffChunk(const Group& g, size_t ci, const std::byte* data, uint64_t poff,
                        uint64_t soff, std::byte* host, std::byte* dev);
  Status SubmitHuff(const Group& g, size_t slot, std::byte* host, std::byte* dev);
  Status CopyGroup(const Group& g, std::byte* host, std::byte* dev, void* stream);
  Status LaunchDctq(const Group& g, std::byte* dev, void* stream);
  Status MakeProfileEvents();
  void CollectProfile();
  Status ChunkItem(int worker, int64_t j, const Group& g);
  Status DecodeOnDevice(int64_t j, const Group& g, std::span<const std::byte> stored,
                        std::byte* out);
  void Count(const Group& g, uint64_t stored, uint64_t verified) {
    stored_ += stored;
    (g.mapped ? mapped_ : g.direct ? direct_ : buffered_) += stored;
    verified_ += verified;
  }

  const LoadEnv& env_;
  CompressedLoader& res_;
  const ReadPlan& plan_;
  const Destination& dst_;
  const ResidentFiles* resident_;
  RingTurns turns_;
  std::vector<Group> groups_;
  std::vector<Unit> units_;
  std::unique_ptr<std::atomic<size_t>[]> left_;  // per group: units not done yet
  std::atomic<int64_t> next_{0};
  // Under the turns' lock:
  uint64_t stored_ = 0, direct_ = 0, buffered_ = 0, verified_ = 0, mapped_ = 0;
  double decode_s_ = 0;
  uint64_t bf16_gpu_ = 0;  // bf16-huff chunks decoded on the GPU
  // hct_profile: per huff group, events at the copy's start and end, the kernels' start, the
  // Huffman decode's end and the kernels' end (cudaEvent_t; null for other groups).
  std::vector<std::array<void*, 5>> prof_;
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

// A huff group's units: one for a resident group (its DMA is one copy per contiguous run),
// else runs of whole chunks of about kUnitBytes stored bytes.
void CompressedRun::CutUnits(size_t gi) {
  const Group& g = groups_[gi];
  if (!g.huff || g.mapped) {
    units_.push_back({gi, 0, g.count, g.ws.payload_begin, g.ws.symbols_begin});
    return;
  }
  const std::vector<ChunkEntry>& ch = plan_.reads[g.t].hct->entry->chunks;
  uint64_t poff = g.ws.payload_begin, soff = g.ws.symbols_begin;
  for (size_t k = 0; k < g.count;) {
    Unit u{gi, k, k, poff, soff};
    uint64_t bytes = 0;
    while (u.k1 < g.count && (u.k1 == k || bytes + ch[g.chunk + u.k1].stored_size <= kUnitBytes)) {
      const ChunkEntry& c = ch[g.chunk + u.k1];
      bytes += c.stored_size;
      poff += AlignUp(c.stored_size);
      soff += g.bf16 ? Bf16HuffWorkspaceBytes(c.elem_count) : c.decoded_size;
      ++u.k1;
    }
    units_.push_back(u);
    k = u.k1;
  }
}

// Groups in tensor order, chunk order; O_DIRECT decided per file over its chunk ranges.
void CompressedRun::Cut(std::span<const size_t> which) {
  std::map<const OpenFile*, std::vector<std::pair<uint64_t, uint64_t>>> ranges;
  for (size_t i : which) {
    const PlannedRead& r = plan_.reads[i];
    const std::vector<ChunkEntry>& ch = r.hct->entry->chunks;
    const std::byte* mapped = resident_ ? resident_->Data(r.file->path) : nullptr;
    if (!mapped)
      for (const ChunkEntry& c : ch) ranges[r.file].emplace_back(c.offset, c.stored_size);
    for (size_t c = 0; c < ch.size();) {
      const size_t m = HuffGroup(r, c);
      const size_t b = m ? 0 : Bf16HuffGroupSize(r, c, res_.ring().slot_bytes(), env_.gpu());
      Group g{i, c, std::max<size_t>(m + b, 1), m + b > 0};
      g.mapped = mapped;
      g.bf16 = b > 0;
      if (g.bf16) {
        const Bf16HuffGroupLayout L = Bf16HuffLayoutOf(ch, c, b);
        g.ws = HuffBatchWorkspace{L.payload_begin, L.copy_bytes, L.bytes};
        for (size_t k = 0; k < b; ++k) g.max_sym = std::max(g.max_sym, ch[c + k].elem_count);
      } else if (g.huff) {
        g.ws = GroupWorkspace(ch, c, m);
        for (size_t k = 0; k < m; ++k) g.max_sym = std::max(g.max_sym, ch[c + k].decoded_size);
      }
      groups_.push_back(g);
      c += g.count;
    }
  }
  std::map<const OpenFile*, bool> direct;
  for (auto& [f, rg] : ranges) direct[f] = UseDirect(*f, env_.opt.o_direct, rg);
  for (Group& g : groups_) g.direct = !g.mapped && direct[plan_.reads[g.t].file];
  for (size_t gi = 0; gi < groups_.size(); ++gi) CutUnits(gi);
  left_ = std::make_unique<std::atomic<size_t>[]>(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) left_[gi] = 0;
  for (const Unit& u : units_) ++left_[u.g];
}

// Checks one chunk of a huff group (header on the CPU; its stored XXH3 was checked by the read,
// or when its resident file became resident) and writes its descriptor into the slot, pointing
// into the slot's device twin.
Status CompressedRun::CheckHuffChunk(const Group& g, size_t ci, const std::byte* data,
                                     uint64_t poff, uint64_t soff, std::byte* host,
                                     std::byte* dev) {
  if (g.bf16) {  // runtime/detail/lossless_gpu.h
    const PlannedRead& rb = plan_.reads[g.t];
    const size_t k = ci - g.chunk;
    auto* merge = reinterpret_cast<Bf16MergeChunk*>(host + g.count * sizeof(HuffChunk));
    return CheckBf16HuffChunk(rb, ci, data, false, dev + poff, dev + soff, dst_.at(g.t),
                              reinterpret_cast<HuffChunk*>(host) + k, merge + k);
  }
  const PlannedRead& r = plan_.reads[g.t];
  const ChunkEntry& cc = r.hct->entry->chunks[ci];
  const ChunkDecoder::DctqParams& q = r.hct->decoder.dctq();
  auto hdr = HuffParseHeader({data, cc.stored_size});
  if (!hdr.ok()) return InChunk(hdr.status(), r, ci);
  if (hdr->n != cc.decoded_size || hdr->substream != q.huff_substream)
    return InChunk(Status::Corruption("huffman header does not match the chunk"), r, ci);
  auto out_off = DTypeBytes(r.spec->dtype, cc.elem_offset);
  auto out_len = DTypeBytes(r.spec->dtype, cc.elem_count);
  if (!out_off || !out_len || *out_off + *out_len > r.length() || q.cols == 0 ||
      cc.elem_offset % q.cols || cc.elem_count % q.cols)
    return InChunk(Status::Corruption("lies outside the tensor"), r, ci);
  reinterpret_cast<HuffChunk*>(host)[ci - g.chunk] =
      HuffChunk{dev + poff, cc.stored_size, cc.decoded_size, dev + soff};
  return Status::OK();
}

// The group's copies on `stream`: the slot's descriptors (and payloads read into it) in one
// copy, or (resident) the descriptors, then the payloads DMA'd from the registered mapping, one
// copy per contiguous run of chunks.
Status CompressedRun::CopyGroup(const Group& g, std::byte* host, std::byte* dev, void* stream) {
#if HCT_WITH_CUDA
  auto cs = static_cast<cudaStream_t>(stream);
  const std::vector<ChunkEntry>& chs = plan_.reads[g.t].hct->entry->chunks;
  const uint64_t head =
      g.mapped ? (g.bf16 ? 2 : 1) * g.count * sizeof(HuffChunk) : g.ws.symbols_begin;
  HCT_CHECK(cuda, cudaMemcpyAsync(dev, host, head, cudaMemcpyHostToDevice, cs));
  if (!g.mapped) return Status::OK();
  uint64_t poff = g.ws.payload_begin, run_dev = poff, run_file = chs[g.chunk].offset, run_len = 0;
  for (size_t k = 0; k <= g.count; ++k) {
    const ChunkEntry* c = k < g.count ? &chs[g.chunk + k] : nullptr;
    if (c && run_len && c->offset == run_file + (poff - run_dev)) {
      run_len = poff - run_dev + c->stored_size;
    } else {
      if (run_len)
        HCT_CHECK(cuda, cudaMemcpyAsync(dev + run_dev, g.mapped + run_file, run_len,
                                        cudaMemcpyHostToDevice, cs));
      if (c) run_dev = poff, run_file = c->offset, run_len = c->stored_size;
    }
    if (c) poff += AlignUp(c->stored_size);
  }
#else
  (void)g, (void)host, (void)dev, (void)stream;
#endif
  return Status::OK();
}

// A dctq-huff group's kernels on `stream`: ONE batched Huffman launch, ONE dequant (+IDCT)
// launch over the group's rows (the Huffman end marked for the profile).
Status CompressedRun::LaunchDctq(const Group& g, std::byte* dev, void* stream) {
  const PlannedRead& r = plan_.reads[g.t];
  const std::vector<ChunkEntry>& chs = r.hct->entry->chunks;
  const ChunkEntry& c0 = chs[g.chunk];
  const ChunkEntry& cl = chs[g.chunk + g.count - 1];
  HuffBatchArgs ha;
  ha.chunks = reinterpret_cast<const HuffChunk*>(dev);
  ha.count = uint32_t(g.count);
  ha.substream = r.hct->decoder.dctq().huff_substream;
  ha.max_symbols = g.max_sym;
  HCT_RETURN_IF_ERROR(LaunchHuffDecodeBatch(ha, reinterpret_cast<GpuStream>(stream)));
#if HCT_WITH_CUDA
  if (!prof_.empty())
    HCT_CHECK(cuda, cudaEventRecord(static_cast<cudaEvent_t>(prof_[size_t(&g - groups_.data())][3]),
                                    static_cast<cudaStream_t>(stream)));
#endif
  const uint64_t cols = r.hct->decoder.dctq().cols;
  DctqDecodeArgs a = DctqArgs(r.hct->decoder.dctq(), r, dst_.at(g.t), c0.elem_offset / cols,
                              (cl.elem_offset + cl.elem_count) / cols);
  a.symbols = dev + g.ws.symbols_begin;
  a.symbol_type = DType::kI8;
  return LaunchDctqDecode(a, reinterpret_cast<GpuStream>(stream));
}

// The group's work on the GPU, enqueued by the thread that finished its last unit: its copies
// on a copy stream (CopyGroup); with decode streams, the slot's "copied" event, which the
// group's decode stream waits for (so the copy stream goes on with the next groups while this
// one decodes); the kernels (bf16-huff: LosslessGpu, else LaunchDctq); the slot's event.
Status CompressedRun::SubmitHuff(const Group& g, size_t slot, std::byte* host, std::byte* dev) {
  const PlannedRead& r = plan_.reads[g.t];
  Status st;
#if HCT_WITH_CUDA
  const size_t gi = size_t(&g - groups_.data());
  void* kd = res_.decode_stream(gi);
  // With decode streams one copy stream carries every group's copies in order: the link is one
  // resource, and the profile's copy times then add up to the time it was busy.
  auto cs = static_cast<cudaStream_t>(env_.streams.at(kd ? 0 : gi));
  auto ks = kd ? static_cast<cudaStream_t>(kd) : cs;
  auto mark = [&](int k, cudaStream_t s) {
    if (!prof_.empty() && st.ok())
      st = HCT_CALL_STATUS(cuda, cudaEventRecord(static_cast<cudaEvent_t>(prof_[gi][k]), s));
  };
  mark(0, cs);
  if (st.ok()) st = CopyGroup(g, host, dev, cs);
  mark(1, cs);
  if (st.ok() && kd) {
    auto ce = static_cast<cudaEvent_t>(res_.copied_event(slot));
    st = HCT_CALL_STATUS(cuda, cudaEventRecord(ce, cs));
    if (st.ok()) st = HCT_CALL_STATUS(cuda, cudaStreamWaitEvent(ks, ce, 0));
  }
  mark(2, ks);
  if (!st.ok()) return InChunk(st, r, g.chunk);
  if (g.bf16) {  // the exponent planes and the merge, checked by LosslessGpu
    HCT_RETURN_IF_ERROR(
        res_.lossless()->Launch({&r, g.chunk, g.count, slot, dev, g.max_sym, ks}));
    mark(3, ks);
    mark(4, ks);
    return st.ok() ? st : InChunk(st, r, g.chunk);
  }
  st = LaunchDctq(g, dev, ks);
  mark(4, ks);
  if (st.ok())
    st = HCT_CALL_STATUS(
        cuda, cudaEventRecord(static_cast<cudaEvent_t>(res_.ring().event(slot)), ks));
#else
  (void)slot, (void)host, (void)dev;
#endif
  return st.ok() ? st : InChunk(st, r, g.chunk);
}

// One unit of a huff group: its chunks read into the slot at their workspace offsets (or found
// in the resident mapping) and checked; the last unit of the group submits it.
Status CompressedRun::HuffUnit(const Unit& u) {
  const Group& g = groups_[u.g];
  const PlannedRead& r = plan_.reads[g.t];
  size_t slot = 0;
  if (!turns_.Acquire(int64_t(u.g), &slot, TensorCtx(r.name())))
    return Status::Internal("aborted");
  std::byte* host = res_.ring().slot(slot);
  std::byte* dev = res_.scratch() + slot * res_.ring().slot_bytes();
  const std::vector<ChunkEntry>& chs = r.hct->entry->chunks;
  const double t0 = NowSeconds();
  uint64_t poff = u.poff, soff = u.soff, stored = 0;
  for (size_t k = u.k0; k < u.k1; ++k) {
    const size_t ci = g.chunk + k;
    const ChunkEntry& cc = chs[ci];
    const std::byte* data = g.mapped + cc.offset;
    if (!g.mapped) {
      uint64_t x = 0;
      // Hashed step by step while each step is in this core's cache: a unit (megabytes) is
      // not there any more when a whole-chunk hash after the read would pass over it again.
      // Checked whatever RuntimeOptions::verify says: the GPU decode trusts these bytes (the
      // kernels bound every access but cannot tell a flipped bit from data).
      auto rd = ReadHashed(*r.file, g.direct, host + poff, cc.offset, cc.stored_size, &x,
                           env_.opt.hct_hash_step_bytes);
      if (!rd.ok()) return rd.status().WithContext(TensorCtx(r.name()));
      if (x != cc.xxh3)
        return ChecksumMismatch(r.file->path, r.name(),
                                "chunk " + std::to_string(ci) + " (stored bytes)", x, cc.xxh3);
      data = *rd;
    }
    HCT_RETURN_IF_ERROR(CheckHuffChunk(g, ci, data, poff, soff, host, dev));
    poff += AlignUp(cc.stored_size);
    soff += g.bf16 ? Bf16HuffWorkspaceBytes(cc.elem_count) : cc.decoded_size;
    stored += cc.stored_size;
  }
  const double dt = NowSeconds() - t0;
  const bool last = left_[u.g].fetch_sub(1) == 1;
  if (last) HCT_RETURN_IF_ERROR(SubmitHuff(g, slot, host, dev));
  auto count = [&] {
    decode_s_ += dt;
    if (last && g.bf16) bf16_gpu_ += g.count;
    Count(g, stored, g.mapped ? 0 : stored);
  };
  if (last) turns_.Release(slot, int64_t(u.g), count);
  else turns_.Update(count);
  return Status::OK();
}

// A chunk too large for a slot (rare: chunk_bytes below the codec's chunks) decodes into
// pageable memory and a stream-ordered device allocation.
Status CompressedRun::DecodeOnDevice(int64_t j, const Group& g, std::span<const std::byte> stored,
                                     std::byte* out) {
  const PlannedRead& r = plan_.reads[g.t];
  const HctRef& h = *r.hct;
  const ChunkEntry& c = h.entry->chunks[g.chunk];
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
  if (!st.ok()) return InChunk(st, r, g.chunk);
  if (!h.lossy) {
    st = HCT_CALL_STATUS(cuda, cudaMemcpyAsync(out, host, c.decoded_size, cudaMemcpyHostToDevice,
                                               stream));
  } else {
    // The kernel dequantizes (and inverse-transforms) in place.
    const uint64_t cols = h.decoder.dctq().cols;
    DctqDecodeArgs a = DctqArgs(h.decoder.dctq(), r, dst_.at(g.t), c.elem_offset / cols,
                                c.elem_offset / cols + c.elem_count / cols);
    const uint64_t sym_bytes = QueryDctqDecodeSymbolBytes(a);
    if (sym_bytes != c.decoded_size)
      return InChunk(Status::Corruption("decoded symbols do not cover the chunk's rows"), r,
                     g.chunk);
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
  if (!st.ok()) return InChunk(st, r, g.chunk);
  turns_.Release(slot, j, [&] { Count(g, c.stored_size, c.decoded_size); });
  return Status::OK();
}

// One chunk: read the stored bytes (chunk offsets are 4096-aligned; the aligned length may pass
// the end of the file, so only stored_size bytes are required) or find them in the resident
// mapping, verify (resident: verified when it became resident), decode.
Status CompressedRun::ChunkItem(int worker, int64_t j, const Group& g) {
  const PlannedRead& r = plan_.reads[g.t];
  const HctRef& h = *r.hct;
  const ChunkEntry& c = h.entry->chunks[g.chunk];
  const std::byte* bytes = g.mapped ? g.mapped + c.offset : nullptr;
  if (!bytes) {
    auto rb = res_.ReadBuffer(worker, CoverBytes(c.offset, c.stored_size));
    if (!rb.ok()) return rb.status().WithContext(TensorCtx(r.name()));
    auto data = ReadRange(*r.file, g.direct, *rb, c.offset, c.stored_size);
    if (!data.ok()) return data.status().WithContext(TensorCtx(r.name()));
    bytes = *data;
  }
  std::span<const std::byte> stored(bytes, c.stored_size);
  if (env_.opt.verify && !g.mapped) {
    const uint64_t x = XXH3_64bits(stored.data(), stored.size());
    if (x != c.xxh3)
      return ChecksumMismatch(r.file->path, r.name(),
                              "chunk " + std::to_string(g.chunk) + " (stored bytes)", x, c.xxh3);
  }
  auto out_off = DTypeBytes(r.spec->dtype, c.elem_offset);
  auto out_len = DTypeBytes(r.spec->dtype, c.elem_count);
  if (!out_off || !out_len || *out_off + *out_len > r.length())
    return InChunk(Status::Corruption("lies outside the tensor"), r, g.chunk);
  std::byte* out = dst_.at(g.t) + *out_off;
  if (env_.gpu()) return DecodeOnDevice(j, g, stored, out);
  // Host: the reference decoder, straight into place.
  const double t0 = NowSeconds();
  const ChunkMeta meta(c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count);
  Status st = h.decoder.Decode(stored, meta, {out, *out_len});
  const double dt = NowSeconds() - t0;
  if (!st.ok()) return InChunk(st, r, g.chunk);
  turns_.Update([&] {
    decode_s_ += dt;
    Count(g, c.stored_size, c.decoded_size);
  });
  return Status::OK();
}

Status CompressedRun::Do(int worker, int64_t ui) {
  const Unit& u = units_[size_t(ui)];
  const Group& g = groups_[u.g];
  return g.huff ? HuffUnit(u) : ChunkItem(worker, int64_t(u.g), g);
}

// hct_profile: the events of every huff group (timing on), before the units run.
Status CompressedRun::MakeProfileEvents() {
#if HCT_WITH_CUDA
  if (!env_.opt.hct_profile || !env_.gpu()) return Status::OK();
  prof_.assign(groups_.size(), {});
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    if (!groups_[gi].huff) continue;
    for (void*& e : prof_[gi]) {
      cudaEvent_t ev;
      HCT_CHECK(cuda, cudaEventCreate(&ev));
      e = ev;
    }
  }
#endif
  return Status::OK();
}

// hct_profile: waits for every timed group and adds its times (and the load's span) to the
// stats; events never reached (a failed load) add nothing.
void CompressedRun::CollectProfile() {
#if HCT_WITH_CUDA
  auto ms = [](void* a, void* b, float* out) {
    return cudaEventElapsedTime(out, static_cast<cudaEvent_t>(a), static_cast<cudaEvent_t>(b)) ==
           cudaSuccess;
  };
  void* ref = nullptr;
  double lo = 0, hi = 0;
  for (auto& ev : prof_) {
    if (!ev[0]) continue;
    float c = 0, h = 0, d = 0, r0 = 0, r4 = 0;
    const bool ok = cudaEventSynchronize(static_cast<cudaEvent_t>(ev[4])) == cudaSuccess &&
                    ms(ev[0], ev[1], &c) && ms(ev[2], ev[3], &h) && ms(ev[3], ev[4], &d) &&
                    (ref || (ref = ev[0])) && ms(ref, ev[0], &r0) && ms(ref, ev[4], &r4);
    if (ok) {
      ++env_.stats.hct_gpu_groups;
      env_.stats.hct_gpu_copy_seconds += c * 1e-3;
      env_.stats.hct_gpu_huff_seconds += h * 1e-3;
      env_.stats.hct_gpu_dequant_seconds += d * 1e-3;
      lo = std::min(lo, double(r0)), hi = std::max(hi, double(r4));
    }
    (void)cudaGetLastError();
  }
  env_.stats.hct_gpu_span_seconds += (hi - lo) * 1e-3;
  for (auto& ev : prof_)
    for (void* e : ev)
      if (e) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
  prof_.clear();
#endif
}

Status CompressedRun::Run() {
  if (units_.empty()) return Status::OK();
  if (Status st = MakeProfileEvents(); !st.ok()) return st;
  res_.pool().Run([&](int worker) {
    for (int64_t j; (j = next_.fetch_add(1)) < int64_t(units_.size());) {
      if (Status st = Do(worker, j); !st.ok()) return turns_.Fail(std::move(st));
    }
  });
  // The copy streams follow the decode streams (the engine joins the copy streams), also after
  // a failure: the caller's memory is not written behind its back.
  if (env_.gpu() && env_.streams.size() > 0)
    if (Status st = res_.JoinDecodeStreams(env_.streams.at(0)); !st.ok())
      turns_.Fail(std::move(st));
  // The bf16-huff groups' GPU error words (also after a failure: none stays pending).
  if (LosslessGpu* l = res_.lossless())
    if (Status st = l->Finish(); !st.ok()) turns_.Fail(std::move(st));
  CollectProfile();
  env_.stats.bytes_o_direct += direct_;
  env_.stats.bytes_buffered += buffered_;
  env_.stats.bytes_verified += verified_;
  env_.stats.bytes_hct_stored += stored_;
  env_.stats.bytes_hct_resident += mapped_;
  env_.stats.hct_decode_thread_seconds += decode_s_;
  env_.stats.hct_bf16_gpu_chunks += bf16_gpu_;
  return turns_.status();
}

}  // namespace

// Resident HCT tensors are verified once per residency, before their first load from the
// mapping: every chunk's stored XXH3 on the decode threads, in parallel over chunks. Later
// loads trust the registered pages (read-only, pinned: the page cache cannot drop them).
Status CompressedLoader::VerifyResident(const ReadPlan& plan, std::span<const size_t> which,
                                        ResidentFiles& resident) {
  if (!env_.opt.verify) return Status::OK();
  struct Job {
    size_t i, c;
    const std::byte* base;
  };
  std::vector<Job> jobs;
  std::vector<size_t> todo;
  for (size_t i : which) {
    const PlannedRead& r = plan.reads[i];
    const std::vector<ChunkEntry>& ch = r.hct->entry->chunks;
    const std::byte* base = resident.Data(r.file->path);
    if (!base || ch.empty() || resident.Verified(r.file->path, ch[0].offset)) continue;
    todo.push_back(i);
    for (size_t c = 0; c < ch.size(); ++c) jobs.push_back({i, c, base});
  }
  if (jobs.empty()) return Status::OK();
  std::vector<Status> errs(jobs.size());
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> bytes{0};
  pool_->Run([&](int) {
    for (size_t k; (k = next.fetch_add(1)) < jobs.size();) {
      const PlannedRead& r = plan.reads[jobs[k].i];
      const ChunkEntry& c = r.hct->entry->chunks[jobs[k].c];
      const uint64_t x = XXH3_64bits(jobs[k].base + c.offset, c.stored_size);
      if (x != c.xxh3)
        errs[k] = ChecksumMismatch(r.file->path, r.name(),
                                   "chunk " + std::to_string(jobs[k].c) + " (stored bytes)", x,
                                   c.xxh3);
      bytes += c.stored_size;
    }
  });
  for (const Status& e : errs) HCT_RETURN_IF_ERROR(e);
  for (size_t i : todo)
    resident.MarkVerified(plan.reads[i].file->path, plan.reads[i].hct->entry->chunks[0].offset);
  env_.stats.bytes_verified += bytes.load();
  return Status::OK();
}

Status CompressedLoader::Load(const ReadPlan& plan, std::span<const size_t> which,
                              const Destination& dst, ResidentFiles* resident) {
  HCT_RETURN_IF_ERROR(Prepare());
  if (resident) HCT_RETURN_IF_ERROR(VerifyResident(plan, which, *resident));
  CompressedRun run(env_, *this, plan, dst, resident);
  run.Cut(which);
  Status st = run.Run();
  CountGrowth();
  HCT_RETURN_IF_ERROR(st);
  for (size_t i : which) {
    ++env_.stats.loads_hct;
    if (resident && resident->Data(plan.reads[i].file->path)) ++env_.stats.loads_hct_resident;
    env_.stats.bytes_hct_decoded += plan.reads[i].length();
    env_.stats.hct_chunks += plan.reads[i].hct->entry->chunks.size();
  }
  return Status::OK();
}

}  // namespace hct::detail
