/* hct/hct.h: the C API of libhct, for embedding from any language (ctypes, cffi, FFI).
 *
 * Every function returning int returns 0 (HCT_OK) or an hct_code; hct_last_error() then gives
 * the message of the calling thread's last failure. Handles are opaque. Streams and events are
 * cudaStream_t / cudaEvent_t passed as void*. Settings come from the HCT_* environment variables
 * (the one table of them: docs/runtime.md "Settings"; libhct(3)). A runtime must outlive nothing
 * it handed out: loaded tensors and DLPack exports keep their memory alive by themselves.
 *
 *   hct_runtime* rt; hct_tensor* t; DLManagedTensor* m;
 *   hct_open("model.safetensors", &rt);
 *   hct_load(rt, "model.layers.0.mlp.up_proj.weight", stream, NULL, 0, &t);
 *   hct_tensor_wait(t);  (or cudaStreamWaitEvent(other, hct_tensor_event(t), 0))
 *   hct_tensor_to_dlpack(t, &m);  ... torch.from_dlpack ...
 *   hct_tensor_free(t); hct_close(rt);
 */
#ifndef HCT_HCT_H_
#define HCT_HCT_H_

#include <stddef.h>
#include <stdint.h>

#include "hct/dlpack.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The values of hct::Code. */
enum hct_code {
  HCT_OK = 0,
  HCT_INVALID_ARGUMENT = 1,
  HCT_NOT_FOUND = 2,
  HCT_CORRUPTION = 3,
  HCT_IO_ERROR = 4,
  HCT_UNSUPPORTED = 5,
  HCT_OUT_OF_RANGE = 6,
  HCT_ALREADY_EXISTS = 7,
  HCT_BUSY = 8,
  HCT_RESOURCE_EXHAUSTED = 9,
  HCT_INTERNAL = 10,
};

#define HCT_MAX_DIMS 8

typedef struct hct_runtime hct_runtime;
typedef struct hct_tensor hct_tensor;

typedef struct {
  const char* name;  /* valid while the runtime is open */
  const char* dtype; /* safetensors name: "BF16", "F32", ... */
  int32_t ndim;
  int64_t shape[HCT_MAX_DIMS];
  uint64_t nbytes;
  int32_t layer; /* -1 outside the layers */
} hct_tensor_info;

/* Opens a safetensors file or a Hugging Face folder of them, or an HCT model (a folder written
 * by hct-convert, a folder of .hct files, or one .hct file: tensors are decoded on the way, on
 * the GPU when there is one). A folder holding both .hct and .safetensors files is HCT, as for
 * hct-cache and hct-convert (DetectModelKind, hct/model.h). */
int hct_open(const char* path, hct_runtime** out);
/* Opens model `model` of the warm cache at `cache_dir` (model NULL or "": the cache's only
 * model). Entry files are leased while tensors load and while they are loaded. */
int hct_open_cache(const char* cache_dir, const char* model, hct_runtime** out);
/* Opens an HCT model; with cache_dir (may be NULL), tensors the cache holds warm for this source
 * load from the cache, the others from the HCT files. */
int hct_open_hct(const char* path, const char* cache_dir, hct_runtime** out);

/* Counters of a runtime (see hct::RuntimeStats). */
typedef struct {
  uint64_t pinned_staging_bytes;
  uint64_t loads_resident, loads_one_shot, loads_hct, loads_cache, cache_fallbacks;
  uint64_t bytes_hct_stored, bytes_hct_decoded;
  /* Host and device memory held: registered (resident) file bytes and files, device scratch of
   * the compressed path. */
  uint64_t registered_bytes, resident_files, hct_device_scratch_bytes;
} hct_stats;
int hct_runtime_stats(const hct_runtime* rt, hct_stats* out);
void hct_close(hct_runtime* rt);
/* 1: tensors land in CUDA device memory; 0: in host memory (no GPU or HCT_FORCE_HOST=1). */
int hct_on_device(const hct_runtime* rt);
int64_t hct_num_tensors(const hct_runtime* rt);
int hct_tensor_info_at(const hct_runtime* rt, int64_t index, hct_tensor_info* out);
int hct_lookup(const hct_runtime* rt, const char* name, hct_tensor_info* out);

/* Loads tensor `name`. dst: memory of nbytes (NULL: the runtime allocates); stream: cudaStream_t
 * (NULL: the default stream). Returns once the copies are enqueued; see hct_tensor_wait. */
int hct_load(hct_runtime* rt, const char* name, void* stream, void* dst, uint64_t dst_bytes,
             hct_tensor** out);
/* Blocks until the tensor's bytes are in place. */
int hct_tensor_wait(hct_tensor* t);
/* cudaEvent_t recorded after the copies (NULL on host). */
void* hct_tensor_event(const hct_tensor* t);
void* hct_tensor_data(const hct_tensor* t);
uint64_t hct_tensor_nbytes(const hct_tensor* t);
/* A new DLManagedTensor sharing the memory; the consumer calls its deleter. */
int hct_tensor_to_dlpack(const hct_tensor* t, DLManagedTensor** out);
void hct_tensor_free(hct_tensor* t);

/* The calling thread's last error message ("" when none). */
const char* hct_last_error(void);
/* "Corruption", "Not found", ... */
const char* hct_code_name(int code);


/* ---- Added for the Python package (python/hct), usable from any language. ---- */

/* The library version, "MAJOR.MINOR.PATCH" (static storage). */
const char* hct_version(void);

/* Parses a size written by a person ("4GiB", "512M", "1.5T", "4096"; powers of 1024) with the
 * rule every HCT tool and HCT_* variable uses. Returns HCT_INVALID_ARGUMENT for anything else. */
int hct_parse_size(const char* text, uint64_t* out);

/* Runtime settings as a struct (the fields of hct::RuntimeOptions; their HCT_* variables,
 * defaults and meaning: the table in docs/runtime.md "Settings"). Fill with hct_options_default
 * (built-in defaults) or hct_options_from_env (defaults overlaid with HCT_*), change fields, pass
 * to hct_open_ex. struct_size must be sizeof(hct_options): fields appended later stay at their
 * defaults for older callers. */
typedef struct {
  uint32_t struct_size;
  uint64_t staging_bytes, chunk_bytes, hct_slot_bytes, hct_staging_bytes, copy_step_bytes;
  int32_t io_threads, decode_threads, streams;
  int32_t o_direct; /* 0 off, 1 on, 2 auto */
  int32_t verify;   /* 0 / 1 */
  uint64_t resident_budget;
  int32_t device;
  int32_t force_host; /* 0 / 1 */
} hct_options;
int hct_options_default(hct_options* out);
int hct_options_from_env(hct_options* out);
/* hct_open / hct_open_cache with explicit settings (opt NULL: the HCT_* variables). */
int hct_open_ex(const char* path, const hct_options* opt, hct_runtime** out);
int hct_open_cache_ex(const char* cache_dir, const char* model, const hct_options* opt,
                      hct_runtime** out);
/* hct_open_hct with explicit settings: an HCT file or folder whose tensors load from the warm
 * cache at cache_dir (NULL or "": none) while their entries are there and valid. */
int hct_open_hct_ex(const char* path, const char* cache_dir, const hct_options* opt,
                    hct_runtime** out);

/* Loads n tensors into one buffer (dst, or allocated when NULL), sharing one event; out[i] gets
 * names[i]'s handle. On failure no handle is handed out. */
int hct_load_many(hct_runtime* rt, const char* const* names, int64_t n, void* stream, void* dst,
                  uint64_t dst_bytes, hct_tensor** out);

/* Maps and registers a file for resident loads (needs resident_budget > 0). */
int hct_make_resident(hct_runtime* rt, const char* path);
int hct_release_resident(hct_runtime* rt);

/* Layer streaming (hct::LayerStreamer over the catalog's layers 0..n-1): prefetch + 1 slots
 * allocated at create, reused; the layers load on `stream`'s order in the background. */
typedef struct hct_streamer hct_streamer;
int hct_streamer_create(hct_runtime* rt, int prefetch, void* stream, hct_streamer** out);
int hct_streamer_num_layers(const hct_streamer* s);
/* Tensors in a layer (the most over all layers): the capacity hct_streamer_next needs. */
int64_t hct_streamer_max_tensors(const hct_streamer* s);
uint64_t hct_streamer_slot_bytes(const hct_streamer* s);
/* The next layer: *index, and *n handles in out[0..cap) (free each with hct_tensor_free; the
 * slot returns when all are freed and their DLPack exports dropped). HCT_OUT_OF_RANGE after the
 * last layer. */
int hct_streamer_next(hct_streamer* s, int* index, hct_tensor** out, int64_t cap, int64_t* n);
/* Starts again at layer 0 (the next token) in the same slots and staging rings
 * (hct::LayerStreamer::Restart: nothing is allocated). Held layers stay valid; prefetched layers
 * not handed out are dropped. */
int hct_streamer_restart(hct_streamer* s);
void hct_streamer_free(hct_streamer* s);
/* hct_streamer_create with more settings (hct::LayerStreamer::Options). struct_size must be
 * sizeof(hct_stream_options). num_layers > 0: the layers are the given names, layer i being the
 * next layer_sizes[i] entries of names, in the order the consumer uses (and drops) them;
 * num_layers 0: the catalog's layers. extra_bytes (prefetch 0 only): device bytes beyond the one
 * slot, shared by two overlapping windows; each tensor is then released on its own when its
 * handle and exports are dropped, and the next layer's tensors load as soon as the bytes they
 * land on are free. cyclic: after the last layer continue at the first (the next token). */
typedef struct {
  uint32_t struct_size;
  int32_t prefetch;
  uint64_t extra_bytes;
  int32_t cyclic;
  int64_t num_layers;
  const int64_t* layer_sizes;
  const char* const* names;
} hct_stream_options;
int hct_streamer_create_ex(hct_runtime* rt, const hct_stream_options* opt, void* stream,
                           hct_streamer** out);
/* hct_streamer_restart at layer `layer` (0 <= layer < hct_streamer_num_layers). */
int hct_streamer_restart_at(hct_streamer* s, int layer);

/* Cache maintenance (hct::Cache, thin). progress (may be NULL): done / total bytes, called from
 * worker threads one at a time. */
typedef void (*hct_progress_fn)(uint64_t done_bytes, uint64_t total_bytes, void* user);
int hct_cache_warm(const char* cache_dir, const char* source, const char* tensors_glob,
                   hct_progress_fn progress, void* user);
/* deep: 0 quick, 1 deep; *problems: the number of problems found (0: clean). */
int hct_cache_verify(const char* cache_dir, const char* model, int deep, hct_progress_fn progress,
                     void* user, int64_t* problems);
/* Evicts `model`'s unpinned entries (model NULL or "": every unpinned entry). */
int hct_cache_evict(const char* cache_dir, const char* model, uint64_t* bytes_freed);
/* The models, as newline-separated "name\tbytes\tsource" lines in the calling thread's buffer
 * (valid until its next hct_cache_ls). */
int hct_cache_ls(const char* cache_dir, const char** out);

/* ---- Engines shared between models (what python/hct keeps across load_file calls). ---- */

/* A runtime with no tensors: its engine (the pinned ring, streams, I/O threads, open files,
 * resident registrations within opt->resident_budget) is made once and shared by the models
 * hct_open_on opens on it. opt NULL: the HCT_* variables. */
int hct_runtime_create(const hct_options* opt, hct_runtime** out);
/* What hct_open_on opens: HCT_SOURCE_AUTO, path a safetensors file or folder or an HCT model
 * (arg unused, as hct_open); HCT_SOURCE_CACHE, path a cache directory and arg the model (as
 * hct_open_cache); HCT_SOURCE_HCT, path an HCT model and arg a cache directory or NULL (as
 * hct_open_hct). */
enum hct_source { HCT_SOURCE_AUTO = 0, HCT_SOURCE_CACHE = 1, HCT_SOURCE_HCT = 2 };
/* Opens a model on the engine of `base` instead of a new one: no ring is allocated, and files
 * the engine has open or resident stay so. The engine lives until the last runtime on it is
 * closed (closing `base` first is fine). The engine keeps files open by path: a file replaced
 * or rewritten under the same path is read through the descriptor it opened first, so open
 * such files on a new engine. */
int hct_open_on(const hct_runtime* base, int kind, const char* path, const char* arg,
                hct_runtime** out);
/* The tensor's name (valid while the handle lives; "" for NULL). */
const char* hct_tensor_name(const hct_tensor* t);
/* The layout hct_load_many gives n tensors in one buffer: offsets[i] (bytes from its start)
 * and *total, the bytes a caller-given dst must hold. */
int hct_pack_offsets(const hct_runtime* rt, const char* const* names, int64_t n,
                     uint64_t* offsets, uint64_t* total);

/* ---- Tensor-parallel slices (hct::Runtime::LoadSlice; docs/tensor-parallel.md). ---- */

/* The dimension a slice cuts: the leading one (dim 0) or the trailing one (the last). */
enum hct_slice_dim { HCT_SLICE_LEADING = 0, HCT_SLICE_TRAILING = 1 };
/* A dimension `world` does not divide: HCT_SPLIT_EXACT fails (HCT_INVALID_ARGUMENT);
 * HCT_SPLIT_CHUNK splits as torch.chunk (parts of ceil(n / world), the last shorter or empty). */
enum hct_split_rule { HCT_SPLIT_EXACT = 0, HCT_SPLIT_CHUNK = 1 };
/* Rank `rank`'s part [*start, *start + *length) of tensor `name`'s dimension `dim` split into
 * `world` parts by `rule`. */
int hct_even_slice(const hct_runtime* rt, const char* name, int dim, int rank, int world,
                   int rule, int64_t* start, int64_t* length);
/* Loads elements [start, start + length) of dimension `dim` of tensor `name` (every other
 * dimension whole), reading only the bytes (or HCT chunks) that hold them where the source
 * allows (docs/tensor-parallel.md). dst, dst_bytes, stream and the handle as for hct_load; the
 * handle's nbytes and shape are the slice's. */
int hct_load_slice(hct_runtime* rt, const char* name, int dim, int64_t start, int64_t length,
                   void* stream, void* dst, uint64_t dst_bytes, hct_tensor** out);
/* The loaded tensor's shape: *ndim and shape[0..ndim) (HCT_MAX_DIMS entries). */
int hct_tensor_shape(const hct_tensor* t, int32_t* ndim, int64_t* shape);
/* Bytes the runtime has read so far: *file_bytes of byte ranges (safetensors, cache entries:
 * resident and one-shot loads) and *hct_stored_bytes of HCT chunks (either may be NULL). */
int hct_runtime_bytes_read(const hct_runtime* rt, uint64_t* file_bytes,
                           uint64_t* hct_stored_bytes);

#ifdef __cplusplus
}  // extern "C"
#endif
#endif /* HCT_HCT_H_ */
