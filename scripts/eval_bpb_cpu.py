#!/usr/bin/python3
"""Bits per byte of kdoc-lm-25m (and a KL figure for stories260K) on the CPU, without transformers.

    /usr/bin/python3 scripts/eval_bpb_cpu.py [--model kdoc|stories] [--val VAL] [--bytes N]
        [--threads T] [--compute bf16|fp32] [--rtn METHOD] DIR [DIR...]

Needs only Debian's python3-torch (scripts/setup.sh installs it): the safetensors files are read
here and the LLaMA forward pass is written out below, op for op as transformers'
LlamaForCausalLM computes it (RMSNorm in float32 and cast back, RoPE with the cos/sin in the
weights' dtype, grouped-query causal attention with softmax in float32, SiLU MLP, untied or tied
lm_head).

kdoc (default): the protocol of ../shared/weights/README.md and eval_bpb.py: token id = byte
value; windows of 512 at stride 512, x = val[s:s+512], y = val[s+1:s+513] for s < len - 513;
bits/byte = sum of cross-entropy in nats / count / ln 2, logits in float32. `--compute bf16`
(default) rounds every activation to bfloat16 where the GPU run under bf16 autocast holds a bf16
tensor (matmuls accumulate in float32, as cuBLAS does); `--compute fp32` keeps float32
activations. `--bytes N` evaluates only the windows inside the first N bytes of val.txt (the
same windows for every folder, so differences between folders stay paired).

stories (stories260K, no held-out text shipped): `--samples` sequences of `--seq` tokens are
drawn from the ORIGINAL weights (seeded multinomial sampling from BOS = 1, temperature 1); each
DIR is scored by the mean cross-entropy in bits per token on those sequences and by the mean
KL divergence KL(original || DIR) of the next-token distributions over every position, in bits
per token (exact per position, so much less noisy than the cross-entropy change).

`--rtn` replaces, before the evaluation, every tensor that hct-convert's policy makes lossy
(2-D+ float tensors with >= 4096 weights whose name has no `norm` and does not end in `bias`)
by its round-to-nearest reconstruction: `int8` (per row, absmax/127, fp16 scale), `sym4`
(groups of 128 along the last dim, absmax/7, clamp to [-8, 7], fp16 scale), `asym4` / `asym3`
(groups of 128, min/max, fp16 scale (max-min)/(2^b-1) and fp16 min, q = clamp(round((x-min)/s),
0, 2^b-1), x' = min + q s). It prints the aggregate relative RMS error of those tensors so the
figure can be checked against `hct-convert baseline`.

Prints one line per folder: "<dir>[ rtn=<m>] bits_per_byte=<v> bytes=<n> ..." (stories:
bits_per_token=).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def read_safetensors(path):
    """{name: tensor} of one safetensors file (BF16/F16/F32 only, what these models hold)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        dt = DTYPES[e["dtype"]]
        t = torch.frombuffer(data, dtype=torch.uint8, count=b - a, offset=a) if b > a else \
            torch.empty(0, dtype=torch.uint8)
        out[name] = t.view(dt).reshape(e["shape"]).clone()
    return out


def read_model(d):
    state = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            state.update(read_safetensors(os.path.join(d, f)))
    if not state:
        raise SystemExit(f"{d}: no .safetensors files")
    return state


# ---- round-to-nearest baselines ----------------------------------------------------------------

def lossy_by_policy(name, t):
    low = name.lower()
    return (t.dtype in (torch.bfloat16, torch.float16, torch.float32) and t.dim() >= 2 and
            t.numel() >= 4096 and "norm" not in low and not low.endswith("bias"))


def fp16(t):
    return t.to(torch.float16).to(torch.float64)


def rtn(x, method):
    """Reconstruction of x (float64, 2-D view rows x cols) by one RTN method."""
    rows, cols = x.shape
    if method == "int8":
        s = fp16(x.abs().amax(dim=1, keepdim=True) / 127)
        return torch.where(s > 0, torch.clamp(torch.round(x / s), -127, 127) * s, 0 * x)
    g = 128
    pad = (-cols) % g
    xp = F.pad(x, (0, pad)) if pad else x
    xg = xp.reshape(rows, -1, g)
    valid = torch.ones(cols + pad, dtype=torch.bool)
    valid[cols:] = False
    valid = valid.reshape(1, -1, g)
    if method == "sym4":
        amax = torch.where(valid, xg.abs(), torch.zeros(())).amax(dim=2, keepdim=True)
        s = fp16(amax / 7)
        y = torch.where(s > 0, torch.clamp(torch.round(xg / s), -8, 7) * s, 0 * xg)
    elif method in ("asym4", "asym3"):
        qmax = 15 if method == "asym4" else 7
        inf = torch.tensor(float("inf"), dtype=x.dtype)
        mn = torch.where(valid, xg, inf).amin(dim=2, keepdim=True)
        mx = torch.where(valid, xg, -inf).amax(dim=2, keepdim=True)
        s, m = fp16((mx - mn) / qmax), fp16(mn)
        q = torch.clamp(torch.round((xg - m) / torch.where(s > 0, s, torch.ones(()))), 0, qmax)
        y = m + q * s
    else:
        raise SystemExit(f"unknown --rtn {method}")
    return y.reshape(rows, -1)[:, :cols]


def apply_rtn(state, method):
    see = sxx = 0.0
    n = 0
    for name, t in state.items():
        if not lossy_by_policy(name, t):
            continue
        x = t.to(torch.float64).reshape(-1, t.shape[-1])
        y = rtn(x, method).to(t.dtype).to(torch.float64)  # back to the tensor's dtype
        see += float(((x - y) ** 2).sum())
        sxx += float((x ** 2).sum())
        n += t.numel()
        state[name] = y.reshape(t.shape).to(t.dtype)
    return math.sqrt(see / sxx) if sxx else 0.0, n


# ---- simulated local-scale quantizers (issue 13 item 3 experiments) ---------------------------

def entropy_bits(q):
    _, counts = torch.unique(q, return_counts=True)
    p = counts.double() / q.numel()
    return float(-(p * torch.log2(p)).sum())


def local_scale(x, kind, alpha):
    """Per-row ("row"), per-column ("col") or per-group-of-128 ("g128") scale (rms / tensor rms)
    ** alpha, rounded to F16 as it would be stored; returns (scale broadcastable to x, its bits)."""
    rows, cols = x.shape
    tot = x.pow(2).mean().sqrt()
    if kind == "row":
        r, nscale = x.pow(2).mean(dim=1, keepdim=True).sqrt(), rows
    elif kind == "col":
        r, nscale = x.pow(2).mean(dim=0, keepdim=True).sqrt(), cols
    elif kind == "g128":
        g = 128 if cols % 128 == 0 else cols
        r = x.reshape(rows, -1, g).pow(2).mean(dim=2, keepdim=True).sqrt()
        r = r.expand(rows, cols // g, g).reshape(rows, cols)
        nscale = rows * (cols // g)
    else:
        return torch.ones(()), 0
    sc = fp16(torch.clamp(r / tot, min=1e-3) ** alpha)
    return sc, 16 * nscale


def sim_quantize(x, kind, alpha, bits):
    """Uniform step on x / scale, the step solved so that the order-0 entropy of the symbols plus
    the scales' bits is `bits` per weight; returns (reconstruction, bits spent)."""
    sc, extra = local_scale(x, kind, alpha) if alpha else (torch.ones(()), 0)
    z = x / sc
    rms = float(z.pow(2).mean().sqrt())
    lo, hi = rms * 1e-4, rms * 64
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        b = entropy_bits(torch.round(z / mid)) + extra / x.numel()
        lo, hi = (mid, hi) if b > bits else (lo, mid)
    step = hi
    return torch.round(z / step) * step * sc, entropy_bits(torch.round(z / step)) + extra / x.numel()


def apply_sim(state, spec):
    """spec "KIND:ALPHA:BITS", e.g. "row:0.5:3.5", "none:0:3.5" (one step per tensor)."""
    kind, alpha, bits = spec.split(":")
    alpha, bits = float(alpha), float(bits)
    see = sxx = spent = 0.0
    n = 0
    for name, t in state.items():
        if not lossy_by_policy(name, t):
            continue
        x = t.to(torch.float64).reshape(-1, t.shape[-1])
        y, b = sim_quantize(x, kind, alpha, bits)
        y = y.to(t.dtype).to(torch.float64)
        see += float(((x - y) ** 2).sum())
        sxx += float((x ** 2).sum())
        spent += b * t.numel()
        n += t.numel()
        state[name] = y.reshape(t.shape).to(t.dtype)
    return math.sqrt(see / sxx), spent / n


# ---- the model ---------------------------------------------------------------------------------

class Llama:
    def __init__(self, state, cfg, compute):
        self.cfg = cfg
        self.nh, self.nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.nh
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.layers = cfg["num_hidden_layers"]
        self.wdt = next(iter(state.values())).dtype
        # bf16: activations rounded where the bf16-autocast GPU run holds bf16 tensors.
        self.r = (lambda t: t.to(torch.bfloat16).float()) if compute == "bf16" else (lambda t: t)
        self.w = {k: v.float() for k, v in state.items()}
        if "lm_head.weight" not in self.w:  # tied embeddings (stories260K)
            self.w["lm_head.weight"] = self.w["model.embed_tokens.weight"]
        theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 1e4))
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float()
                                         / self.hd))

    def lin(self, x, name):
        return self.r(x @ self.w[name + ".weight"].t())

    def norm(self, x, name):
        # LlamaRMSNorm: float32 variance, cast back to the input dtype, times the weight.
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.r(self.w[name + ".weight"] * self.r(h))

    def rope(self, seq):
        freqs = torch.arange(seq).float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return self.r(emb.cos()), self.r(emb.sin())

    def attn(self, h, p, cos, sin):
        b, s, _ = h.shape
        q = self.lin(h, p + "q_proj").view(b, s, self.nh, self.hd).transpose(1, 2)
        k = self.lin(h, p + "k_proj").view(b, s, self.nkv, self.hd).transpose(1, 2)
        v = self.lin(h, p + "v_proj").view(b, s, self.nkv, self.hd).transpose(1, 2)

        def rot(t):
            t1, t2 = t[..., :self.hd // 2], t[..., self.hd // 2:]
            return torch.cat((-t2, t1), dim=-1)
        q = self.r(self.r(q * cos) + self.r(rot(q) * sin))
        k = self.r(self.r(k * cos) + self.r(rot(k) * sin))
        rep = self.nh // self.nkv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        sc = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        mask = torch.ones(s, s, dtype=torch.bool).triu(1)
        pr = torch.softmax(sc.masked_fill(mask, float("-inf")), dim=-1)
        o = self.r(pr @ v).transpose(1, 2).reshape(b, s, self.nh * self.hd)
        return self.lin(o, p + "o_proj")

    def logits(self, ids):
        h = self.w["model.embed_tokens.weight"][ids]
        cos, sin = self.rope(ids.shape[1])
        for i in range(self.layers):
            p = f"model.layers.{i}."
            h = self.r(h + self.attn(self.norm(h, p + "input_layernorm"), p + "self_attn.", cos, sin))
            x = self.norm(h, p + "post_attention_layernorm")
            m = self.r(self.r(F.silu(self.lin(x, p + "mlp.gate_proj"))) *
                       self.lin(x, p + "mlp.up_proj"))
            h = self.r(h + self.lin(m, p + "mlp.down_proj"))
        return self.lin(self.norm(h, "model.norm"), "lm_head").float()


def cross_entropy_sum(model, xs, ys, batch, ref_logp=None):
    """Summed cross-entropy (nats); with ref_logp (list of reference log-probs per batch) also
    the summed KL(reference || model) in nats."""
    total = kl = 0.0
    with torch.no_grad():
        for k, i in enumerate(range(0, len(xs), batch)):
            x, y = torch.stack(xs[i:i + batch]), torch.stack(ys[i:i + batch])
            lg = model.logits(x)
            total += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1),
                                     reduction="sum").item()
            if ref_logp is not None:
                lp = torch.log_softmax(lg, dim=-1)
                kl += float((ref_logp[k].exp() * (ref_logp[k] - lp)).sum())
    return total, kl


def reference_logp(model, xs, batch):
    with torch.no_grad():
        return [torch.log_softmax(model.logits(torch.stack(xs[i:i + batch])), dim=-1)
                for i in range(0, len(xs), batch)]


def kdoc_windows(val_path, nbytes):
    val = torch.frombuffer(bytearray(open(val_path, "rb").read()), dtype=torch.uint8).long()
    if nbytes:
        val = val[:nbytes]
    seq = 512
    starts = range(0, val.numel() - seq - 1, seq)
    return [val[s:s + seq] for s in starts], [val[s + 1:s + seq + 1] for s in starts]


def stories_samples(model, n, seq, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.ones(n, 1, dtype=torch.long)
    with torch.no_grad():
        for _ in range(seq):
            p = torch.softmax(model.logits(ids)[:, -1, :], dim=-1)
            ids = torch.cat([ids, torch.multinomial(p, 1, generator=g)], dim=1)
    return [r[:-1] for r in ids], [r[1:] for r in ids]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    weights = os.path.join(os.path.dirname(os.path.dirname(here)), "shared", "weights")
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--model", choices=["kdoc", "stories"], default="kdoc")
    ap.add_argument("--val", default=os.path.join(weights, "kdoc-lm-25m", "val.txt"))
    ap.add_argument("--config", default=None, help="config.json (default: the first DIR's)")
    ap.add_argument("--bytes", type=int, default=0, help="only the first N bytes of val.txt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--compute", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--rtn", default=None, help="comma list of none,int8,sym4,asym4,asym3 (none: the weights as read)")
    ap.add_argument("--sim", default=None,
                    help="comma list of KIND:ALPHA:BITS simulated quantizers (KIND none, row, "
                         "col, g128); --sim-only prints their error and bits without evaluating")
    ap.add_argument("--sim-only", action="store_true")
    ap.add_argument("--samples", type=int, default=32, help="stories: sequences to draw")
    ap.add_argument("--seq", type=int, default=128, help="stories: tokens per sequence")
    ap.add_argument("--reference", default=os.path.join(weights, "stories260K"),
                    help="stories: the original weights the sequences are drawn from")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.config or os.path.join(a.dirs[0], "config.json")))
    if a.sim_only:
        for spec in a.sim.split(","):
            err, bits = apply_sim(read_model(a.dirs[0]), spec)
            print(f"{a.dirs[0]} sim={spec} rel_rms_error={err:.6f} bits={bits:.4f}", flush=True)
        return 0
    ref_logp = None
    if a.model == "kdoc":
        xs, ys = kdoc_windows(a.val, a.bytes)
    else:
        ref = Llama(read_model(a.reference), cfg, a.compute)
        xs, ys = stories_samples(ref, a.samples, a.seq, 1)
        ref_logp = reference_logp(ref, xs, a.batch)
    count = sum(y.numel() for y in ys)
    methods = (a.rtn.split(",") if a.rtn else []) + \
        (["sim=" + m for m in a.sim.split(",")] if a.sim else [])
    jobs = [(d, m) for d in a.dirs for m in (methods or [None])]
    for d, method in jobs:
        t0 = time.time()
        state = read_model(d)
        extra = ""
        if method and method.startswith("sim="):
            err, bits = apply_sim(state, method[4:])
            extra = f" sim_rel_rms_error={err:.6f} sim_bits={bits:.4f}"
        elif method and method != "none":
            err, n = apply_rtn(state, method)
            extra = f" rtn_rel_rms_error={err:.6f} rtn_weights={n}"
        model = Llama(state, cfg, a.compute)
        ce, kl = cross_entropy_sum(model, xs, ys, a.batch, ref_logp)
        if ref_logp is not None:
            extra += f" kl_bits_per_token={kl / count / math.log(2):.6f}"
        unit = "bits_per_byte" if a.model == "kdoc" else "bits_per_token"
        tag = f"{d}" + (f" {method}" if method and method.startswith("sim=") else
                         f" rtn={method}" if method and method != "none" else "")
        print(f"{tag} {unit}={ce / count / math.log(2):.6f} "
              f"{'bytes' if a.model == 'kdoc' else 'tokens'}={count}{extra} "
              f"seconds={time.time() - t0:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
