#!/usr/bin/env bash
# Load benchmark on the GPU machine, in one command (~2-4 minutes):
#   scripts/bench_load.sh [BUILD_DIR [hct_bench_load flags...]]   (default build-gpu, built with
#   -DHCT_BUILD_BENCH=ON; flags e.g. --threads 8 12 --chunks 16 --stagings 256)
# Prints: pinned cudaMemcpy ceiling; page-cache pread rate at every thread count / piece size the
# loads use (and the best); resident load; a one-shot warm sweep (threads x piece size x ring,
# block verification on) with each point's ratio to pread, then at the best point verify on /
# off / whole-XXH3-only and the library defaults; cold loads next to the O_DIRECT disk rate;
# the same loads through a cache (the layer and each --model DIR, e.g. kdoc-lm-25m, warmed
# into it); locked/pinned memory; then the torch + safetensors baseline (hot and cold).
# Writes the log to $OUT/bench_load.log when OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
shift || true
dir=${HCT_BENCH_DIR:-/tmp/hct_bench_load}
log=${OUT:-/tmp}/bench_load.log
bin="$build/bench/hct_bench_load"
[ -x "$bin" ] || { echo "missing $bin: configure with -DHCT_BUILD_BENCH=ON and build" >&2; exit 1; }
{
  echo "== hct_bench_load ($(date -u +%FT%TZ), $(nproc) cores)"
  nvidia-smi --query-gpu=name,pcie.link.gen.max,pcie.link.width.max --format=csv,noheader 2>/dev/null
  echo "ulimit -l: $(ulimit -l)"
  "$bin" --dir "$dir" --keep --runs "${HCT_BENCH_RUNS:-5}" --cold-runs "${HCT_BENCH_COLD_RUNS:-3}" \
    --sweep-runs "${HCT_BENCH_SWEEP_RUNS:-3}" "$@"
  echo "== torch + safetensors baseline (load_file(device='cuda'), same file)"
  PYTHONUNBUFFERED=1 python3 - "$dir/llama70b_layer.safetensors" <<'PY'
import os, statistics, sys, time
import torch
from safetensors.torch import load_file
path = sys.argv[1]
size = os.path.getsize(path) / 1e9
def once():
    torch.cuda.synchronize()
    t = time.perf_counter()
    d = load_file(path, device="cuda")
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    del d
    return size / dt
def drop():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")
once()
hot = [once() for _ in range(5)]
print(f"torch safetensors page-cache hot           {statistics.median(hot):7.2f} GB/s  (runs {['%.2f' % x for x in hot]})")
cold = []
try:
    for _ in range(3):
        drop()
        cold.append(once())
    print(f"torch safetensors cold                     {statistics.median(cold):7.2f} GB/s")
except OSError as e:
    print(f"torch cold skipped: {e}")
PY
  rm -f "$dir/llama70b_layer.safetensors"
} 2>&1 | tee "$log"
