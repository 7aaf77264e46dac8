#!/usr/bin/env bash
# Installs the Debian 12 packages HCT needs to build and test (libfftw3-dev only for
# hct_bench_codec's DCT comparison; optional). Idempotent; quiet when done.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git
      libzstd-dev libfftw3-dev libsqlite3-dev libboost-program-options-dev libxxhash-dev
      nlohmann-json3-dev libgtest-dev clang libclang-rt-dev python3 zstd sqlite3
      python3-torch python3-numpy python3-pytest python3-tqdm python3-pybind11 rsync)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
