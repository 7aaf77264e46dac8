// HCT_CHECK(cublas, ...) for the kernel benchmark's cuBLAS comparison. Benchmarks only: the
// installed hct/detail/check_cuda.h stays cudart-only.
#pragma once

#include <cublas_api.h>

#include "hct/detail/check_cuda.h"

namespace hct::detail {

inline Status CheckCall(cublas_tag, cublasStatus_t rc, const char* call, const char* file,
                        int line) {
  if (rc == CUBLAS_STATUS_SUCCESS) return Status::OK();
  return CallFailed(Code::kInternal, call, cublasGetStatusString(rc), file, line);
}

}  // namespace hct::detail
