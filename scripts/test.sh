#!/usr/bin/env bash
# Builds HCT and runs every test (GPU-labelled tests skip without a GPU), then a short
# libFuzzer smoke run of each parser. Usage: scripts/test.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
jobs=$(nproc)
# Structure rules first (seconds, no build): no function over 120 lines in runtime/ and cache/
# (issue 9), and public headers that hide the internals (no JSON types, no detail/ headers, no
# test hooks). Each prints the offenders and fails the run.
python3 scripts/check_function_length.py --max 120 runtime cache
python3 scripts/check_public_headers.py
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHCT_BUILD_TESTS=ON -DHCT_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j"$jobs"
(cd "$build" && ctest --output-on-failure -j"$jobs" --timeout 900)
# The Python package (python/tests, host placement; GPU tests skip without CUDA) against this
# build's libhct.so, with Debian's python3 (which sees the apt torch/numpy/pytest).
if [ "${HCT_SKIP_PYTHON:-0}" != 1 ]; then
  HCT_LIBRARY="$(cd "$build" && pwd)/runtime/libhct.so" /usr/bin/python3 -m pytest -q -p no:cacheprovider python/tests
fi
# Fuzz smoke: each parser's libFuzzer target for a few seconds over the seed corpus.
if [ "${HCT_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz.sh "$build-fuzz" "${HCT_FUZZ_SECONDS:-20}"
fi
