#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each one.
# Usage: scripts/fuzz.sh [build-dir] [seconds-per-target | -runs=N]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
limit=${2:-20}
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHCT_FUZZ=ON -DHCT_WITH_CUDA=OFF -DHCT_BUILD_TESTS=ON -DHCT_BUILD_TOOLS=OFF >/dev/null
targets=$(cd tests/fuzz && ls *_fuzz.cc 2>/dev/null | sed 's/_fuzz.cc//')
# Targets CMake left out (tests/fuzz/CMakeLists.txt says why) are skipped, visibly.
targets=$(for t in $targets; do
  if ninja -C "$build" -t query "fuzz_$t" >/dev/null 2>&1; then echo "$t"
  else echo "fuzz: skipping $t (not configured in $build)" >&2; fi
done)
[ -n "$targets" ] || { echo "fuzz: no targets"; exit 0; }
cmake --build "$build" -j"$(nproc)" --target $(for t in $targets; do printf 'fuzz_%s ' "$t"; done)
case "$limit" in -runs=*) arg=$limit ;; *) arg=-max_total_time=$limit ;; esac
for t in $targets; do
  corpus="$build/corpus/$t"; mkdir -p "$corpus"
  seeds=tests/data/fuzz/$t
  echo "fuzz: $t ($arg)"
  log="$build/fuzz-$t.log"
  if ! "$build/tests/fuzz/fuzz_$t" "$arg" -max_len=65536 -print_final_stats=1 "$corpus" \
      $( [ -d "$seeds" ] && echo "$seeds" ) >"$log" 2>&1; then
    tail -40 "$log"; echo "fuzz: $t found a problem (log: $log)"; exit 1
  fi
  grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$log" || tail -3 "$log"
done
