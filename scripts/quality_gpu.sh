#!/usr/bin/env bash
# kdoc-lm-25m downstream quality on the GPU machine: rebuilds the original BF16 weights from a
# lossless HCT copy (which fits the carry limit), converts them at several settings, decodes each
# and computes bits per byte (scripts/eval_bpb_dirs.py, the protocol of eval_bpb.py), then the
# same through the runtime's GPU decode path (scripts/eval_bpb_runtime.py).
#   scripts/quality_gpu.sh BUILD_DIR LOSSLESS_HCT_DIR VAL_TXT [SETTINGS_FILE]
# SETTINGS_FILE: lines "name hct-convert-options..." (default: the list below).
set -uo pipefail
cd "$(dirname "$0")/.."
build=$1; src=$2; val=$3; settings=${4:-}
out=${OUT:-/tmp}; q=/tmp/hct-quality; rm -rf "$q"; mkdir -p "$q"
H="$build/convert/hct-convert"
$H decode "$src" "$q/orig" -q || exit 1
dirs=("$q/orig")
while read -r name args; do
  $H "$q/orig" "$q/$name.hct" -q --json $args > "$q/conv_$name.json" || exit 1
  $H decode "$q/$name.hct" "$q/$name" -q || exit 1
  python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['totals']; print(sys.argv[2], json.dumps(t))" "$q/conv_$name.json" "$name"
  dirs+=("$q/$name")
done < <(if [ -n "$settings" ]; then cat "$settings"; else cat <<'SETTINGS'
e040 --max-error 0.04
e060 --max-error 0.06
e070 --max-error 0.07
default
e118 --max-error 0.118
b4125 --bits 4.125
b3 --bits 3
r070 --retention 0.7
default_none --transform none
default_dct --transform dct
SETTINGS
fi)
python3 scripts/eval_bpb_dirs.py "$val" "${dirs[@]}" 2>/dev/null | tee "$q/bpb.txt"
echo "== summary: setting, ratio vs BF16, bits/weight (all tensors), lossy rel RMS error, bits/byte, change vs original"
python3 - "$q" <<'PY'
import json, os, re, sys
q = sys.argv[1]
bpb = {}
for line in open(os.path.join(q, "bpb.txt")):
    m = re.match(r"(\S+) bits_per_byte=([0-9.]+)", line)
    if m: bpb[os.path.basename(m.group(1).rstrip("/"))] = float(m.group(2))
ref = bpb.get("orig")
for name, v in bpb.items():
    f = os.path.join(q, f"conv_{name}.json")
    t = json.load(open(f))["totals"] if os.path.exists(f) else {}
    d = f"{100 * (v - ref) / ref:+.2f}%" if ref else ""
    print(f"{name:14s} {t.get('ratio', 1):6.3f}x {t.get('bits_per_weight', 16):6.3f} "
          f"{t.get('lossy_rel_rms_error', 0):7.4f} {v:9.6f} {d}")
PY
[ -e "$q/default.hct" ] && python3 scripts/eval_bpb_runtime.py "$q/default.hct" --lib "$build/runtime/libhct.so" --config-dir "$q/orig" --val "$val"
