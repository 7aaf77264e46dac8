#include "runtime/detail/one_shot.h"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <map>

#include "runtime/detail/file_reader.h"
#include "runtime/detail/verify.h"

#if HCT_WITH_CUDA
#include "hct/detail/check_cuda.h"
#endif

namespace hct::detail {
namespace {

// One read + one copy: bytes [file_off, file_off + n) of read `t`, landing at dst.
struct Piece {
  size_t t;
  const OpenFile* file;
  bool direct;
  uint64_t file_off, n;
  std::byte* dst;
  bool first, last;  // of its tensor
  bool strided;      // the range is rows of segments (FileRange::row_bytes): file_off is
                     // range offset + the piece's offset in the packed tensor
};

// Reads bytes [k0, k0 + n) of the packed rows of strided range `r` into `to`: one pread per row
// segment (a slice along the trailing dimension reads only its columns' bytes).
Status ReadStrided(const OpenFile& f, const FileRange& r, uint64_t k0, uint64_t n,
                   std::byte* to) {
  for (uint64_t k = k0; k < k0 + n;) {
    const uint64_t row = k / r.row_bytes, in = k % r.row_bytes;
    const uint64_t len = std::min(r.row_bytes - in, k0 + n - k);
    HCT_RETURN_IF_ERROR(ReadFully(f.fd, to + (k - k0), len, len,
                                  r.offset + row * r.row_pitch + in, r.path));
    k += len;
  }
  return Status::OK();
}

class OneShotRun {
 public:
  OneShotRun(const LoadEnv& env, const StagingRing& ring, const ReadPlan& plan)
      : env_(env), ring_(ring), plan_(plan), turns_(ring), block_piece_(plan.reads.size(), 0) {}
  ~OneShotRun() { XXH3_freeState(hs_); }
  void Cut(std::span<const size_t> which, const Destination& dst);
  Status Run();

 private:
  void Work();
  bool Piece1(int64_t j);
  Result<const std::byte*> Read(const Piece& p, std::byte* sbuf,
                                const std::function<Status(uint64_t)>& copy_upto);
  Status HashInOrder(int64_t j, const Piece& p, const std::byte* data);

  const LoadEnv& env_;
  const StagingRing& ring_;
  const ReadPlan& plan_;
  RingTurns turns_;
  std::vector<Piece> pieces_;
  std::vector<uint64_t> block_piece_;  // per read: piece bytes when verified by blocks, else 0
  bool baton_ = false;  // some tensor is verified by one sequential XXH3 (in piece order)
  int64_t hashed_ = 0;  // pieces [0, hashed_) are hashed
  XXH3_state_t* hs_ = XXH3_createState();
  std::atomic<int64_t> next_{0};
  uint64_t direct_bytes_ = 0, buffered_bytes_ = 0;
  std::atomic<uint64_t> verified_{0};
};

// Pieces: tensors in the given order, split at multiples of the slot size in file-offset space
// so that the 4096-aligned cover of a piece always fits one ring slot. Tensors verified by block
// checksums are split at whole blocks from the tensor start instead (each piece verified alone).
void OneShotRun::Cut(std::span<const size_t> which, const Destination& dst) {
  std::map<const OpenFile*, std::vector<std::pair<uint64_t, uint64_t>>> ranges;
  for (size_t i : which)
    if (plan_.reads[i].length() && !plan_.reads[i].range->row_bytes)
      ranges[plan_.reads[i].file].emplace_back(
        plan_.reads[i].range->offset, plan_.reads[i].length());
  std::map<const OpenFile*, bool> direct;
  for (auto& [f, r] : ranges) direct[f] = UseDirect(*f, env_.opt.o_direct, r);
  const uint64_t slot = ring_.slot_bytes();
  for (size_t i : which) {
    const PlannedRead& r = plan_.reads[i];
    if (r.length() == 0) continue;
    const uint64_t off = r.range->offset, end_all = off + r.length();
    const bool strided = r.range->row_bytes > 0;  // never O_DIRECT: segments are unaligned
    block_piece_[i] = BlockPieceBytes(*r.range, r.length(), env_.opt.verify, slot);
    if (!block_piece_[i] && env_.opt.verify && r.range->xxh3) baton_ = true;
    // Strided ranges are one pread per row segment: smaller pieces (>= 1 MiB) spread those
    // calls over all io threads.
    const uint64_t spiece = std::min(
        slot, std::max<uint64_t>(1 << 20, r.length() / (4 * uint64_t(env_.opt.io_threads))));
    for (uint64_t o = off; o < end_all;) {
      const uint64_t end = block_piece_[i] ? std::min(end_all, o + block_piece_[i])
                           : strided       ? std::min(end_all, o + spiece)
                                           : std::min(end_all, (o / slot + 1) * slot);
      pieces_.push_back({i, r.file, !strided && direct[r.file], o, end - o,
                         dst.at(i) + (o - off), o == off, end == end_all, strided});
      o = end;
    }
  }
}

Result<const std::byte*> OneShotRun::Read(const Piece& p, std::byte* sbuf,
                                          const std::function<Status(uint64_t)>& copy_upto) {
  const PlannedRead& r = plan_.reads[p.t];
  const bool gpu = env_.gpu();
  if (p.direct) {
    auto data = ReadRange(*p.file, true, sbuf, p.file_off, p.n);
    if (!data.ok()) return data.status().WithContext(TensorCtx(r.name()));
    return *data;
  }
  std::byte* to = gpu ? sbuf : p.dst;  // host placement: read straight into place
  if (p.strided) {
    Status st = ReadStrided(*p.file, *r.range, p.file_off - r.range->offset, p.n, to);
    if (!st.ok()) return st.WithContext(TensorCtx(r.name()));
    return to;
  }
  const uint64_t cstep = gpu ? env_.opt.copy_step_bytes : 0;
  if (block_piece_[p.t]) {
    // Block checksums: read and hash in small steps, each hashed while still in this core's
    // cache, so verification costs no second pass over memory.
    HCT_RETURN_IF_ERROR(
        ReadAndCheckBlocks(p.file->fd, to, p.file_off, p.n, r.name(), *r.range, cstep, copy_upto));
    verified_ += p.n;
    return to;
  }
  const uint64_t step = cstep ? cstep : p.n;
  for (uint64_t k = 0; k < p.n; k += step) {
    const uint64_t len = std::min(step, p.n - k);
    Status st = ReadFully(p.file->fd, to + k, len, len, p.file_off + k, r.range->path);
    if (st.ok() && cstep) st = copy_upto(k + len);
    if (!st.ok()) return st.WithContext(TensorCtx(r.name()));
  }
  return to;
}

// Every piece passes the baton in order, so `hashed_` counts a prefix of the pieces; only the
// thread holding piece `hashed_` touches the hash state.
Status OneShotRun::HashInOrder(int64_t j, const Piece& p, const std::byte* data) {
  // Aborted: the first error is already recorded, this one is dropped by RingTurns::Fail.
  if (!turns_.WaitFor([&] { return hashed_ == j; })) return Status::Internal("aborted");
  const PlannedRead& r = plan_.reads[p.t];
  const bool on = env_.opt.verify && r.range->xxh3.has_value() && !block_piece_[p.t];
  if (on && p.first) XXH3_64bits_reset(hs_);
  if (on) XXH3_64bits_update(hs_, data, p.n);
  Status bad;
  if (on && p.last) {
    const uint64_t h = XXH3_64bits_digest(hs_);
    if (h != *r.range->xxh3) bad = ChecksumMismatch(r.range->path, r.name(), "", h, *r.range->xxh3);
  }
  turns_.Update([&] {
    if (on) verified_ += p.n;
    ++hashed_;
  });
  return bad;
}

// Piece j: wait for its slot, read (and verify), copy out. False when the load is over.
bool OneShotRun::Piece1(int64_t j) {
  const Piece& p = pieces_[size_t(j)];
  const PlannedRead& r = plan_.reads[p.t];
  size_t slot = 0;
  if (!turns_.Acquire(j, &slot, TensorCtx(r.name()))) return false;
  std::byte* sbuf = ring_.slot(slot);
  const bool gpu = env_.gpu();
  // Copy steps (GPU, buffered): the copy of bytes [enq, done) of the piece is enqueued as soon
  // as they are read; the slot's event is recorded after the last one.
  uint64_t enq = 0;
  std::function<Status(uint64_t)> copy_upto = [&](uint64_t done) -> Status {
#if HCT_WITH_CUDA
    if (done > enq) {
      auto cs = static_cast<cudaStream_t>(env_.streams.at(uint64_t(j)));
      HCT_CHECK(cuda, cudaMemcpyAsync(p.dst + enq, sbuf + enq, done - enq,
                                      cudaMemcpyHostToDevice, cs));
      enq = done;
    }
#endif
    (void)done;
    return Status::OK();
  };
  auto data = Read(p, sbuf, copy_upto);
  Status st = data.status();
  if (st.ok() && block_piece_[p.t] && p.direct) {
    // Block checksums: this thread verifies what it read, before anything is copied out.
    st = CheckBlocks(r.name(), *r.range, p.file_off - r.range->offset, *data, p.n);
    if (st.ok()) verified_ += p.n;
  }
  if (st.ok() && baton_) st = HashInOrder(j, p, *data);
  if (!st.ok()) {
    turns_.Fail(st);
    return false;
  }
#if HCT_WITH_CUDA
  if (gpu) {
    auto cs = static_cast<cudaStream_t>(env_.streams.at(uint64_t(j)));
    const bool stepped = !p.direct && !p.strided && env_.opt.copy_step_bytes;
    Status c = stepped ? copy_upto(p.n)
                       : HCT_CALL_STATUS(cuda, cudaMemcpyAsync(p.dst, *data, p.n,
                                                               cudaMemcpyHostToDevice, cs));
    if (c.ok())
      c = HCT_CALL_STATUS(cuda, cudaEventRecord(static_cast<cudaEvent_t>(ring_.event(slot)), cs));
    if (!c.ok()) {
      turns_.Fail(c.WithContext(TensorCtx(r.name())));
      return false;
    }
  }
#endif
  if (!gpu && p.direct) std::memcpy(p.dst, *data, p.n);
  turns_.Release(slot, j, [&] { (p.direct ? direct_bytes_ : buffered_bytes_) += p.n; });
  return true;
}

void OneShotRun::Work() {
  for (int64_t j; (j = next_.fetch_add(1)) < int64_t(pieces_.size());)
    if (!Piece1(j)) return;
}

Status OneShotRun::Run() {
  if (pieces_.empty()) return Status::OK();
  env_.io.Run([&](int) { Work(); });
  env_.stats.bytes_o_direct += direct_bytes_;
  env_.stats.bytes_buffered += buffered_bytes_;
  env_.stats.bytes_verified += verified_.load();
  return turns_.status();
}

}  // namespace

Status LoadOneShot(const LoadEnv& env, const StagingRing& ring, const ReadPlan& plan,
                   std::span<const size_t> which, const Destination& dst) {
  OneShotRun run(env, ring, plan);
  run.Cut(which, dst);
  HCT_RETURN_IF_ERROR(run.Run());
  for (size_t i : which) {
    ++env.stats.loads_one_shot;
    env.stats.bytes_one_shot += plan.reads[i].length();
  }
  return Status::OK();
}

}  // namespace hct::detail
