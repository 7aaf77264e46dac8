// Shared by the GPU-labelled tests: skip cleanly on machines without a CUDA device.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

namespace hct::test {

inline bool HaveGpu() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  (void)cudaGetLastError();  // "no device" must not leak into the test's later checks
  return ok;
}

}  // namespace hct::test

#define REQUIRE_GPU() \
  if (!::hct::test::HaveGpu()) GTEST_SKIP() << "no CUDA device"
