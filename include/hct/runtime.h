// hct/runtime.h: streaming tensors from files (cache entries or safetensors) to the GPU, or to
// host memory when there is no GPU (same API).
//
// A load reads a tensor (a TensorSpec: what it is, and its source) into device memory that the
// caller gives or the runtime allocates. Byte ranges (FileRange) load two ways:
//  - resident: the file is mmapped and cudaHostRegister'ed (read-only) once, within
//    RuntimeOptions::resident_budget of locked memory; every load is then one cudaMemcpyAsync
//    straight from the page cache (DMA, no CPU copy).
//  - one-shot: io_threads threads pread (O_DIRECT when the range is not in the page cache) into a
//    ring of pinned staging buffers allocated once (staging_bytes), each chunk copied to the GPU
//    with cudaMemcpyAsync on `streams` internal streams while the next chunks are read. Pinned
//    memory stays within the ring whatever the model size.
// Checksums are verified on the way: block checksums (FileRange::block_xxh3) by each I/O thread
// for the pieces it read, in parallel; otherwise the whole-tensor XXH3-64 (FileRange::xxh3) in
// piece order. A mismatch is Code::kCorruption "<file>: tensor '<name>': ... checksum mismatch"
// and no handle is handed out. The library never prints: problems come back as Status, and
// what it worked around (a refused registration, a cache fallback) in RuntimeStats.
//
// Ordering: Load() returns once every copy is enqueued (the file reads of a one-shot load are done
// by then; the DMA may still run). The handle's event is recorded on the caller's stream after
// those copies, and the caller's stream itself is ordered after them, so work enqueued on that
// stream, or on a stream that cudaStreamWaitEvent()s the event, sees the data. Wait() blocks the
// host on that event only. The runtime never synchronizes the device.
//
// Compressed tensors (Catalog::FromHct): chunks are read (pread, O_DIRECT when cold), verified and
// zstd-decoded by decode_threads CPU threads into the same pinned ring; quantized symbols are
// copied to a device scratch ring and LaunchDctqDecode writes the tensor in its original dtype in
// place; lossless chunks are decoded to their original bytes on the CPU and copied. Host
// placement decodes with the CPU reference decoder. Cache tensors (Catalog::FromCache, or
// FromHct with a cache) are leased while loading and while loaded, and their reads recorded.
//
// Settings: RuntimeOptions, overlaid with the HCT_* environment variables by
// RuntimeOptions::FromEnv; the one table of them (name, default, meaning) is docs/runtime.md
// "Settings".
//
// Thread safety: a Runtime may be used from several threads; one-shot loads share the staging
// ring and run one at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hct/dlpack.h"
#include "hct/dtype.h"
#include "hct/status.h"

namespace hct {

class Cache;

// A tensor's bytes as they are in a file, and their checksums.
struct FileRange {
  std::string path;     // the file
  uint64_t offset = 0;  // absolute file offset of the first byte
  std::optional<uint64_t> xxh3;  // XXH3-64 of the tensor's bytes; nullopt: nothing to verify
  // Optional block checksums: XXH3-64 of each `block_bytes` block counted from the tensor's first
  // byte (the last one may be shorter), as hct::BlockXxh3 computes them. When present (and the
  // count matches), one-shot loads verify every piece on the thread that read it, in parallel,
  // instead of one sequential XXH3 over the tensor (`xxh3` is then not recomputed).
  std::vector<uint64_t> block_xxh3;
  uint64_t block_bytes = 0;  // a multiple of 4096 when block_xxh3 is set
  // Strided ranges (a slice along the trailing dimension, hct/runtime.h LoadSlice): when
  // row_bytes > 0, the tensor's bytes are rows of row_bytes bytes, row i at offset + i *
  // row_pitch (row_pitch >= row_bytes), packed back to back in the destination. Such a range
  // carries no checksums (xxh3 and block_xxh3 unset) and is read one-shot and buffered.
  uint64_t row_bytes = 0;
  uint64_t row_pitch = 0;
};

// Where a tensor's bytes come from (opaque): a byte range of a file (FileSource), a cache entry
// (Catalog::FromCache), an HCT tensor (Catalog::FromHct), or a cache entry with the HCT tensor
// to fall back on (FromHct with a cache). Which one a load reads is decided per load: a cache
// entry that is gone or fails its checksum is decoded from the HCT source instead.
class TensorSource;
std::shared_ptr<const TensorSource> FileSource(FileRange range);

// What a tensor is, and where its bytes come from.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  int layer = -1;       // layer number, -1 for tensors outside the layers
  uint64_t length = 0;  // bytes; must equal shape x dtype
  std::shared_ptr<const TensorSource> source;

  // The byte range read when the tensor is read as it is (a file range or a cache entry);
  // nullptr for a tensor that only has a compressed source.
  const FileRange* file() const;
  // The file a load reads first: file()->path, else the HCT file; "" without a source.
  const std::string& path() const;
  bool from_cache() const;             // the range is a cache entry (leased, access recorded)
  bool has_compressed_source() const;  // an HCT tensor to decode (alone or as the fallback)
};

enum class ODirectMode { kOff, kOn, kAuto };
enum class Placement { kHost, kDevice };

struct RuntimeOptions {
  uint64_t staging_bytes = 256ull << 20;  // the pinned ring, in total
  // One read / one copy; a multiple of 4096. Block checksums (8 MiB in the cache) are verified
  // per piece when a block fits a slot: 8M does for 4096-aligned tensors (cache entries).
  uint64_t chunk_bytes = 8ull << 20;
  // Compressed (HCT) loads on a GPU use their own pinned ring and device scratch, made on the
  // first such load: hct_staging_bytes in slots of hct_slot_bytes. A slot holds a group of
  // chunks that one batched Huffman launch decodes; large groups keep the GPU busy (on an H100,
  // 8 MiB slots gave 1.4x the raw warm load, 64 MiB slots 3.8-4.1x: docs/BENCHMARKS.md).
  // hct_slot_bytes = 0: compressed loads share the raw ring above (chunk_bytes slots).
  uint64_t hct_slot_bytes = 64ull << 20;
  uint64_t hct_staging_bytes = 1ull << 30;
  int io_threads = 16;  // best one-shot point measured on a 16-core H100 host (docs/BENCHMARKS.md)
  int decode_threads = 0;  // compressed path: read + zstd threads; 0: hardware concurrency
  int streams = 2;
  // Compressed loads on a GPU: the kernels of a group of chunks (Huffman, dequantize + inverse
  // transform, bf16 merge) run on one of hct_decode_streams streams of their own, after the
  // group's copy on a copy stream, so that the copy of the next groups goes on while a group
  // decodes; 0: the kernels follow the copy on the copy stream (one group copies or decodes).
  int hct_decode_streams = 4;
  // Compressed loads on a GPU from the page cache: a dctq-huff / bf16-huff chunk is read and its
  // stored XXH3 hashed in steps of this many bytes, each step hashed right after its read
  // (while it is in the core's cache); 0: one read of the chunk, then its hash. A multiple of
  // 4096.
  uint64_t hct_hash_step_bytes = 256ull << 10;
  // Compressed loads on a GPU: times every group's copy and kernels with CUDA events and adds
  // them to RuntimeStats::hct_gpu_* (each load then waits for its GPU work; for benchmarks).
  bool hct_profile = false;
  // GPU one-shot, buffered reads: when > 0, each piece is read in steps of this many bytes and
  // each step's copy is enqueued right after its read (while the step is in the CPU cache, and
  // overlapping the rest of the read); 0: one copy per piece once it is read.
  uint64_t copy_step_bytes = 0;
  ODirectMode o_direct = ODirectMode::kAuto;
  bool verify = true;
  uint64_t resident_budget = 0;  // bytes of files to keep mapped + registered; 0: no resident mode
  int device = 0;
  bool force_host = false;  // host placement even when a GPU is present

  // `base` overlaid with the HCT_* environment variables; InvalidArgument naming the variable
  // when one does not parse.
  static Result<RuntimeOptions> FromEnv(RuntimeOptions base);
  static Result<RuntimeOptions> FromEnv();
  Status Validate() const;
};

// Opaque CUDA handles so that this header needs no CUDA headers: cudaStream_t / cudaEvent_t.
using StreamHandle = void*;
using EventHandle = void*;

// One loaded tensor: where its bytes are and when they are there. Copies share the memory; the
// memory is released (or its layer-pool slot returned) when the last copy and the last DLPack
// export are gone.
class LoadedTensor {
 public:
  LoadedTensor() = default;
  // Made by the runtime only (Runtime::Load/LoadMany): a Key is defined inside the runtime, so
  // no one else can call this. `keep` owns the memory (and the event) while copies live.
  class Key;
  LoadedTensor(const Key&, std::shared_ptr<const TensorSpec> spec, void* data,
               std::shared_ptr<void> keep, EventHandle event, Placement placement, int device)
      : spec_(std::move(spec)), keep_(std::move(keep)), data_(data), event_(event),
        placement_(placement), device_(device) {}
  const TensorSpec& spec() const { return *spec_; }
  void* data() const { return data_; }
  uint64_t bytes() const { return spec_ ? spec_->length : 0; }
  Placement placement() const { return placement_; }
  int device() const { return device_; }
  // cudaEvent_t recorded on the caller's stream after the copies; null for host placement.
  EventHandle event() const { return event_; }
  // Blocks until the bytes are in place (cudaEventSynchronize on event()).
  Status Wait() const;
  // A DLManagedTensor sharing the memory (compact row-major); the consumer calls its deleter.
  // Wait() or order the consumer's stream on event() before reading it.
  Result<DLManagedTensor*> ToDLPack() const;
  bool valid() const { return data_ != nullptr || (spec_ && spec_->length == 0); }

 private:
  std::shared_ptr<const TensorSpec> spec_;
  std::shared_ptr<void> keep_;
  void* data_ = nullptr;
  EventHandle event_ = nullptr;
  Placement placement_ = Placement::kHost;
  int device_ = -1;
};

// Where LoadMany puts its tensors (PackOffsets layout).
struct LoadTarget {
  void* dst = nullptr;  // caller memory of dst_bytes (device for kDevice); null: allocated
  uint64_t dst_bytes = 0;
  // Called once when the last handle of the load (LoadedTensor, DLPack export) is gone, from
  // the thread that drops it (e.g. to return a slot of the caller's pool). Not called when the
  // load fails: the memory is then the caller's again at once.
  std::function<void()> on_release;
  // A cudaEvent_t that the copies must follow too (besides the caller's stream); may be null.
  EventHandle wait_before = nullptr;
};

struct RuntimeStats {
  Placement placement = Placement::kHost;
  int device = -1;
  uint64_t pinned_staging_bytes = 0;  // the ring (cudaHostAlloc)
  uint64_t registered_bytes = 0;      // resident files (cudaHostRegister'ed mappings)
  uint64_t resident_files = 0;
  // Resident files released (least recently used first) to make room for others in the budget.
  uint64_t resident_evictions = 0;
  uint64_t loads_resident = 0, loads_one_shot = 0;
  uint64_t bytes_resident = 0, bytes_one_shot = 0;
  uint64_t bytes_o_direct = 0, bytes_buffered = 0;
  uint64_t bytes_verified = 0;
  // Compressed path: tensors, their decoded bytes, stored (compressed) bytes read, chunks, and
  // time spent in zstd decoding summed over threads.
  uint64_t loads_hct = 0, bytes_hct_decoded = 0, bytes_hct_stored = 0, hct_chunks = 0;
  double hct_decode_thread_seconds = 0;
  uint64_t hct_device_scratch_bytes = 0;  // device ring for symbols
  uint64_t hct_bf16_gpu_chunks = 0;  // bf16-huff chunks decoded on the GPU (others: on the CPU)
  // Compressed tensors loaded from resident (mapped, registered) HCT files, and their stored
  // bytes DMA'd straight from the mapping (GPU) or decoded from it (host); included above.
  uint64_t loads_hct_resident = 0, bytes_hct_resident = 0;
  // With RuntimeOptions::hct_profile: GPU groups timed, the GPU time of their copies to the
  // device, Huffman decodes and dequantize (+ inverse transform; bf16: the whole decode)
  // kernels summed over groups, and each load's GPU span (first copy start to last kernel end)
  // summed over loads. copy / span near 1 means the link was kept busy.
  uint64_t hct_gpu_groups = 0;
  double hct_gpu_copy_seconds = 0, hct_gpu_huff_seconds = 0, hct_gpu_dequant_seconds = 0;
  double hct_gpu_span_seconds = 0;
  // Cache tensors: loads served by the cache, and loads that fell back to the compressed source
  // (entry evicted or corrupt).
  uint64_t loads_cache = 0, cache_fallbacks = 0;
  // One-time setup (rings, device scratch, decode threads, resident registration), made at
  // Create, by Prepare or on the first load that needs it: seconds spent, bytes allocated or
  // registered, and how many such allocations there were. Loads after the setup add none.
  double setup_seconds = 0;
  uint64_t setup_bytes = 0, setup_allocations = 0;
  // Memory for tensors: Runtime::Allocate and loads without a destination.
  uint64_t buffer_allocations = 0;
  std::string resident_fallback;  // why resident mode was last refused ("file: reason"), or empty
  // The last corrupt cache entry that was served from its compressed source instead, or empty.
  std::string cache_fallback_reason;
};

// Byte offset of each spec when `specs` are packed into one buffer (256-byte aligned), and the
// total in `*total`.
std::vector<uint64_t> PackOffsets(std::span<const TensorSpec> specs, uint64_t* total);

struct TensorSlice;  // below: a slice along the leading or trailing dimension

// Made by Create; the implementation is internal (runtime/runtime.cc over runtime/detail/).
class Runtime {
 public:
  // Picks the placement: device when CUDA is compiled in, a device is present and !force_host.
  // Makes the raw staging ring, the copy streams and the io threads (counted as setup).
  static Result<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options = {});
  virtual ~Runtime() = default;
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  virtual Placement placement() const = 0;
  virtual int device() const = 0;
  virtual const RuntimeOptions& options() const = 0;

  // Loads one tensor. `dst` (device memory for kDevice, host memory for kHost) must hold
  // spec.length bytes; null: the runtime allocates. `stream`: the caller's cudaStream_t (null:
  // the legacy default stream); ignored for host placement.
  Result<LoadedTensor> Load(const TensorSpec& spec, StreamHandle stream = nullptr,
                            void* dst = nullptr, uint64_t dst_bytes = 0);
  // Loads several tensors into one buffer (PackOffsets layout), sharing one event.
  Result<std::vector<LoadedTensor>> LoadMany(std::span<const TensorSpec> specs,
                                             StreamHandle stream = nullptr, void* dst = nullptr,
                                             uint64_t dst_bytes = 0);
  // LoadMany into `target`.
  virtual Result<std::vector<LoadedTensor>> LoadInto(std::span<const TensorSpec> specs,
                                                     StreamHandle stream,
                                                     const LoadTarget& target) = 0;
  // Memory in this runtime's placement (device memory on a GPU), freed when the last copy of
  // the pointer is dropped; e.g. the slots of a LayerStreamer.
  virtual Result<std::shared_ptr<void>> Allocate(uint64_t bytes) = 0;
  // The one-time setup that loads would otherwise do on first use, made now so that the first
  // load includes none of it (Create already made the raw ring, the copy streams and the io
  // threads): the compressed path's decode threads, its pinned ring and (GPU) its device
  // scratch. Counted in the setup_* stats; a second call does nothing.
  virtual Status Prepare() = 0;
  // The setup that loads of `specs` need, only that: the compressed path's resources (as
  // Prepare()) when a spec has a compressed source, with the decode threads' read buffers sized
  // for these tensors' chunks, and (resident_budget > 0) mapping and registering their files.
  virtual Status Prepare(std::span<const TensorSpec> specs) = 0;

  // Maps and registers `path` now (resident mode), verifying nothing yet. ResourceExhausted when
  // it does not fit the budget; Internal (with the CUDA error) when registration fails.
  virtual Status MakeResident(const std::string& path) = 0;
  virtual bool IsResident(const std::string& path) const = 0;
  // Unregisters and unmaps every resident file (waits for nothing: call after your loads are
  // done).
  virtual Status ReleaseResident() = 0;

  virtual RuntimeStats stats() const = 0;

  // Loads the slice `slice` of `spec` (tensor-parallel shards; docs/tensor-parallel.md), reading
  // only the bytes that hold it where the source allows: a contiguous range of a file or cache
  // entry (leading dimension), its rows' segments (trailing dimension), or the HCT chunks that
  // overlap the slice. The handle's spec() is the slice's (SliceOf). `dst`, `dst_bytes` and
  // `stream` as for Load. Implemented over LoadInto and Allocate (runtime/slice.cc).
  Result<LoadedTensor> LoadSlice(const TensorSpec& spec, const TensorSlice& slice,
                                 StreamHandle stream = nullptr, void* dst = nullptr,
                                 uint64_t dst_bytes = 0);

 protected:
  Runtime() = default;
};

// ------------------------------------------------------------------ tensor-parallel slices
// Which dimension a slice cuts: the leading one (dim 0: the output dimension of an [out, in]
// weight, column-parallel layers) or the trailing one (the last: the input dimension,
// row-parallel layers). A 1-D tensor's leading and trailing dimension are the same.
enum class SliceDim { kLeading = 0, kTrailing = 1 };

// Elements [start, start + length) of dimension `dim`, every other dimension whole.
struct TensorSlice {
  SliceDim dim = SliceDim::kLeading;
  int64_t start = 0;
  int64_t length = 0;
};

// How EvenSlice splits a dimension of n that `world` does not divide:
//  - kExact: InvalidArgument naming the tensor, n and world (what tensor-parallel layers need:
//    every rank the same shape);
//  - kChunk: as torch.chunk(world): parts of ceil(n / world), the last ones shorter or empty.
enum class SplitRule { kExact = 0, kChunk = 1 };

// Rank `rank`'s part of `spec`'s dimension `dim` split into `world` parts. InvalidArgument for
// a scalar, world < 1, rank outside [0, world), or (kExact) a dimension world does not divide.
Result<TensorSlice> EvenSlice(const TensorSpec& spec, SliceDim dim, int rank, int world,
                              SplitRule rule = SplitRule::kExact);
// The spec of the slice itself: the same name, dtype and layer, `dim` cut to slice.length, and
// its length in bytes (no source). InvalidArgument when the slice passes the dimension's end,
// and Unsupported when a sub-byte dtype's slice does not start and end on byte boundaries.
Result<TensorSpec> SliceOf(const TensorSpec& spec, const TensorSlice& slice);

// Where tensors come from: a list of TensorSpecs by name and by layer.
class Catalog {
 public:
  // A safetensors file or a Hugging Face folder of them (no checksums: nothing to verify).
  static Result<Catalog> FromSafetensors(const std::string& path);
  // The tensors of `model` in the warm cache at `cache_dir` (empty model: the cache's only
  // model). The index is opened without cleanup, concurrently with hct-cache; accesses are
  // recorded (batched) when the index is writable. Checksums come from the index.
  static Result<Catalog> FromCache(const std::string& cache_dir, const std::string& model = "");
  static Result<Catalog> FromCache(std::shared_ptr<Cache> cache, const std::string& model);
  // An HCT model folder (model.hct.index.json + *.hct) or one .hct file. With `cache_dir`, the
  // tensors that the cache holds for this source (the model whose source is `path`) load from
  // the cache while their entries are there and valid, the others from the HCT files.
  static Result<Catalog> FromHct(const std::string& path, const std::string& cache_dir = "");
  // Safetensors or HCT by DetectModelKind (hct/model.h): a folder with both is HCT.
  static Result<Catalog> Open(const std::string& path);
  static Catalog FromSpecs(std::vector<TensorSpec> specs);

  const std::vector<TensorSpec>& tensors() const { return specs_; }
  // nullptr when absent.
  const TensorSpec* Find(std::string_view name) const;
  // Number of layers: 1 + the highest layer number (0 when no tensor is in a layer).
  int num_layers() const;
  // The tensors of layer `i` in file order.
  std::vector<TensorSpec> Layer(int i) const;

 private:
  std::vector<TensorSpec> specs_;
  std::shared_ptr<const std::unordered_map<std::string, size_t>> by_name_;
};

// One layer handed out by LayerStreamer: its tensors live in one pool slot that returns to the
// pool when every tensor (and DLPack export) of the layer is dropped; the next load into the slot
// waits (on the GPU) for work the consumer enqueued on its stream before dropping them.
struct StreamedLayer {
  int index = -1;
  std::vector<LoadedTensor> tensors;
  const LoadedTensor* Find(std::string_view name) const;
};

// Iterates layers in order with `prefetch` layers loading ahead, in prefetch + 1 device buffers
// allocated once (each as large as the largest layer) and reused.
// Made by Create over the public Runtime API; the implementation is internal.
class LayerStreamer {
 public:
  // Allocates the slots (Runtime::Allocate) and does the runtime's one-time setup for these
  // layers (Runtime::Prepare) before the first layer loads.
  static Result<std::unique_ptr<LayerStreamer>> Create(Runtime* runtime,
                                                       std::vector<std::vector<TensorSpec>> layers,
                                                       int prefetch, StreamHandle stream);
  struct Options {
    int prefetch = 1;
    // prefetch 0 only: device bytes beyond the one slot. Layers then alternate between two
    // overlapping windows of one buffer (slot_bytes + extra_bytes); the next layer's tensors
    // outside the current layer's window load at once, the others once the current layer's
    // tensors they overlap are dropped (each tensor is released on its own in this mode). Give
    // the layers' tensors in the order the consumer uses them (and drops them).
    uint64_t extra_bytes = 0;
    // After the last layer, continue at layer 0 (the next token) without Restart().
    bool cyclic = false;
  };
  static Result<std::unique_ptr<LayerStreamer>> Create(Runtime* runtime,
                                                       std::vector<std::vector<TensorSpec>> layers,
                                                       const Options& options,
                                                       StreamHandle stream);
  virtual ~LayerStreamer() = default;
  LayerStreamer(const LayerStreamer&) = delete;
  LayerStreamer& operator=(const LayerStreamer&) = delete;
  // The next layer; OutOfRange after the last one. The first error of a prefetched load comes
  // out here, for the layer it belongs to.
  virtual Result<StreamedLayer> Next() = 0;
  // Starts again at layer 0 (the next token) in the same slots and through the same rings:
  // nothing is allocated. Layers still held stay valid (their slots are reused once dropped);
  // prefetched layers not handed out are dropped. Also clears an error.
  virtual Status Restart() = 0;
  // Restart() at `layer` (0 <= layer < num_layers()).
  virtual Status RestartAt(int layer) = 0;
  virtual int num_layers() const = 0;
  virtual uint64_t slot_bytes() const = 0;
  virtual int slots() const = 0;

 protected:
  LayerStreamer() = default;
};

// DLPack dtype of a safetensors dtype (bits per element, lanes 1); Unsupported for none.
Result<DLDataType> ToDLDataType(DType t);

}  // namespace hct
