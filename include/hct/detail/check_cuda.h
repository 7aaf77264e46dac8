// Check rules for the CUDA runtime, cuFFT and cuBLAS. Include only from CUDA-enabled code.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>
#include <cufft.h>

#include <string>

#include "hct/detail/check.h"

namespace hct::detail {

inline Status CheckCall(cuda_tag, cudaError_t rc, const char* call, const char* file, int line) {
  if (rc == cudaSuccess) return Status::OK();
  std::string what = std::string(cudaGetErrorName(rc)) + ": " + cudaGetErrorString(rc);
  return CallFailed(rc == cudaErrorMemoryAllocation ? Code::kResourceExhausted : Code::kInternal,
                    call, what, file, line);
}

inline Status CheckCall(cufft_tag, cufftResult rc, const char* call, const char* file, int line) {
  if (rc == CUFFT_SUCCESS) return Status::OK();
  return CallFailed(Code::kInternal, call, "cufftResult " + std::to_string(int(rc)), file, line);
}

inline Status CheckCall(cublas_tag, cublasStatus_t rc, const char* call, const char* file,
                        int line) {
  if (rc == CUBLAS_STATUS_SUCCESS) return Status::OK();
  return CallFailed(Code::kInternal, call, cublasGetStatusString(rc), file, line);
}

}  // namespace hct::detail
