#!/usr/bin/env bash
# Measures HCT's rate/error trade-off on every weight set in ../shared/weights (or
# $HCT_WEIGHTS_DIR) with hct-convert --json, against round-to-nearest INT8 and INT4-g128
# (hct-convert baseline), and writes:
#   $out/quality_tables.md   markdown tables (pasted into docs/QUALITY.md)
#   $out/runs.jsonl          one line per conversion (inputs, options, totals)
#   $out/kdoc/<setting>/     kdoc-lm-25m decoded back to safetensors at several settings, for
#                            eval_bpb.py on the GPU machine:
#                              for d in $out/kdoc/*/; do python3 eval_bpb.py "$d"; done
# Usage: scripts/measure_quality.sh [out-dir]   (default build/quality; needs python3, stdlib only)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${HCT_BUILD_DIR:-build}
out=${1:-$build/quality}
weights=${HCT_WEIGHTS_DIR:-$(cd .. && pwd)/shared/weights}
[ -d "$weights" ] || { echo "measure_quality: no weights at $weights" >&2; exit 2; }
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target hct-convert >/dev/null
mkdir -p "$out"
exec python3 - "$build/convert/hct-convert" "$weights" "$out" <<'PY'
import json, os, shutil, subprocess, sys
bin_, weights, out = sys.argv[1:4]
tmp = os.path.join(out, "tmp.hct")
runs = open(os.path.join(out, "runs.jsonl"), "w")

def sets():
    for name in sorted(os.listdir(weights)):
        p = os.path.join(weights, name)
        if not os.path.isdir(p):
            continue
        if any(f.endswith(".safetensors") for f in os.listdir(p)) and (
                os.path.exists(os.path.join(p, "config.json")) or
                sum(f.endswith(".safetensors") for f in os.listdir(p)) == 1):
            yield name, p
        else:
            for f in sorted(os.listdir(p)):
                if f.endswith(".safetensors"):
                    yield f"{name}/{f[:-12]}", os.path.join(p, f)

def convert(src, *args, dst=tmp):
    r = subprocess.run([bin_, src, dst, "--force", "--json", "-q", *args],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"hct-convert {src} {' '.join(args)}: {r.stderr}")
    j = json.loads(r.stdout)
    runs.write(json.dumps({"input": src, "args": args, "totals": j["totals"],
                           "encode_mb_per_s": j["encode_mb_per_s"]}) + "\n")
    return j["totals"]

def baseline(src):
    r = subprocess.run([bin_, "baseline", src], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)

md = []
def table(head, rows):
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "---|" * len(head))
    for r in rows:
        md.append("| " + " | ".join(str(c) for c in r) + " |")
    md.append("")

f3 = lambda x: f"{x:.3f}"
f4 = lambda x: f"{x:.4f}"
errors = [0.01, 0.02, 0.04, 0.06, 0.085, 0.118, 0.16]
lossless_rows, base_rows, curve_rows, tile_rows = [], [], [], []
for name, src in sets():
    print(f"measure_quality: {name}", file=sys.stderr)
    t = convert(src, "--lossless", "--verify")
    lossless_rows.append([name, t["tensors"], f"{t['elements']/1e6:.2f}", f"{t['ratio']:.3f}x",
                          f3(t["bits_per_weight"]), "yes"])
    b = baseline(src)
    if b["elements"] == 0:
        continue
    e8, bits8 = b["int8"]["rel_rms_error"], b["int8"]["bits_per_weight"]
    e4, bits4 = b["int4_g128"]["rel_rms_error"], b["int4_g128"]["bits_per_weight"]
    row = [name, b["tensors"], f4(e8), f3(bits8), f4(e4), f3(bits4)]
    for err, bits in ((e8, bits8), (e4, bits4)):
        same_err = convert(src, "--max-error", str(err))       # auto: bits at RTN's error
        same_bits = convert(src, "--bits", str(bits))          # auto: error at RTN's bits
        row += [f3(same_err["lossy_bits_per_weight"]) + f" (err {f4(same_err['lossy_rel_rms_error'])})",
                f4(same_bits["lossy_rel_rms_error"]) + f" ({f3(same_bits['lossy_bits_per_weight'])} b)"]
    base_rows.append(row)
    for e in errors:
        r = [name, e]
        for tr in ("auto", "dct", "none"):
            t = convert(src, "--max-error", str(e), "--transform", tr)
            r.append(f3(t["lossy_bits_per_weight"]))
            if tr == "auto":
                r.append(f"{t['dct_tensors']}/{t['lossy_tensors']}")
                r.append(f"{t['ratio']:.2f}x")
        curve_rows.append(r)
    for tile in ("4", "8", "16", "32", "64"):
        r = [name, tile]
        for tr in ("dct", "auto"):
            t = convert(src, "--max-error", "0.085", "--transform", tr, "--tile", tile)
            r.append(f3(t["lossy_bits_per_weight"]))
        tile_rows.append(r)

md.append("### Lossless (`--lossless --verify`: bit-exact round trip checked)\n")
table(["set", "tensors", "M weights", "ratio", "bits/weight (files)", "bit-exact"], lossless_rows)
md.append("### Against RTN baselines (lossy tensors only; hct: `--transform auto`, tile 16)\n")
md.append("Same error -> bits: `--max-error` set to the baseline's aggregate error. "
          "Same bits -> error: `--bits` set to the baseline's bits.\n")
table(["set", "lossy tensors", "INT8 err", "INT8 bits", "INT4-g128 err", "INT4-g128 bits",
       "hct bits @INT8 err", "hct err @INT8 bits", "hct bits @INT4 err", "hct err @INT4 bits"],
      base_rows)
md.append("### Rate/error curves: bits per weight of the lossy tensors at each `--max-error`\n")
table(["set", "max-error", "auto", "auto: dct/lossy", "auto: file ratio", "dct 16x16", "none"],
      curve_rows)
md.append("### Tile size at `--max-error 0.085` (bits per weight of the lossy tensors)\n")
table(["set", "tile", "dct", "auto"], tile_rows)
open(os.path.join(out, "quality_tables.md"), "w").write("\n".join(md) + "\n")
shutil.rmtree(tmp, ignore_errors=True)

# Decoded kdoc-lm-25m folders for eval_bpb.py (GPU machine).
kdoc = os.path.join(weights, "kdoc-lm-25m")
if os.path.isdir(kdoc):
    settings = {"lossless": ["--lossless"], "err0.04": ["--max-error", "0.04"],
                "err0.06": ["--max-error", "0.06"], "default-err0.085": [],
                "err0.118": ["--max-error", "0.118"], "bits4.125": ["--bits", "4.125"],
                "bits3": ["--bits", "3"], "retention0.7": ["--retention", "0.7"]}
    for s, args in settings.items():
        h = os.path.join(out, "kdoc-hct", s)
        t = convert(kdoc, *args, "--verify", dst=h)
        d = os.path.join(out, "kdoc", s)
        subprocess.run([bin_, "decode", h, d, "--force", "-q"], check=True)
        print(f"kdoc {s}: ratio {t['ratio']:.3f}x, {t['bits_per_weight']:.3f} bits/weight, "
              f"lossy error {t['lossy_rel_rms_error']:.4f} -> {d}", file=sys.stderr)
print(open(os.path.join(out, "quality_tables.md")).read())
PY
