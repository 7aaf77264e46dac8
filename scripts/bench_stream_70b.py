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
  ls-cache, ls-files, ls-st   LayerStreamer alone (no compute) on the same files and prefetch
  loadfile     one layer file: hct.torch.load_file (first call, repeated, resident, unshared,
               per-phase breakdown) vs safetensors.torch.load_file, and the pinned ceiling
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
def _write_safetensors(path, tensors):
    """{name: CPU tensor} as a safetensors file (sorted names, like save_file), written from
    the tensors' memory without building the file in memory first (save_file does)."""
    import torch
    dt = {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16"}
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(tensors):
        n = tensors[name].numel() * tensors[name].element_size()
        header[name] = {"dtype": dt[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for name in sorted(tensors):
            f.write(tensors[name].contiguous().view(torch.uint8).reshape(-1).numpy().data)
    os.replace(path + ".tmp", path)


def make_model(work, layers, shape):
    import torch
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
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # randn on the GPU: seconds, not minutes
    weight_map, gen = {}, torch.Generator(device=dev).manual_seed(0)
    for key, items in sorted(groups.items()):
        fname = f"model-{key}.safetensors"
        tensors = {}
        for name, shape in items:
            if name.endswith("norm.weight"):
                t = torch.ones(shape, dtype=torch.bfloat16)
            else:
                t = (torch.randn(shape, device=dev, generator=gen) * 0.02).bfloat16().cpu()
            tensors[name] = t
            weight_map[name] = fname
        _write_safetensors(os.path.join(src, fname), tensors)
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


def _pinned_copy_GBps(n):
    """Pinned host -> device copy of n bytes: the link's ceiling in this run (median of 5)."""
    import torch
    h = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    d = torch.empty(n, dtype=torch.uint8, device="cuda")
    return n / _median(_timed(lambda: d.copy_(h, non_blocking=True), 6)[1:]) / 1e9


def mode_ceiling(a):
    n = layer_bytes(a.src) // a.layers
    return {"pinned_copy_GBps": _pinned_copy_GBps(n), "layer_bytes": n}


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


def mode_stream(a, path, options, engine="layerstreamer"):
    """hct.stream at the budget (hct.stream.budget_plan: prefetch, and with one slot the
    partial second slot extra_bytes; engine "python" has no extra_bytes)."""
    import torch
    import hct.stream
    from generate import build
    plan = hct.stream.budget_plan(path, hct.parse_size(a.budget))
    pf, extra = plan["prefetch"], plan["extra_bytes"] if engine == "layerstreamer" else 0
    model, _ = build(a.src, torch.bfloat16)
    s = hct.stream.attach(model, path, prefetch=pf, device="cuda:0", options=options,
                          extra_bytes=extra, engine=engine)
    t0 = time.perf_counter()
    first = decode_steps(model, 1, "cuda")  # the first passes pay for registration/setup
    setup = time.perf_counter() - t0
    w0 = s.stats().get("wait_seconds", 0.0)
    st = decode_steps(model, a.steps, "cuda")
    waited = (s.stats().get("wait_seconds", 0.0) - w0) / (a.steps + 3)  # prefill + warm-up too
    # Every step streams every layer once (the slots hold fewer layers than the model): the
    # rate is the layers' bytes over the step time.
    per_step = layer_bytes(a.src) if s.nslots < s.n else 0
    stats = s.stats()
    buf = stats.get("buffer_bytes", 0)  # the C streamer's buffer is not torch memory
    return {"step_s": _median(st), "steps_s": [round(x, 4) for x in st], "first_s": first[0],
            "setup_s": setup, "prefetch": pf, "extra_bytes": extra, "engine": engine,
            "GBps": per_step / _median(st) / 1e9, "streamed_per_step_GB": per_step / 1e9,
            "wait_per_forward_s": waited, "restarts": stats.get("restarts"),
            "buffer_GB": buf / 1e9, "budget_GB": hct.parse_size(a.budget) / 1e9,
            "gpu_peak_GB": (torch.cuda.max_memory_allocated() + buf) / 1e9,
            "pinned_MB": stats["pinned_staging_bytes"] / 1e6,
            "registered_GB": stats["registered_bytes"] / 1e9}


def _timed(fn, reps):
    """[seconds] of `reps` calls of fn (CUDA synchronised around each), and the last result
    dropped before the next call."""
    import torch
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        d = fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
        del d
    return ts


def _breakdown(f, shared, reps=3):
    """Median ms of each phase of one load of file f through hct.Runtime: open (catalog and,
    unshared, a new engine: pinned ring, streams, threads), load (the enqueue: reads of a
    one-shot load are done when it returns), sync (the copies' tail), close, free (dropping
    the tensors and synchronising)."""
    import torch
    from hct._core import Runtime
    phases = {k: [] for k in ("open", "load", "sync", "close", "free")}
    for _ in range(reps):
        torch.cuda.synchronize()
        t = [time.perf_counter()]
        rt = Runtime(f, device="cuda:0", shared=shared)
        t.append(time.perf_counter())
        names = list(rt.infos())
        if shared:
            out = rt.load_tensors(names)  # one torch allocation
        else:  # the path before shared engines: the runtime allocates, DLPack per tensor
            out = rt._load_dlpack(names, None)
        t.append(time.perf_counter())
        torch.cuda.synchronize()
        t.append(time.perf_counter())
        rt.close()
        t.append(time.perf_counter())
        del out
        torch.cuda.synchronize()
        t.append(time.perf_counter())
        for i, k in enumerate(phases):
            phases[k].append(1e3 * (t[i + 1] - t[i]))
    return {k: round(_median(v), 2) for k, v in phases.items()}


def mode_loadfile(a):
    """One layer file, page-cache hot: hct.torch.load_file's first call in the process (what a
    user's one load costs: it makes the shared engine; the torch allocator holds nothing yet),
    safetensors' first call (its allocator emptied likewise) and its two ways to the GPU
    repeated, hct repeated (shared engine), the same with the file resident (registered on the
    first call), the unshared path (a new runtime per call), per-phase breakdowns, and the
    pinned-copy ceiling of the same bytes. Loading libhct.so itself (its first use in the
    process) is timed apart: lib_load_s."""
    import torch
    import hct.torch
    from safetensors.torch import load_file
    f = os.path.join(a.src, "model-layer000.safetensors")
    n = os.path.getsize(f)
    with open(f, "rb") as fh:  # page cache hot for both libraries
        while fh.read(64 << 20):
            pass
    torch.zeros(1, device="cuda")  # the CUDA context: neither library's cost
    res = {"file_bytes": n}
    t0 = time.perf_counter()
    hct.library_version()  # dlopen libhct.so (and its CUDA runtime)
    res["lib_load_s"] = time.perf_counter() - t0
    rate = lambda ts: n / _median(ts) / 1e9  # noqa: E731
    one = lambda **kw: hct.torch.load_file(f, device="cuda", progress=False, **kw)  # noqa: E731
    ts = _timed(one, 4)  # the process's first hct call: makes the shared engine
    res["hct_first_s"] = ts[0]
    res["hct_first_GBps"], res["hct_repeat_GBps"] = n / ts[0] / 1e9, rate(ts[1:])
    res["hct_first_with_lib_GBps"] = n / (ts[0] + res["lib_load_s"]) / 1e9
    res["shared_engine"] = hct.shared_stats()
    torch.cuda.empty_cache()
    ts = _timed(lambda: load_file(f, device="cuda"), 4)
    res["st_cuda_first_GBps"], res["st_cuda_GBps"] = n / ts[0] / 1e9, rate(ts[1:])
    ts = _timed(lambda: {k: v.to("cuda") for k, v in load_file(f).items()}, 4)
    res["st_cpu_to_cuda_GBps"] = rate(ts[1:])
    best = max(res["st_cuda_GBps"], res["st_cpu_to_cuda_GBps"])
    res["hct_repeat2_GBps"] = rate(_timed(one, 3))  # again, after safetensors ran
    res["pinned_copy_GBps"] = _pinned_copy_GBps(n)
    hct.release_shared()
    res["hct_unshared_GBps"] = rate(_timed(lambda: one(shared=False), 3))
    opts = {"resident_budget": 4 << 30}
    ts = _timed(lambda: one(options=opts), 4)
    res["hct_resident_first_GBps"], res["hct_resident_repeat_GBps"] = n / ts[0] / 1e9, rate(ts[1:])
    res["resident_engine"] = hct.shared_stats()
    hct.release_shared()
    one()  # a shared engine again for the breakdown
    res["breakdown_shared_ms"] = _breakdown(f, True)
    res["breakdown_unshared_ms"] = _breakdown(f, False)
    for k in ("hct_first", "hct_first_with_lib", "hct_repeat", "hct_repeat2", "hct_unshared",
              "hct_resident_first", "hct_resident_repeat"):
        res[k + "_vs_st_best"] = res[k + "_GBps"] / best
    res["hct_first_vs_st_first"] = res["hct_first_GBps"] / res["st_cuda_first_GBps"]
    return res


def mode_layers_alone(a, path, options):
    """LayerStreamer alone (hct.stream.LayerIterator over hct_streamer_*) on the same files, no
    compute: per pass (restart + every layer), GB/s of layer bytes; at the streamed mode's
    settings (prefetch and extra_bytes of budget_plan) and with one plain slot (extra 0)."""
    import hct.stream
    plan = hct.stream.budget_plan(path, hct.parse_size(a.budget))
    pf = plan["prefetch"]
    nbytes = layer_bytes(a.src)
    res = {"prefetch": pf}
    for key, extra in (("", plan["extra_bytes"]), ("_extra0", 0)):
        if key and not plan["extra_bytes"]:
            continue
        it = hct.stream.LayerIterator(path, prefetch=pf, device="cuda:0", options=options,
                                      extra_bytes=extra)

        def one_pass(first):
            if not first:
                it.restart()
            for _, tensors in it:
                del tensors
        ts = [_timed(lambda: one_pass(True), 1)[0]] + _timed(lambda: one_pass(False),
                                                             a.steps + 1)
        st = it.rt.stats()
        it.close()
        res.update({"extra_bytes" + key: extra, "first_s" + key: ts[0],
                    "pass_s" + key: _median(ts[2:]), "GBps" + key: nbytes / _median(ts[2:]) / 1e9,
                    "slot_bytes" + key: it.slot_bytes,
                    "pinned_MB" + key: st["pinned_staging_bytes"] / 1e6,
                    "registered_GB" + key: st["registered_bytes"] / 1e9})
    res["GBps_best"] = max(res["GBps"], res.get("GBps_extra0", 0))
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
    elif a.mode == "hct-st-py":
        r = mode_stream(a, a.src, {}, engine="python")
    elif a.mode == "loadfile-ring256":
        r = mode_loadfile(a)
    elif a.mode == "loadfile":
        r = mode_loadfile(a)
    elif a.mode == "ls-cache":
        r = mode_layers_alone(a, os.path.join(work, "cache"), {"resident_budget": 64 << 30})
    elif a.mode == "ls-files":
        r = mode_layers_alone(a, os.path.join(work, "hct"), {})
    elif a.mode == "ls-st":
        r = mode_layers_alone(a, a.src, {})
    else:
        sys.exit(f"unknown mode {a.mode}")
    print("RESULT " + json.dumps({"mode": a.mode, **r}), flush=True)


MODES = ["ceiling", "whole", "accelerate", "hct-cache", "ls-cache", "hct-files", "ls-files",
         "hct-st", "ls-st", "loadfile", "loadfile-ring256"]  # hct-st-py: on request
# loadfile-ring256: loadfile with the ring shared engines had before (256 MiB of 8 MiB chunks)
MODE_ENV = {"loadfile-ring256": {"HCT_STAGING_BYTES": "256M", "HCT_CHUNK_BYTES": "8M"}}
NEEDS_HCT = {"hct-cache", "ls-cache", "hct-files", "ls-files"}  # the conversion (and the warm)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work")
    ap.add_argument("--bin", required=True, help="CUDA build dir (hct-convert, hct-cache, libhct)")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--budget", default="4GiB")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--tiny", action="store_true", help="a small shape (smoke test)")
    ap.add_argument("--during-setup", metavar="CMD",
                    help="a shell command run while the model is built, converted and warmed "
                         "(e.g. the GPU tests); waited for before the first measurement")
    ap.add_argument("--mode-timeout", type=int, default=120, help="seconds per mode")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ.setdefault("HCT_LIBRARY", os.path.join(os.path.abspath(a.bin), "runtime",
                                                      "libhct.so"))
    if a.mode:
        return run_mode(a)
    os.makedirs(a.work, exist_ok=True)
    side = subprocess.Popen(a.during_setup, shell=True) if a.during_setup else None
    t0 = time.perf_counter()
    src = make_model(a.work, a.layers, TINY if a.tiny else SHAPE)
    print(f"model: {src} ({time.perf_counter() - t0:.1f} s)", flush=True)
    if NEEDS_HCT & set(a.modes.split(",")):
        _, _, times = convert_and_warm(a.work, src, a.bin)
        print(f"setup: {times}", flush=True)
    if side is not None:
        t0 = time.perf_counter()
        rc = side.wait()  # nothing else runs while the modes measure
        print(f"--during-setup: exit {rc} (waited {time.perf_counter() - t0:.1f} s more)",
              flush=True)
    results = {}
    for m in a.modes.split(","):
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, a.work, "--bin", a.bin, "--layers", str(a.layers),
               "--steps", str(a.steps), "--budget", a.budget, "--mode", m, "--src", src]
        try:  # a mode that hangs costs its timeout, not the run
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.mode_timeout,
                               env={**os.environ, **MODE_ENV.get(m, {})})
        except subprocess.TimeoutExpired as e:
            print(f"{m}: timed out after {a.mode_timeout} s: {str(e.stderr or '')[-1500:]}",
                  flush=True)
            continue
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode or not lines:
            print(f"{m}: failed (rc {p.returncode}): {p.stderr[-1500:]}", flush=True)
            continue
        results[m] = {**json.loads(lines[-1][7:]), "wall_s": round(time.perf_counter() - t0, 1)}
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
    for m in ("cache", "files", "st"):  # the "within 10% of LayerStreamer alone"
        s, ls = r.get("hct-" + m, {}), r.get("ls-" + m, {})
        if s.get("GBps") and ls.get("GBps"):
            print(f"hct-{m}: streamed {s['GBps']:.1f} GB/s (prefetch {s['prefetch']}, extra "
                  f"{s['extra_bytes'] / 1e9:.2f} GB, waited {s['wait_per_forward_s'] * 1e3:.0f} "
                  f"ms per forward); LayerStreamer alone at the same settings {ls['GBps']:.1f} "
                  f"GB/s: {s['GBps'] / ls['GBps']:.2f}x; LayerStreamer alone best "
                  f"{ls['GBps_best']:.1f} GB/s (one plain slot {ls.get('GBps_extra0', 0):.1f}): "
                  f"{s['GBps'] / ls['GBps_best']:.2f}x; GPU peak {s['gpu_peak_GB']:.2f} GB of "
                  f"{s['budget_GB']:.2f}; pinned {s['pinned_MB']:.0f} MB, registered "
                  f"{s['registered_GB']:.2f} GB")
    if r.get("hct-st-py", {}).get("GBps") and r.get("ls-st", {}).get("GBps"):
        p = r["hct-st-py"]
        print(f"hct-st-py (hooks issue the loads, the previous path): {p['GBps']:.1f} GB/s = "
              f"{p['GBps'] / r['ls-st']['GBps_best']:.2f}x LayerStreamer alone best")
    for name in ("loadfile", "loadfile-ring256"):
        lf = r.get(name)
        if not lf:
            continue
        print(f"{name}: ring {lf['shared_engine'][0]['pinned_staging_bytes'] / 2**20:.0f} MiB")
        best = max(lf["st_cuda_GBps"], lf["st_cpu_to_cuda_GBps"])
        print(f"load_file of one layer file ({lf['file_bytes'] / 1e9:.2f} GB, page cache hot), "
              f"pinned ceiling {lf['pinned_copy_GBps']:.1f} GB/s, safetensors best "
              f"{best:.2f} GB/s (device=cuda {lf['st_cuda_GBps']:.2f}, cpu then .to "
              f"{lf['st_cpu_to_cuda_GBps']:.2f}):")
        for k in ("hct_first", "hct_first_with_lib", "hct_repeat", "hct_repeat2",
                  "hct_unshared", "hct_resident_first", "hct_resident_repeat"):
            if k + "_GBps" in lf:
                print(f"  {k}: {lf[k + '_GBps']:.2f} GB/s = {lf[k + '_vs_st_best']:.2f}x")
        if "hct_first_vs_st_first" in lf:
            eng = lf["shared_engine"][0] if lf["shared_engine"] else {}
            print(f"  first calls: hct {lf['hct_first_s'] * 1e3:.0f} ms (engine made in "
                  f"{eng.get('create_seconds', 0) * 1e3:.0f} ms; libhct.so loaded before in "
                  f"{lf['lib_load_s'] * 1e3:.0f} ms) = {lf['hct_first_vs_st_first']:.2f}x "
                  f"safetensors' first call ({lf['st_cuda_first_GBps']:.2f} GB/s)")


if __name__ == "__main__":
    sys.exit(main())
