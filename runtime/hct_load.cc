// The compressed path: HCT chunks -> (pread, O_DIRECT when cold) -> stored checksum -> zstd decode
// on decode_threads CPU threads (symbol / byte checksum verified there) -> the pinned ring ->
// cudaMemcpyAsync -> (lossy) LaunchDctqDecode writing the original dtype in place.
// dctq-huff chunks skip the CPU decode and go in GROUPS of consecutive chunks of one tensor (as
// many as one ring slot holds): pread each into the pinned slot -> stored XXH3 + header check ->
// ONE cudaMemcpyAsync of descriptors + compressed bytes -> ONE LaunchHuffDecodeBatch ->
// LaunchDctqDecode over the group's rows. (One launch per ~1 M-symbol chunk gives 4-8 blocks,
// far too few to hide the sequential per-thread decode's latency on a big GPU.)
// Host placement: the CPU reference decoder straight into the destination.
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "hct/detail/huff_format.h"
#include "hct/codec.h"
#include "hct/kernels.h"
#include "runtime/detail/engine.h"
#include "runtime/detail/sources.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#endif

namespace hct::detail {
namespace {

constexpr uint64_t kAlign = 4096;
uint64_t AlignUp(uint64_t x) { return (x + kAlign - 1) & ~(kAlign - 1); }

Status ReadAll(int fd, std::byte* dst, uint64_t want, uint64_t min_bytes, uint64_t off,
               const std::string& path) {
  uint64_t got = 0;
  while (got < min_bytes) {
    ssize_t r = ::pread(fd, dst + got, want - got, off_t(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read", path, errno);
    }
    if (r == 0) return Status::OutOfRange(path + ": file shrank while reading");
    got += uint64_t(r);
  }
  return Status::OK();
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One chunk of one tensor, or (huff) `count` consecutive dctq-huff chunks decoded together.
struct Item {
  size_t t;       // index into specs
  size_t chunk;   // index into the tensor's chunks (the first one of a group)
  const OpenFile* file;
  bool direct;
  size_t count = 1;
  bool huff = false;
};

// A dctq-huff group's layout in a ring slot, the same offsets in the pinned slot and in the
// device scratch: the HuffChunk descriptors, then each chunk's stored bytes at a 4096-aligned
// offset (O_DIRECT reads land there), then (device only) the symbols of all chunks in row
// order, which is what LaunchDctqDecode reads for the group's band of rows.
struct HuffLayout {
  uint64_t pay_begin = 0, sym_off = 0, total = 0;
};
HuffLayout LayoutHuffGroup(const std::vector<ChunkEntry>& ch, size_t c0, size_t m) {
  HuffLayout L;
  L.pay_begin = AlignUp(m * sizeof(HuffChunk));
  uint64_t p = L.pay_begin, syms = 0;
  for (size_t k = 0; k < m; ++k) {
    p += AlignUp(ch[c0 + k].stored_size);
    syms += ch[c0 + k].decoded_size;
  }
  L.sym_off = p;
  L.total = p + syms;
  return L;
}

}  // namespace

Status Engine::EnsureHctResources() {
  if (!decode_pool_) {
    int n = opt_.decode_threads > 0 ? opt_.decode_threads
                                    : int(std::max(1u, std::thread::hardware_concurrency()));
    const int dev = device_;
    const bool gpu = placement_ == Placement::kDevice;
    decode_pool_ = std::make_unique<WorkerPool>(n, [dev, gpu](int) {
#if HCT_WITH_CUDA
      if (gpu) (void)cudaSetDevice(dev);
#endif
    });
    read_bufs_.assign(size_t(n), {nullptr, 0});
  }
  if (!hct_ring_) {
    hct_ring_ = ring_, hct_slot_bytes_ = slot_bytes_, hct_nslots_ = nslots_;
    hct_slot_events_ = slot_events_;
#if HCT_WITH_CUDA
    if (placement_ == Placement::kDevice && opt_.hct_slot_bytes > 0) {
      DeviceGuard g(device_);
      hct_slot_bytes_ = std::max<uint64_t>(opt_.hct_slot_bytes, slot_bytes_);
      hct_nslots_ = int(std::max<uint64_t>(2, opt_.hct_staging_bytes / hct_slot_bytes_));
      const uint64_t ring_bytes = hct_slot_bytes_ * uint64_t(hct_nslots_);
      void* p = nullptr;
      HCT_CHECK(cuda, cudaHostAlloc(&p, ring_bytes, cudaHostAllocDefault));
      hct_ring_ = static_cast<std::byte*>(p);
      hct_owns_ring_ = true;
      hct_slot_events_.clear();
      for (int i = 0; i < hct_nslots_; ++i) {
        cudaEvent_t ev;
        HCT_CHECK(cuda, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming | cudaEventBlockingSync));
        hct_slot_events_.push_back(ev);
      }
      stats_.pinned_staging_bytes += ring_bytes;
    }
#endif
  }
#if HCT_WITH_CUDA
  if (placement_ == Placement::kDevice && !dscratch_) {
    const uint64_t bytes = hct_slot_bytes_ * uint64_t(hct_nslots_);
    void* p = nullptr;
    HCT_CHECK(cuda, cudaMalloc(&p, bytes));
    dscratch_ = static_cast<std::byte*>(p);
    stats_.hct_device_scratch_bytes = bytes;
  }
#endif
  return Status::OK();
}

Status Engine::LoadHct(std::span<const TensorSpec> specs, std::span<const size_t> which,
                       std::byte* base, const std::vector<uint64_t>& offs) {
  HCT_RETURN_IF_ERROR(EnsureHctResources());
  // Items in tensor order, chunk order; O_DIRECT decided per file over its chunk ranges.
  std::map<const OpenFile*, std::vector<std::pair<uint64_t, uint64_t>>> ranges;
  std::vector<Item> items;
  const bool gpu = placement_ == Placement::kDevice;
  // How many chunks from c0 on form one dctq-huff GPU group (0: this chunk takes the generic
  // path, e.g. it alone does not fit a slot). Chunks join while they continue the previous
  // chunk's elements with one int8 symbol per element and the group fits one slot.
  auto huff_group = [&](const TensorSpec& s, size_t c0) -> size_t {
    if (!gpu || s.hct->decoder.codec() != kCodecDctqHuff) return 0;
    const std::vector<ChunkEntry>& ch = s.hct->entry->chunks;
    size_t m = 0;
    for (size_t c = c0; c < ch.size() && m < 65535; ++c) {
      if (ch[c].decoded_size != ch[c].elem_count) break;
      if (c > c0 && ch[c].elem_offset != ch[c - 1].elem_offset + ch[c - 1].elem_count) break;
      if (LayoutHuffGroup(ch, c0, c - c0 + 1).total > hct_slot_bytes_) break;
      m = c - c0 + 1;
    }
    return m;
  };
#if !HCT_WITH_CUDA
  (void)huff_group;
#endif
  for (size_t i : which) {
    const TensorSpec& s = specs[i];
    const OpenFile* f = files_.at(s.path).get();
    for (const ChunkEntry& c : s.hct->entry->chunks) ranges[f].emplace_back(c.offset, c.stored_size);
    for (size_t c = 0; c < s.hct->entry->chunks.size();) {
      size_t m = 0;
#if HCT_WITH_CUDA
      m = huff_group(s, c);
#endif
      if (m > 0) {
        items.push_back({i, c, f, false, m, true});
        c += m;
      } else {
        items.push_back({i, c, f, false, 1, false});
        ++c;
      }
    }
  }
  std::map<const OpenFile*, bool> direct;
  for (auto& [f, r] : ranges) {
    bool d = f->direct_fd >= 0 && opt_.o_direct != ODirectMode::kOff &&
             (opt_.o_direct == ODirectMode::kOn || MostlyCold(*f, r));
    direct[f] = d;
  }
  for (Item& it : items) it.direct = direct[it.file];
  if (items.empty()) return Status::OK();

  const int64_t nslots = hct_nslots_;
  const int64_t n = int64_t(items.size());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int64_t> slot_done;
  for (int64_t k = 0; k < nslots; ++k) slot_done.push_back(k - nslots);
  bool abort = false;
  Status first_err;
  std::atomic<int64_t> next{0};
  uint64_t stored_bytes = 0, direct_bytes = 0, buffered_bytes = 0, verified = 0;
  double decode_s = 0;

  auto fail = [&](Status s) {
    std::lock_guard<std::mutex> l(mu);
    if (first_err.ok()) first_err = std::move(s);
    abort = true;
    cv.notify_all();
  };

  decode_pool_->Run([&](int worker) {
    auto& rb = read_bufs_[size_t(worker)];
    double my_decode = 0;
    for (int64_t j; (j = next.fetch_add(1)) < n;) {
      const Item& it = items[size_t(j)];
      const TensorSpec& s = specs[it.t];
      const HctRef& h = *s.hct;
      const ChunkEntry& c = h.entry->chunks[it.chunk];
      const std::string ctx = "tensor '" + s.name + "'";
      const std::string where = s.path + ": chunk " + std::to_string(it.chunk);
      const ChunkMeta meta(c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count);
      // 1. Read the stored bytes (chunk offsets are 4096-aligned; the aligned length may pass
      //    the end of the file, so only stored_size bytes are required).
      const uint64_t want = AlignUp(c.stored_size);
#if HCT_WITH_CUDA
      // dctq-huff on the GPU, a group of it.count chunks: the stored bytes go straight into the
      // pinned slot, are checked (stored XXH3, always: the symbols' checksum is not computed on
      // this path; header on the CPU), copied as they are with the descriptors in one copy and
      // decoded by the GPU (one batched Huffman launch, then dequant + IDCT over the rows).
      if (it.huff) {
        const std::vector<ChunkEntry>& chs = h.entry->chunks;
        const size_t slot = size_t(j % nslots);
        {
          std::unique_lock<std::mutex> l(mu);
          cv.wait(l, [&] { return abort || slot_done[slot] == j - nslots; });
          if (abort) return;
        }
        Status st = HCT_CALL_STATUS(
            cuda, cudaEventSynchronize(static_cast<cudaEvent_t>(hct_slot_events_[slot])));
        if (!st.ok()) return fail(st.WithContext(ctx));
        std::byte* host = hct_ring_ + slot * hct_slot_bytes_;
        std::byte* dev = dscratch_ + slot * hct_slot_bytes_;
        const HuffLayout L = LayoutHuffGroup(chs, it.chunk, it.count);
        auto* desc = reinterpret_cast<HuffChunk*>(host);
        const ChunkDecoder::DctqParams& q = h.decoder.dctq();
        uint64_t poff = L.pay_begin, soff = L.sym_off, max_sym = 0, group_stored = 0;
        for (size_t k = 0; k < it.count; ++k) {
          const ChunkEntry& cc = chs[it.chunk + k];
          const std::string cwhere = s.path + ": chunk " + std::to_string(it.chunk + k);
          const uint64_t cwant = AlignUp(cc.stored_size);
          std::byte* hp = host + poff;
          if (it.direct) {
            st = ReadAll(it.file->direct_fd, hp, cwant, cc.stored_size, cc.offset, s.path);
            if (!st.ok() && st.code() == Code::kIOError)
              st = ReadAll(it.file->fd, hp, cc.stored_size, cc.stored_size, cc.offset, s.path);
          } else {
            st = ReadAll(it.file->fd, hp, cc.stored_size, cc.stored_size, cc.offset, s.path);
          }
          if (!st.ok()) return fail(st.WithContext(ctx));
          const double t0 = Now();
          const uint64_t x = XXH3_64bits(hp, cc.stored_size);
          if (x != cc.xxh3) {
            char buf[128];
            std::snprintf(buf, sizeof buf,
                          "stored checksum mismatch: XXH3 %016llx, expected %016llx",
                          (unsigned long long)x, (unsigned long long)cc.xxh3);
            return fail(Status::Corruption(cwhere + ": " + buf).WithContext(ctx));
          }
          auto hdr = HuffParseHeader({hp, cc.stored_size});
          if (!hdr.ok()) return fail(hdr.status().WithContext(cwhere).WithContext(ctx));
          if (hdr->n != cc.decoded_size || hdr->substream != q.huff_substream)
            return fail(Status::Corruption(cwhere + ": huffman header does not match the chunk")
                            .WithContext(ctx));
          my_decode += Now() - t0;
          auto out_off = DTypeBytes(s.dtype, cc.elem_offset);
          auto out_len = DTypeBytes(s.dtype, cc.elem_count);
          if (!out_off || !out_len || *out_off + *out_len > s.length || q.cols == 0 ||
              cc.elem_offset % q.cols || cc.elem_count % q.cols)
            return fail(Status::Corruption(cwhere + ": lies outside the tensor").WithContext(ctx));
          desc[k] = HuffChunk{dev + poff, cc.stored_size, cc.decoded_size, dev + soff};
          max_sym = std::max(max_sym, cc.decoded_size);
          poff += cwant;
          soff += cc.decoded_size;
          group_stored += cc.stored_size;
        }
        const ChunkEntry& c0 = chs[it.chunk];
        const ChunkEntry& cl = chs[it.chunk + it.count - 1];
        auto stream = static_cast<cudaStream_t>(streams_[size_t(j) % streams_.size()]);
        st = HCT_CALL_STATUS(
            cuda, cudaMemcpyAsync(dev, host, L.sym_off, cudaMemcpyHostToDevice, stream));
        if (st.ok()) {
          HuffBatchArgs ha;
          ha.chunks = reinterpret_cast<const HuffChunk*>(dev);
          ha.count = uint32_t(it.count);
          ha.substream = q.huff_substream;
          ha.max_symbols = max_sym;
          st = LaunchHuffDecodeBatch(ha, reinterpret_cast<GpuStream>(stream));
        }
        if (st.ok()) {
          DctqDecodeArgs a;
          a.symbols = dev + L.sym_off;
          a.symbol_type = DType::kI8;
          a.step = q.step;
          a.rows = q.rows;
          a.cols = q.cols;
          a.row_begin = c0.elem_offset / q.cols;
          a.row_end = (cl.elem_offset + cl.elem_count) / q.cols;
          a.transform = q.dct ? GpuTransform::kDct : GpuTransform::kNone;
          a.tile_rows = uint32_t(q.tile_r);
          a.tile_cols = uint32_t(q.tile_c);
          a.out_type = s.dtype;
          a.out = base + offs[it.t];
          st = LaunchDctqDecode(a, reinterpret_cast<GpuStream>(stream));
        }
        if (st.ok())
          st = HCT_CALL_STATUS(
              cuda, cudaEventRecord(static_cast<cudaEvent_t>(hct_slot_events_[slot]), stream));
        if (!st.ok()) return fail(st.WithContext(where).WithContext(ctx));
        std::lock_guard<std::mutex> l(mu);
        slot_done[slot] = j;
        stored_bytes += group_stored;
        (it.direct ? direct_bytes : buffered_bytes) += group_stored;
        verified += group_stored;
        cv.notify_all();
        continue;
      }
#endif
      if (rb.second < want) {
        std::free(rb.first);
        rb.first = static_cast<std::byte*>(std::aligned_alloc(kAlign, want));
        rb.second = rb.first ? want : 0;
        if (!rb.first) return fail(Status::ResourceExhausted("read buffer").WithContext(ctx));
      }
      Status st;
      if (it.direct) {
        st = ReadAll(it.file->direct_fd, rb.first, want, c.stored_size, c.offset, s.path);
        if (!st.ok() && st.code() == Code::kIOError)
          st = ReadAll(it.file->fd, rb.first, c.stored_size, c.stored_size, c.offset, s.path);
      } else {
        st = ReadAll(it.file->fd, rb.first, c.stored_size, c.stored_size, c.offset, s.path);
      }
      if (!st.ok()) return fail(st.WithContext(ctx));
      std::span<const std::byte> stored(rb.first, c.stored_size);
      if (opt_.verify) {
        uint64_t x = XXH3_64bits(stored.data(), stored.size());
        if (x != c.xxh3) {
          char buf[128];
          std::snprintf(buf, sizeof buf, "stored checksum mismatch: XXH3 %016llx, expected %016llx",
                        (unsigned long long)x, (unsigned long long)c.xxh3);
          return fail(Status::Corruption(where + ": " + buf).WithContext(ctx));
        }
      }
      auto out_off = DTypeBytes(s.dtype, c.elem_offset);
      auto out_len = DTypeBytes(s.dtype, c.elem_count);
      if (!out_off || !out_len || *out_off + *out_len > s.length)
        return fail(Status::Corruption(where + ": lies outside the tensor").WithContext(ctx));
      std::byte* out = base + offs[it.t] + *out_off;

      if (!gpu) {
        // 2'. CPU fallback: the reference decoder, straight into place.
        double t0 = Now();
        st = h.decoder.Decode(stored, meta, {out, *out_len});
        my_decode += Now() - t0;
        if (!st.ok()) return fail(st.WithContext(where).WithContext(ctx));
        std::lock_guard<std::mutex> l(mu);
        stored_bytes += c.stored_size;
        (it.direct ? direct_bytes : buffered_bytes) += c.stored_size;
        verified += c.decoded_size;
        continue;
      }
#if HCT_WITH_CUDA
      // 2. Wait for the ring slot (its previous copy and kernel finished).
      const size_t slot = size_t(j % nslots);
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return abort || slot_done[slot] == j - nslots; });
        if (abort) return;
      }
      st = HCT_CALL_STATUS(cuda,
                           cudaEventSynchronize(static_cast<cudaEvent_t>(hct_slot_events_[slot])));
      if (!st.ok()) return fail(st.WithContext(ctx));
      auto stream = static_cast<cudaStream_t>(streams_[size_t(j) % streams_.size()]);
      const bool fits = c.decoded_size <= hct_slot_bytes_;
      // A chunk larger than a slot (rare: chunk_bytes below the codec's chunks) decodes into
      // pageable memory and a stream-ordered device allocation.
      std::vector<std::byte> big;
      std::byte* host = fits ? hct_ring_ + slot * hct_slot_bytes_ : nullptr;
      if (!fits) {
        big.resize(c.decoded_size);
        host = big.data();
      }
      // 3. zstd -> symbols (lossy) or original bytes, checksum of the decoded form verified.
      double t0 = Now();
      st = h.decoder.DecodePayload(stored, meta, {host, c.decoded_size});
      my_decode += Now() - t0;
      if (!st.ok()) return fail(st.WithContext(where).WithContext(ctx));
      // 4. Upload; lossy: the kernel dequantizes (and inverse-transforms) in place.
      if (!h.lossy) {
        st = HCT_CALL_STATUS(cuda, cudaMemcpyAsync(out, host, c.decoded_size,
                                                   cudaMemcpyHostToDevice, stream));
      } else {
        void* sym = fits ? static_cast<void*>(dscratch_ + slot * hct_slot_bytes_) : nullptr;
        if (!fits) st = HCT_CALL_STATUS(cuda, cudaMallocAsync(&sym, c.decoded_size, stream));
        if (st.ok())
          st = HCT_CALL_STATUS(cuda, cudaMemcpyAsync(sym, host, c.decoded_size,
                                                     cudaMemcpyHostToDevice, stream));
        if (st.ok()) {
          const ChunkDecoder::DctqParams& q = h.decoder.dctq();
          DctqDecodeArgs a;
          a.symbols = sym;
          a.symbol_type = q.symbol_bits == 8 ? DType::kI8 : DType::kI16;
          a.step = q.step;
          a.rows = q.rows;
          a.cols = q.cols;
          a.row_begin = c.elem_offset / q.cols;
          a.row_end = a.row_begin + c.elem_count / q.cols;
          a.transform = q.dct ? GpuTransform::kDct : GpuTransform::kNone;
          a.tile_rows = uint32_t(q.tile_r);
          a.tile_cols = uint32_t(q.tile_c);
          a.out_type = s.dtype;
          a.out = base + offs[it.t];
          st = LaunchDctqDecode(a, reinterpret_cast<GpuStream>(stream));
        }
        if (!fits && sym) {
          Status f = HCT_CALL_STATUS(cuda, cudaFreeAsync(sym, stream));
          if (st.ok()) st = f;
        }
      }
      if (st.ok())
        st = HCT_CALL_STATUS(cuda,
                             cudaEventRecord(static_cast<cudaEvent_t>(hct_slot_events_[slot]), stream));
      if (!st.ok()) return fail(st.WithContext(where).WithContext(ctx));
      std::lock_guard<std::mutex> l(mu);
      slot_done[slot] = j;
      stored_bytes += c.stored_size;
      (it.direct ? direct_bytes : buffered_bytes) += c.stored_size;
      verified += c.decoded_size;
      cv.notify_all();
#endif
    }
    std::lock_guard<std::mutex> l(mu);
    decode_s += my_decode;
  });
  stats_.bytes_o_direct += direct_bytes;
  stats_.bytes_buffered += buffered_bytes;
  stats_.bytes_verified += verified;
  stats_.bytes_hct_stored += stored_bytes;
  stats_.hct_decode_thread_seconds += decode_s;
  HCT_RETURN_IF_ERROR(first_err);
  for (size_t i : which) {
    ++stats_.loads_hct;
    stats_.bytes_hct_decoded += specs[i].length;
    stats_.hct_chunks += specs[i].hct->entry->chunks.size();
  }
  return Status::OK();
}

}  // namespace hct::detail
