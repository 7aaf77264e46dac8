#!/usr/bin/env bash
# Warm benchmark (hct-cache): warm throughput for kdoc-lm-25m from the safetensors source, from a
# lossless and from a lossy (default) HCT conversion, in MB/s of cached bytes, with the thread
# count; and verify --deep GB/s (1 thread, and all threads per core). CPU only.
#   scripts/bench_warm.sh [BUILD_DIR]   (default build, configured with -DHCT_BUILD_BENCH=ON)
# Env: HCT_WEIGHTS_DIR (default ../shared/weights), HCT_BENCH_DIR (scratch, default
# /tmp/hct_bench_warm), HCT_BENCH_RUNS (5), HCT_BENCH_THREADS (0: all cores),
# HCT_BENCH_SYNTHETIC_MIB (0: off; N adds one N MiB entry warmed with 1 and all threads).
# Writes the log to $OUT/bench_warm.log when OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
log=${OUT:-/tmp}/bench_warm.log
bin="$build/bench/hct_bench_warm"
if [ ! -x "$bin" ]; then
  cmake -S . -B "$build" -DHCT_BUILD_BENCH=ON >/dev/null &&
    cmake --build "$build" --target hct_bench_warm -j"$(nproc)" >/dev/null ||
    { echo "cannot build $bin" >&2; exit 1; }
fi
weights=${HCT_WEIGHTS_DIR:-$(pwd)/../shared/weights}
{
  echo "== hct_bench_warm ($(date -u +%FT%TZ), $(nproc) cores, $(uname -m))"
  "$bin" --model "$weights/kdoc-lm-25m" --dir "${HCT_BENCH_DIR:-/tmp/hct_bench_warm}" \
    --runs "${HCT_BENCH_RUNS:-5}" --threads "${HCT_BENCH_THREADS:-0}" \
    --synthetic-mib "${HCT_BENCH_SYNTHETIC_MIB:-0}"
  echo "exit status: $?"
} 2>&1 | tee "$log"
