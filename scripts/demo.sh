#!/usr/bin/env bash
# Runs HCT's main job on a model: converts a safetensors file or Hugging Face folder given as $1
# (or a generated LLaMA-like demo model when none is given) into an HCT model folder, verifies
# it with the CPU reference decoder, prints the per-tensor report, then warms it into a demo
# cache ($HCT_DEMO_DIR/cache) and lists that.
# Usage: scripts/demo.sh [MODEL] [hct-convert options...]
# Environment: HCT_BUILD_DIR (default build), HCT_DEMO_DIR (default $HCT_BUILD_DIR/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${HCT_BUILD_DIR:-build}
work=${HCT_DEMO_DIR:-$build/demo}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHCT_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target hct-convert hct-cache >/dev/null
bin="$build/convert/hct-convert"
mkdir -p "$work"

if [ $# -ge 1 ] && [ "${1#-}" = "$1" ]; then
  model=$1
  shift
else
  model="$work/demo-model"
  [ -d "$model" ] || "$bin" demo-model "$model" >/dev/null
  echo "demo: generated a LLaMA-like BF16 model in $model"
fi
name=$(basename "${model%/}")
out="$work/${name%.safetensors}.hct"
echo "demo: converting $model -> $out"
"$bin" "$model" "$out" --force --verify --report "$work/report.json" "$@"
echo "demo: report in $work/report.json; inspect with: $bin inspect $out"
# Decode into a warm cache of safetensors entries (what the runtime streams from) and list it.
cache="$work/cache"
echo "demo: warming $out into the cache $cache"
"$build/cache/hct-cache" --cache-dir "$cache" warm "$out"
"$build/cache/hct-cache" --cache-dir "$cache" verify --deep
"$build/cache/hct-cache" --cache-dir "$cache" ls
