#!/usr/bin/env bash
# The GPU machine's checks and benchmarks in one command, each section logged under $OUT.
# Build here first (cmake -B build-gpu -DHCT_BUILD_BENCH=ON ...), then on the GPU machine:
#   source .device-deps/env.sh; scripts/gpu_suite.sh [SECTION...]
# Sections: tests kernels load hctload safetensors cache dlpack (default: all).
# Real weights are read from $HCT_WEIGHTS_DIR when that is set (they must be carried there).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-gpu}
out=${OUT:-/tmp/hct-gpu-suite}
mkdir -p "$out"
sections=${*:-tests kernels load hctload safetensors cache dlpack}
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max --format=csv,noheader
run() {  # run NAME CMD...: logs to $out/NAME.log, prints the tail and the time taken
  local name=$1; shift
  local t0=$(date +%s)
  echo "=== $name: $*"
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL_LINES:-25}" "$out/$name.log"
  echo "=== $name: rc=$rc in $(( $(date +%s) - t0 ))s"
}
for s in $sections; do
  case $s in
    tests) run gpu_tests bash -c "cd $build && ctest -L gpu --output-on-failure --timeout 300" ;;
    kernels) run bench_kernels "$build/bench/hct_bench_kernels" --cublas ;;
    load) run bench_load scripts/bench_load.sh "$build" ;;
    hctload) [ -x scripts/bench_hct_load.sh ] && run bench_hct_load scripts/bench_hct_load.sh "$build" ;;
    safetensors)
      run st_write env HCT_KEEP_SAFETENSORS_OUT=/tmp/st-out "$build/tests/formats/hct_formats_tests" --gtest_filter='Safetensors*'
      run st_py_golden python3 scripts/check_safetensors_py.py --json tests/data/safetensors/golden.json tests/data/safetensors
      run st_py_roundtrip python3 scripts/check_safetensors_py.py --json /tmp/st-out/roundtrip/expect.json /tmp/st-out/roundtrip
      [ -n "${HCT_WEIGHTS_DIR:-}" ] && run st_py_weights python3 scripts/check_safetensors_py.py --compare /tmp/st-out/weights "$HCT_WEIGHTS_DIR"
      ;;
    cache)
      # Warm a safetensors model and an HCT model, then read every entry back with the Python
      # safetensors library onto the GPU. Sources: $HCT_CACHE_SRC (safetensors folder) and
      # $HCT_CACHE_HCT (HCT folder); defaults: the safetensors section's round-trip file.
      rm -rf /tmp/hct-cache-check
      src=${HCT_CACHE_SRC:-/tmp/st-out/roundtrip}
      run cache_warm bash -c "'$build/cache/hct-cache' --cache-dir /tmp/hct-cache-check warm '$src' &&
        { [ -z '${HCT_CACHE_HCT:-}' ] || '$build/cache/hct-cache' --cache-dir /tmp/hct-cache-check warm '${HCT_CACHE_HCT:-}'; } &&
        '$build/cache/hct-cache' --cache-dir /tmp/hct-cache-check verify --deep &&
        '$build/cache/hct-cache' --cache-dir /tmp/hct-cache-check ls"
      run cache_py python3 -c "
import glob, safetensors.torch as s
fs = sorted(glob.glob('/tmp/hct-cache-check/entries/**/*.safetensors', recursive=True))
n = sum(len(s.load_file(f, device='cuda')) for f in fs)
print(f'PASS: {len(fs)} cache entries, {n} tensors loaded by safetensors.torch on cuda')
assert fs and n"
      ;;
    dlpack) run dlpack python3 scripts/dlpack_torch.py --lib "$build/runtime/libhct.so" ;;
    *) echo "unknown section $s" ;;
  esac
done
