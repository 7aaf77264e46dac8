#!/usr/bin/env bash
# HCT -> GPU load benchmark on the GPU machine, in one command (< 4 minutes):
#   scripts/bench_hct_load.sh [BUILD_DIR]    (default build-gpu, built with -DHCT_BUILD_BENCH=ON)
# Generates a Llama-70B-shaped BF16 layer (1.59 GiB), writes it as safetensors and encodes it
# (lossy, transform none, max_error 0.118: INT4-like) into two HCT files (entropy zstd: CPU
# decode; entropy huff: GPU Huffman decode), then prints in one run, for each:
# the pinned cudaMemcpy ceiling, raw one-shot warm load, HCT -> GPU warm load (BF16-equivalent
# GB/s) and its ratio to raw, the kernel-only time, cold raw vs HCT (after drop_caches, needs
# root) and the CPU zstd decode rate of the decode pool. Medians of several runs.
# Writes the log to $OUT/bench_hct_load.log when OUT is set.
# Env: HCT_BENCH_DIR (scratch, default /tmp/hct_bench_hct_load), HCT_BENCH_RUNS (5),
# HCT_BENCH_COLD_RUNS (3), HCT_BENCH_THREADS (0: all cores), plus the runtime's HCT_* settings.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
log=${OUT:-/tmp}/bench_hct_load.log
bin="$build/bench/hct_bench_hct_load"
[ -x "$bin" ] || { echo "missing $bin: configure with -DHCT_BUILD_BENCH=ON and build" >&2; exit 1; }
{
  echo "== hct_bench_hct_load ($(date -u +%FT%TZ), $(nproc) cores)"
  nvidia-smi --query-gpu=name,pcie.link.gen.max,pcie.link.width.max --format=csv,noheader 2>/dev/null
  timeout 230 "$bin" --dir "${HCT_BENCH_DIR:-/tmp/hct_bench_hct_load}" \
    --runs "${HCT_BENCH_RUNS:-5}" --cold-runs "${HCT_BENCH_COLD_RUNS:-3}" \
    --threads "${HCT_BENCH_THREADS:-0}"
  echo "exit status: $?"
} 2>&1 | tee "$log"
