// runtime/detail/lossless_gpu.h: lossless BF16 ("bf16-huff", docs/hct-format.md §5.5) on the
// compressed loader's GPU path (internal). A GROUP of chunks of one tensor (as many as one ring
// slot holds) is read like a dctq-huff group by the loader (runtime/detail/compressed.cc: units
// of chunks pread into the pinned slot at 4096-aligned offsets, or a resident file's mapping),
// each chunk checked here on the CPU (stored XXH3 + Bf16HuffParseHeader), the descriptors and
// payloads copied, then ONE LaunchHuffDecodeBatch of the exponent planes into the slot's device
// twin and ONE LaunchBf16MergeBatch writing the BF16 words in place (docs/kernels.md, "For the
// runtime's compressed loader"). The kernels' error word is copied back per slot and checked
// when the slot is next taken by a group or at the end of the load (Finish), so a payload the
// GPU finds inconsistent fails the load naming file, tensor and chunks; nothing is handed out.
// The CPU decoder (host placement, chunks too big for a slot) stays the reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hct/kernels.h"
#include "runtime/detail/load_env.h"
#include "runtime/detail/source_planner.h"
#include "runtime/detail/staging_ring.h"

namespace hct::detail {

// Whether the chunks of `h` are bf16-huff chunks the GPU path decodes (and reads into the ring
// itself, so the decode threads need no read buffer for them).
bool IsBf16HuffGpu(const HctRef& h, bool gpu);

// How many chunks from c0 on form one GPU group of tensor `r` within a slot of `slot_bytes`
// (0: this chunk takes the generic path, e.g. it alone does not fit a slot, or not bf16-huff).
size_t Bf16HuffGroupSize(const PlannedRead& r, size_t c0, uint64_t slot_bytes, bool gpu);

// A group's layout in the slot and its device twin (the same offsets): HuffChunk[count], then
// Bf16MergeChunk[count], payload k at payload(k) (4096-aligned), the copied prefix ends at
// copy_bytes, then the exponent planes (16-byte aligned each) to `bytes`.
struct Bf16HuffGroupLayout {
  uint64_t payload_begin = 0;
  uint64_t copy_bytes = 0;
  uint64_t bytes = 0;
};
Bf16HuffGroupLayout Bf16HuffLayoutOf(const std::vector<ChunkEntry>& ch, size_t c0, size_t count);

// Checks chunk ci of `r` whose stored bytes are at host address `stored` -- the stored XXH3
// when `hash` (always on the page-cache path: decoded_xxh3 is not recomputed on the GPU path, as
// for dctq-huff; the stored checksum covers the same information and the decode is
// deterministic; a resident file's chunks were hashed when it became resident),
// Bf16HuffParseHeader against the chunk and the tensor's sub-stream size, the element range
// inside the tensor -- and fills its two descriptors for a payload at device address
// `dev_payload`, exponent plane at `dev_exponents`, output in the tensor at `out`. Corruption
// names file, tensor and chunk.
Status CheckBf16HuffChunk(const PlannedRead& r, size_t ci, const std::byte* stored, bool hash,
                          const void* dev_payload, void* dev_exponents, std::byte* out,
                          HuffChunk* huff, Bf16MergeChunk* merge);

// One group's GPU work: chunks [chunk, chunk + count) of plan read `r`, whose descriptors and
// payloads the caller has copied (enqueued) to `dev` (the slot's device twin, laid out as
// Bf16HuffLayoutOf) on `stream`; `slot` is the ring slot it holds.
struct Bf16HuffGroupJob {
  const PlannedRead* r = nullptr;
  size_t chunk = 0, count = 0;
  size_t slot = 0;
  std::byte* dev = nullptr;
  uint64_t max_elements = 0;  // the largest chunk's elem_count
  void* stream = nullptr;     // cudaStream_t
};

// Per-slot error words of the bf16-huff kernels (device and pinned host), and which group
// each slot's word belongs to until it is checked. Owned by the CompressedLoader.
class LosslessGpu {
 public:
  LosslessGpu(const LoadEnv& env, const StagingRing& ring) : env_(env), ring_(ring) {}
  ~LosslessGpu();
  LosslessGpu(const LosslessGpu&) = delete;
  LosslessGpu& operator=(const LosslessGpu&) = delete;
  // The error words, once (counted as setup); before the load's items run (not thread-safe).
  Status Prepare();
  // Enqueues the group's kernels after the caller's copies: zero the slot's error word, ONE
  // LaunchHuffDecodeBatch of the exponent planes, ONE LaunchBf16MergeBatch into the tensor, the
  // word back to pinned memory, the slot's event. First checks the word of the slot's previous
  // group (its work has finished: the caller waited for the slot's event).
  Status Launch(const Bf16HuffGroupJob& job);
  // After every item of a load (also a failed one): waits for the slots whose error word is
  // unchecked and checks them; the first inconsistency found, or OK.
  Status Finish();

 private:
  struct Pending {
    bool active = false;
    std::string file, tensor;
    size_t chunk = 0, count = 0;
  };
  Status Check(size_t slot);  // the slot's GPU work has finished

  const LoadEnv& env_;
  const StagingRing& ring_;
  uint32_t* dev_err_ = nullptr;   // device, one word per slot
  uint32_t* host_err_ = nullptr;  // pinned, one word per slot
  std::vector<Pending> pending_;  // per slot; touched only by the slot's holder (RingTurns)
};

}  // namespace hct::detail
