#!/usr/bin/env python3
"""Batch-1 greedy decoding of a Llama-70B-shaped model (random weights) whose decoder layers do
not fit a GPU budget: per-step time and GB/s of weights moved, for every way a user could run it.

    python3 scripts/bench_stream_70b.py WORK --bin BUILD [--layers 8] [--steps 6] [--budget 4GiB]

WORK receives the model (safetensors, written here from torch.randn: ~14 GB for 8 layers), its
default HCT conversion and a warm cache of it. BUILD holds hct-convert, hct-cache and libhct.so
(a CUDA build). Each mode runs in its own process (clean GPU memory) and prints one JSON line;
the parent prints the table (docs/BENCHMARKS.md records one run):
  ceiling      pinned host->device copy of one layer's bytes (the link, this run)
  whole        all layers on the GPU (the compute floor)
  accelerate   from_pretrained(device_map="auto", max_memory={0: budget, "cpu": ...})
  hct-cache    hct.stream from the warm cache, files resident (registered) after the first pass
  hct-files    hct.stream from the HCT files (default conversion), one-shot reads
  hct-st       hct.stream from the safetensors folder, one-shot reads (page cache hot)
  loadfile     one layer file: hct.torch.load_file vs safetensors.torch.load_file(device=cuda)
Timing: a prefill of 8 tokens, one warm-up step, then the median of --steps decode steps (CUDA
synchronised). Host memory: pinned staging and registered bytes from the runtime's stats.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)

import hct  # noqa: E402  (HCT_LIBRARY is read when the library is first used)

SHAPE = dict(hidden_size=8192, intermediate_size=28672, num_attention_heads=64,
             num_key_value_heads=8, vocab_size=32000, max_position_embeddings=4096,
             rms_norm_eps=1e-5, tie_word_embeddings=False)
TINY = dict(SHAPE, hidden_size=256, intermediate_size=768, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1000)  # --tiny: a smoke test of this script


# -- building the model ---------------------------------------------------------------------
def make_model(work, layers, shape):
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM
    src = os.path.join(work, "st")
    if os.path.exists(os.path.join(src, "model.safetensors.index.json")):
        return src
    os.makedirs(src, exist_ok=True)
    cfg = LlamaConfig(num_hidden_layers=layers, **shape)
    cfg.save_pretrained(src)
    with torch.device("meta"):
        meta = LlamaForCausalLM(cfg)
    groups = {}
    for name, p in meta.state_dict().items():
        parts = name.split(".")
        key = f"layer{int(parts[2]):03d}" if parts[:2] == ["model", "layers"] else "rest"
        groups.setdefault(key, []).append((name, tuple(p.shape)))
    weight_map, gen = {}, torch.Generator(device="cuda").manual_seed(0)
    for key, items in sorted(groups.items()):
        fname = f"model-{key}.safetensors"
        tensors = {}
        for name, shape in items:
            if name.endswith("norm.weight"):
                t = torch.ones(shape, dtype=torch.bfloat16)
            else:
                t = (torch.randn(shape, device="cuda", generator=gen) * 0.02).bfloat16().cpu()
            tensors[name] = t
            weight_map[name] = fname
        save_file(tensors, os.path.join(src, fname), metadata={"format": "pt"})
    with open(os.path.join(src, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return src


def convert_and_warm(work, src, bindir):
    out, cache = os.path.join(work, "hct"), os.path.join(work, "cache")
    times = {}
    if not os.path.exists(os.path.join(out, "model.hct.index.json")):
        t0 = time.perf_counter()
        subprocess.run([os.path.join(bindir, "convert", "hct-convert"), "convert", src, out,
                        "--quiet"], check=True)
        times["convert_s"] = time.perf_counter() - t0
    if not os.path.exists(os.path.join(cache, "index.db")):
        t0 = time.perf_counter()
        subprocess.run([os.path.join(bindir, "cache", "hct-cache"), "--cache-dir", cache,
                        "warm", out], check=True, stdout=subprocess.DEVNULL)
        times["warm_s"] = time.perf_counter() - t0
    return out, cache, times


# -- one mode per process -------------------------------------------------------------------
def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def decode_steps(model, steps, device):
    """Per-step seconds of batch-1 greedy decoding (after an 8-token prefill and one warm-up)."""
    import torch
    ids = torch.arange(1, 9, device=device).unsqueeze(0)
    out = []
    with torch.no_grad():
        r = model(input_ids=ids, use_cache=True)
        pkv, nxt = r.past_key_values, r.logits[:, -1:].argmax(-1)
        for i in range(steps + 1):
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            r = model(input_ids=nxt, past_key_values=pkv, use_cache=True)
            pkv, nxt = r.past_key_values, r.logits[:, -1:].argmax(-1)
            torch.cuda.synchronize(device)
            if i:
                out.append(time.perf_counter() - t0)
    return out


def layer_bytes(src):
    from safetensors import safe_open
    total = 0
    for f in sorted(os.listdir(src)):
        if f.startswith("model-layer") and f.endswith(".safetensors"):
            with safe_open(os.path.join(src, f), "pt") as g:
                for k in g.keys():
                    s = g.get_slice(k)
                    n = 2
                    for d in s.get_shape():
                        n *= d
                    total += n
    return total


def mode_ceiling(a):
    import torch
    n = layer_bytes(a.src) // a.layers
    h = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    d = torch.empty(n, dtype=torch.uint8, device="cuda")
    d.copy_(h, non_blocking=True)
    ts = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        d.copy_(h, non_blocking=True)
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return {"pinned_copy_GBps": n / _median(ts) / 1e9, "layer_bytes": n}


def mode_whole(a):
    import torch
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(a.src, dtype=torch.bfloat16, device_map="cuda")
    st = decode_steps(m.eval(), a.steps, "cuda")
    return {"step_s": _median(st)}


def mode_accelerate(a):
    import torch
    from transformers import AutoModelForCausalLM
    budget = hct.parse_size(a.budget)
    m = AutoModelForCausalLM.from_pretrained(
        a.src, dtype=torch.bfloat16, device_map="auto",
        max_memory={0: budget, "cpu": 200 << 30})
    dmap = getattr(m, "hf_device_map", {})  # absent when everything fits the GPU
    off = sorted({k for k, v in dmap.items() if v in ("cpu", "disk")})
    st = decode_steps(m.eval(), a.steps, "cuda")
    moved = layer_bytes(a.src) // a.layers * sum(1 for k in off if ".layers." in k or
                                                  k.startswith("model.layers"))
    return {"step_s": _median(st), "offloaded": len(off), "moved_GB": moved / 1e9,
            "GBps": moved / _median(st) / 1e9,
            "gpu_peak_GB": torch.cuda.max_memory_allocated() / 1e9}


def mode_stream(a, path, options):
    import torch
    import hct.stream
    from generate import build, pick_prefetch
    pf, rest, biggest, nl = pick_prefetch(path, hct.parse_size(a.budget), "cuda:0")
    model, _ = build(a.src, torch.bfloat16)
    s = hct.stream.attach(model, path, prefetch=pf, device="cuda:0", options=options)
    t0 = time.perf_counter()
    first = decode_steps(model, 1, "cuda")  # the first passes pay for registration/setup
    setup = time.perf_counter() - t0
    st = decode_steps(model, a.steps, "cuda")
    # Every step streams every layer once (the slots hold fewer layers than the model): the
    # rate is the layers' bytes over the step time.
    per_step = layer_bytes(a.src) if s.nslots < s.n else 0
    stats = s.stats()
    return {"step_s": _median(st), "first_s": first[0], "setup_s": setup, "prefetch": pf,
            "GBps": per_step / _median(st) / 1e9, "streamed_per_step_GB": per_step / 1e9,
            "gpu_peak_GB": torch.cuda.max_memory_allocated() / 1e9,
            "pinned_MB": stats["pinned_staging_bytes"] / 1e6,
            "registered_GB": stats["registered_bytes"] / 1e9}


def mode_loadfile(a):
    import torch
    import hct.torch
    from safetensors.torch import load_file
    f = os.path.join(a.src, "model-layer000.safetensors")
    n = os.path.getsize(f)
    res = {}
    for name, fn in (("safetensors", lambda: load_file(f, device="cuda")),
                     ("hct", lambda: hct.torch.load_file(f, device="cuda", progress=False))):
        ts = []
        for _ in range(4):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            d = fn()
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
            del d
        res[name + "_GBps"] = n / _median(ts[1:]) / 1e9
    res["ratio"] = res["hct_GBps"] / res["safetensors_GBps"]
    return res


def run_mode(a):
    work = a.work
    if a.mode == "ceiling":
        r = mode_ceiling(a)
    elif a.mode == "whole":
        r = mode_whole(a)
    elif a.mode == "accelerate":
        r = mode_accelerate(a)
    elif a.mode == "hct-cache":
        r = mode_stream(a, os.path.join(work, "cache"), {"resident_budget": 64 << 30})
    elif a.mode == "hct-files":
        r = mode_stream(a, os.path.join(work, "hct"), {})
    elif a.mode == "hct-st":
        r = mode_stream(a, a.src, {})
    elif a.mode == "loadfile":
        r = mode_loadfile(a)
    else:
        sys.exit(f"unknown mode {a.mode}")
    print("RESULT " + json.dumps({"mode": a.mode, **r}), flush=True)


MODES = ["ceiling", "whole", "accelerate", "hct-cache", "hct-files", "hct-st", "loadfile"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work")
    ap.add_argument("--bin", required=True, help="CUDA build dir (hct-convert, hct-cache, libhct)")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--budget", default="4GiB")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--tiny", action="store_true", help="a small shape (smoke test)")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ.setdefault("HCT_LIBRARY", os.path.join(os.path.abspath(a.bin), "runtime",
                                                      "libhct.so"))
    if a.mode:
        return run_mode(a)
    os.makedirs(a.work, exist_ok=True)
    t0 = time.perf_counter()
    src = make_model(a.work, a.layers, TINY if a.tiny else SHAPE)
    print(f"model: {src} ({time.perf_counter() - t0:.1f} s)", flush=True)
    _, _, times = convert_and_warm(a.work, src, a.bin)
    print(f"setup: {times}", flush=True)
    results = {}
    for m in a.modes.split(","):
        p = subprocess.run([sys.executable, __file__, a.work, "--bin", a.bin, "--layers",
                            str(a.layers), "--steps", str(a.steps), "--budget", a.budget,
                            "--mode", m, "--src", src], capture_output=True, text=True)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode or not lines:
            print(f"{m}: failed (rc {p.returncode}): {p.stderr[-1500:]}", flush=True)
            continue
        results[m] = json.loads(lines[-1][7:])
        print(json.dumps(results[m]), flush=True)
    report(results)


def report(r):
    acc = r.get("accelerate", {}).get("step_s")
    ceil = r.get("ceiling", {}).get("pinned_copy_GBps")
    print("\n| mode | s/step | weight GB/s | vs pinned ceiling | tokens/s vs accelerate |")
    print("|---|---|---|---|---|")
    for m in ("whole", "accelerate", "hct-cache", "hct-files", "hct-st"):
        if m not in r:
            continue
        step, gbps = r[m]["step_s"], r[m].get("GBps")
        rate = f"{gbps:.1f}" if gbps else "-"
        frac = f"{gbps / ceil:.2f}x" if gbps and ceil else "-"
        speed = f"{acc / step:.2f}x" if acc else "-"
        print(f"| {m} | {step:.3f} | {rate} | {frac} | {speed} |")
    if ceil:
        print(f"pinned copy ceiling (same run): {ceil:.1f} GB/s")


if __name__ == "__main__":
    sys.exit(main())
