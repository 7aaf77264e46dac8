#!/usr/bin/env bash
# Builds and runs the GPU decode-kernel benchmark (issue 6; docs/kernels.md): the fused
# dequantize + inverse DCT + BF16 kernel alone on 28672 x 8192 int8 symbols, tiles 8/16/32 and
# identity, next to the device-to-device memcpy ceiling measured in the same run.
# Usage: scripts/bench_kernels.sh [bench options, e.g. --cublas --runs 50]
# Env: BUILD_DIR (default build-bench-kernels), CUDA_ARCH (default 90).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-bench-kernels}
nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
# CMake < 3.26 knows no CUDA C++20 flag for nvcc; tell it (harmless on newer CMake).
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHCT_WITH_CUDA=ON \
  -DHCT_BUILD_BENCH=ON -DHCT_BUILD_TESTS=OFF -DHCT_BUILD_TOOLS=OFF \
  -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
  -DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 \
  -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20 >/dev/null
cmake --build "$build" --target hct_bench_kernels -j"$(nproc)"
"$build/bench/hct_bench_kernels" "$@"
