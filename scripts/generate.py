#!/usr/bin/env python3
"""Greedy generation with HCT layer streaming (hct.stream) on a Hugging Face Llama-family model.

    python3 scripts/generate.py MODEL --prompt TEXT --gpu-budget 4G [--max-new-tokens 32]
        [--config DIR] [--prefetch N] [--device cuda:0] [--compare]

MODEL: a Hugging Face folder (config.json + safetensors), an HCT folder or a warm cache dir
(then --config names the folder with config.json). The model is built on 'meta' (no host copy
of the weights); the embeddings, final norm and head go to the GPU; decoder layers stream in
prefetch + 1 slots. --gpu-budget picks the largest prefetch whose slots plus the resident part
fit (--prefetch overrides). Byte-level models (vocab 256) use bytes as tokens; others the
folder's tokenizer. Prints the text, tokens/s, GB/s of layer weights streamed and the memory
held; --compare also runs the whole model on the GPU and reports whether the text is identical.
Needs torch and transformers (the GPU machine has both).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import torch  # noqa: E402

import hct  # noqa: E402
import hct.stream  # noqa: E402
from hct._core import Runtime  # noqa: E402


def pick_prefetch(path, budget, device):
    """(prefetch, rest, largest layer, layers, extra_bytes) for `budget`: hct.stream.budget_plan
    (whole slots, then with one slot the bytes left as LayerStreamer's partial second slot)."""
    try:
        p = hct.stream.budget_plan(path, budget)
    except hct.HCTError as e:
        sys.exit(f"generate: --gpu-budget: {e}")
    return p["prefetch"], p["rest"], p["layer"], p["layers"], p["extra_bytes"]


def _files(path):
    if os.path.isdir(path):
        return [os.path.join(path, f) for f in os.listdir(path)
                if f.endswith(".safetensors") or f.endswith(".hct")]
    return [path]


def build(config_dir, dtype):
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.from_pretrained(config_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    # Non-persistent buffers (rotary inv_freq) are not in the file: rebuild them for real.
    rot = getattr(model.model, "rotary_emb", None)
    if rot is not None:
        model.model.rotary_emb = type(rot)(config=cfg)
    return model.eval(), cfg


def encode(cfg, config_dir, text):
    if cfg.vocab_size == 256:
        return list(text.encode()), lambda ids: bytes(ids).decode(errors="replace")
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(config_dir)
    return tok(text)["input_ids"], lambda ids: tok.decode(ids)


def run(model, ids, n, device, on_start=None):
    x = torch.tensor([ids], device=device)
    with torch.no_grad():
        model.generate(x, max_new_tokens=2, do_sample=False)  # warm-up (kernels, slots)
        torch.cuda.synchronize(device)
        if on_start:
            on_start()  # counters start after the warm-up
        t0 = time.perf_counter()
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False)
        torch.cuda.synchronize(device)
    return out[0, len(ids):].tolist(), time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--gpu-budget", default="4G")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--prefetch", type=int)
    ap.add_argument("--config", help="folder with config.json (default: MODEL)")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--resident-budget", default="0",
                    help="map + register the files for DMA loads, up to SIZE (0: one-shot reads)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("generate: needs a CUDA device (hct.stream's host mode is for tests)")
    config_dir = a.config or a.model
    budget = hct.parse_size(a.gpu_budget)
    pf, rest, layer_bytes, nl, extra = pick_prefetch(a.model, budget, a.device)
    if a.prefetch is not None:
        pf, extra = a.prefetch, 0
    model, cfg = build(config_dir, torch.bfloat16)
    ids, decode = encode(cfg, config_dir, a.prompt)
    opts = {"resident_budget": hct.parse_size(a.resident_budget)}
    s = hct.stream.attach(model, a.model, prefetch=pf, device=a.device, options=opts,
                          extra_bytes=extra)
    if opts["resident_budget"]:
        for f in sorted({spec_file for spec_file in _files(a.model)}):
            s.rt.make_resident(f)
    start = {}
    out, secs = run(model, ids, a.max_new_tokens, a.device,
                    lambda: start.update(bytes=s.bytes_streamed, issue=s.load_seconds))
    streamed = s.bytes_streamed - start["bytes"]
    issue0 = start["issue"]
    st = s.stats()
    print(f"text: {a.prompt}{decode(out)!s}")
    print(f"layers {nl}, slots {s.nslots} x {s.slot_bytes / 1e9:.3f} GB + extra "
          f"{getattr(s, 'extra_bytes', 0) / 1e9:.3f} GB, resident part "
          f"{rest / 1e9:.3f} GB, budget {budget / 1e9:.2f} GB")
    print(f"tokens/s {a.max_new_tokens / secs:.2f} ({secs / a.max_new_tokens * 1e3:.1f} ms/token); "
          f"streamed {streamed / 1e9:.2f} GB at {streamed / secs / 1e9:.2f} GB/s; "
          f"GPU memory held {torch.cuda.max_memory_allocated(a.device) / 1e9:.2f} GB peak; "
          f"pinned staging {st['pinned_staging_bytes'] / 1e6:.0f} MB; host time issuing loads "
          f"{(st['issue_seconds'] - issue0) / secs * 100:.0f}% of the run")
    if a.compare:
        s.detach()
        del model, s
        torch.cuda.empty_cache()
        from transformers import AutoModelForCausalLM
        whole = AutoModelForCausalLM.from_pretrained(config_dir, dtype=torch.bfloat16).to(a.device)
        ref, rsecs = run(whole.eval(), ids, a.max_new_tokens, a.device)
        print(f"whole model: tokens/s {a.max_new_tokens / rsecs:.2f}; text identical: {ref == out}")
        return 0 if ref == out else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
