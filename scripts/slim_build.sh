#!/usr/bin/env bash
# Copies a build tree without objects and archives (executables, shared libraries, CTest files),
# so it fits the GPU machine's 64 MiB carry limit: scripts/slim_build.sh build-gpu .devbin
# On the GPU machine: rm -rf build-gpu && mv .devbin build-gpu
set -euo pipefail
src=${1:-build-gpu}; dst=${2:-.devbin}
rm -rf "$dst"
rsync -a --exclude='*.o' --exclude='*.a' --exclude='CMakeFiles/' --exclude='*.ninja' \
  --exclude='.ninja_*' --exclude='corpus/' --exclude='runtime_test_tmp/' "$src/" "$dst/"
strip --strip-unneeded $(find "$dst" -type f -perm -u+x) 2>/dev/null || true
du -sh "$dst"
