/* hct/hct.h: the C API of libhct, for embedding from any language (ctypes, cffi, FFI).
 *
 * Every function returning int returns 0 (HCT_OK) or an hct_code; hct_last_error() then gives
 * the message of the calling thread's last failure. Handles are opaque. Streams and events are
 * cudaStream_t / cudaEvent_t passed as void*. Settings come from the HCT_* environment variables
 * (see libhct(3)). A runtime must outlive nothing it handed out: loaded tensors and DLPack exports
 * keep their memory alive by themselves.
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
 * the GPU when there is one). */
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

#ifdef __cplusplus
}  // extern "C"
#endif
#endif /* HCT_HCT_H_ */
