/* hct/dlpack.h: the DLPack ABI (v0.8 and v1.x share these layouts), written for HCT from the
 * public specification (https://dmlc.github.io/dlpack/latest/). Only what HCT produces is
 * declared. When a framework's own dlpack.h is also included, define HCT_DLPACK_EXTERNAL before
 * including this header and include the framework's first: the layouts are the same ABI. */
#ifndef HCT_DLPACK_H_
#define HCT_DLPACK_H_

#ifndef HCT_DLPACK_EXTERNAL
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DLPACK_MAJOR_VERSION 1
#define DLPACK_MINOR_VERSION 1

/* Where the memory of a tensor lives (a 32-bit enum in the ABI). */
typedef enum {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,
  kDLCUDAManaged = 13,
} DLDeviceType;

typedef struct {
  DLDeviceType device_type;
  int32_t device_id; /* 0 for host memory */
} DLDevice;

/* Type codes; stored in DLDataType.code as uint8_t. */
typedef enum {
  kDLInt = 0,
  kDLUInt = 1,
  kDLFloat = 2,
  kDLOpaqueHandle = 3,
  kDLBfloat = 4,
  kDLComplex = 5,
  kDLBool = 6,
  kDLFloat8_e3m4 = 7,
  kDLFloat8_e4m3 = 8,
  kDLFloat8_e4m3b11fnuz = 9,
  kDLFloat8_e4m3fn = 10,
  kDLFloat8_e4m3fnuz = 11,
  kDLFloat8_e5m2 = 12,
  kDLFloat8_e5m2fnuz = 13,
  kDLFloat8_e8m0fnu = 14,
  kDLFloat6_e2m3fn = 15,
  kDLFloat6_e3m2fn = 16,
  kDLFloat4_e2m1fn = 17,
} DLDataTypeCode;

typedef struct {
  uint8_t code;   /* DLDataTypeCode */
  uint8_t bits;   /* bits of one lane: 16 for bfloat16, 4 for float4 */
  uint16_t lanes; /* 1 for scalars */
} DLDataType;

typedef struct {
  void* data; /* device pointer for kDLCUDA */
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides; /* NULL: compact row-major */
  uint64_t byte_offset;
} DLTensor;

/* The pre-1.0 managed tensor, which torch.from_dlpack takes in a "dltensor" capsule. The
 * consumer calls deleter(self) once it no longer needs the memory. */
typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensor* self);
} DLManagedTensor;

typedef struct {
  uint32_t major;
  uint32_t minor;
} DLPackVersion;

#define DLPACK_FLAG_BITMASK_READ_ONLY (1ULL << 0)
#define DLPACK_FLAG_BITMASK_IS_COPIED (1ULL << 1)

/* The 1.x managed tensor ("dltensor_versioned" capsule). */
typedef struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
} DLManagedTensorVersioned;

#ifdef __cplusplus
}  // extern "C"
#endif
#endif /* HCT_DLPACK_EXTERNAL */
#endif /* HCT_DLPACK_H_ */
