// Check rule for the CUDA runtime (cudart only: installed, so it pulls in no other CUDA library;
// the benchmarks' cuBLAS rule is bench/bench_check_cublas.h). Include only from CUDA-enabled code.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "hct/detail/check.h"

namespace hct::detail {

inline Status CheckCall(cuda_tag, cudaError_t rc, const char* call, const char* file, int line) {
  if (rc == cudaSuccess) return Status::OK();
  std::string what = std::string(cudaGetErrorName(rc)) + ": " + cudaGetErrorString(rc);
  return CallFailed(rc == cudaErrorMemoryAllocation ? Code::kResourceExhausted : Code::kInternal,
                    call, what, file, line);
}

}  // namespace hct::detail
