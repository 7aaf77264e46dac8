// runtime/detail/compressed.h: the compressed loader -- HCT chunks -> (pread, O_DIRECT when
// cold) -> stored checksum -> zstd decode on decode_threads CPU threads (symbol / byte checksum
// verified there) -> the compressed staging ring -> cudaMemcpyAsync -> (lossy) LaunchDctqDecode
// writing the original dtype in place. dctq-huff chunks skip the CPU decode and go in GROUPS of
// consecutive chunks of one tensor (as many as one ring slot holds): pread each into the pinned
// slot -> stored XXH3 + header check -> ONE cudaMemcpyAsync of descriptors + compressed bytes ->
// ONE LaunchHuffDecodeBatch -> LaunchDctqDecode over the group's rows; the copies go on the copy
// streams, the kernels on decode streams of their own (waiting for the group's copies), so
// that the link copies the next groups while one decodes. Host placement: the CPU reference
// decoder straight into the destination (internal).
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "runtime/detail/load_env.h"
#include "runtime/detail/lossless_gpu.h"
#include "runtime/detail/resident.h"
#include "runtime/detail/source_planner.h"
#include "runtime/detail/staging_ring.h"
#include "runtime/detail/worker_pool.h"

namespace hct::detail {

class CompressedLoader {
 public:
  // `raw`: the one-shot ring, shared when hct_slot_bytes is 0 or on the host path.
  CompressedLoader(const LoadEnv& env, const StagingRing& raw) : env_(env), raw_(raw) {}
  ~CompressedLoader();
  CompressedLoader(const CompressedLoader&) = delete;
  CompressedLoader& operator=(const CompressedLoader&) = delete;
  // The one-time setup, done on the first load when not before: decode threads, their read
  // buffers (each grown to `read_bytes` now when > 0), the pinned ring (its own unless shared)
  // and the device scratch ring.
  Status Prepare(uint64_t read_bytes = 0);
  // The read buffer a decode thread needs for the chunks of `h` that it reads itself (all on
  // the host path; on a GPU those not read straight into the ring): the largest cover.
  uint64_t ReadBytesFor(const HctRef& h) const;
  // Loads the reads in `which` (kCompressed); chunks of files resident in `resident` come from
  // their mappings (verified once per residency), the others are read.
  Status Load(const ReadPlan& plan, std::span<const size_t> which, const Destination& dst,
              ResidentFiles* resident = nullptr);

  const StagingRing& ring() const { return *ring_; }
  std::byte* scratch() const { return scratch_; }
  // bf16-huff groups' kernels and error words (runtime/detail/lossless_gpu.h); null on the host.
  LosslessGpu* lossless() const { return lossless_.get(); }
  WorkerPool& pool() { return *pool_; }
  // The stream the kernels of group g run on (cudaStream_t), or null: on the copy stream
  // (RuntimeOptions::hct_decode_streams 0, host placement).
  void* decode_stream(uint64_t g) const {
    return decode_.empty() ? nullptr : decode_[g % decode_.size()];
  }
  // Slot s's event recorded after its group's copies, waited for by the group's decode stream.
  void* copied_event(size_t s) const { return copied_[s]; }
  // The copy stream `to` waits for everything enqueued on the decode streams so far (so that
  // joining the copy streams joins the decode streams).
  Status JoinDecodeStreams(void* to) const;
  // Worker w's aligned read buffer, grown to at least `bytes` (a growth is counted as setup).
  Result<std::byte*> ReadBuffer(int w, uint64_t bytes);

 private:
  const LoadEnv& env_;
  const StagingRing& raw_;
  std::unique_ptr<WorkerPool> pool_;
  std::vector<std::pair<std::byte*, uint64_t>> read_bufs_;
  // Read buffer growths by the decode threads since the last CountGrowth (setup in the stats).
  std::atomic<uint64_t> grown_bytes_{0}, grown_count_{0};
  void CountGrowth();
  Status VerifyResident(const ReadPlan& plan, std::span<const size_t> which,
                        ResidentFiles& resident);
  std::unique_ptr<StagingRing> own_ring_;
  const StagingRing* ring_ = nullptr;
  std::byte* scratch_ = nullptr;  // device, ring-sized: symbols and Huffman workspaces
  std::unique_ptr<LosslessGpu> lossless_;
  std::vector<void*> decode_;  // cudaStream_t, hct_decode_streams of them
  std::vector<void*> joined_;  // cudaEvent_t, one per decode stream
  std::vector<void*> copied_;  // cudaEvent_t, one per ring slot (with decode streams)
  Status MakeDecodeStreams();
};

}  // namespace hct::detail
