#!/usr/bin/env bash
# Packs a worktree for the GPU machine, which only receives /work/main's checkout plus carried
# ignored paths: the worktree's tracked and untracked (not ignored) files and a slimmed copy of its
# build go into /work/main/.devbin-NAME. On the device, recreate the worktree's path first:
#   ln -sfn "$PWD/.devbin-NAME" /work/wt-NAME && cd /work/wt-NAME
# so CTest files, compiled-in source paths and PYTHONPATH resolve as they do here.
# Usage (from the worktree): scripts/device_pack.sh NAME [BUILD_DIR=build] [extra rm globs...]
set -euo pipefail
name=$1; build=${2:-build}; shift $(( $# >= 2 ? 2 : 1 ))
dst=/work/main/.devbin-$name
rm -rf "$dst"; mkdir -p "$dst"
git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ "$dst/"
"$(dirname "$0")/slim_build.sh" "$build" "$dst/$build" >/dev/null
for g in "$@"; do rm -rf "$dst/$build"/$g; done
du -sh "$dst"
