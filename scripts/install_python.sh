#!/usr/bin/env bash
# Installs the Python package `hct` (python/hct) with libhct.so next to it, for one Python.
# Needs no package index: it copies files. Usage:
#   scripts/install_python.sh [BUILD_DIR] [PYTHON]      (defaults: build, /usr/bin/python3)
# Installs into PYTHON's user site-packages (or $HCT_PY_TARGET when set, e.g. a venv's
# site-packages). Build the library first: cmake --build BUILD_DIR --target hct_shared
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
py=${2:-/usr/bin/python3}
lib="$build/runtime/libhct.so"
[ -e "$lib" ] || { echo "install_python: $lib not found; build it: cmake --build $build --target hct_shared" >&2; exit 2; }
target=${HCT_PY_TARGET:-$("$py" -c 'import site; print(site.getusersitepackages())')}
mkdir -p "$target"
tmp=$(mktemp -d "$target/.hct-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r python/hct "$tmp/hct"
rm -rf "$tmp/hct/__pycache__"
cp -L "$lib" "$tmp/hct/libhct.so"  # the package finds its library next to itself
rm -rf "$target/hct.old"
[ -e "$target/hct" ] && mv "$target/hct" "$target/hct.old"
mv "$tmp/hct" "$target/hct"
rm -rf "$target/hct.old"
echo "install_python: hct installed in $target/hct ($("$py" -c 'import sys; print(sys.executable)'))"
