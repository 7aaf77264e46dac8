#!/usr/bin/python3
"""Per-tensor sensitivity of a LLaMA-family causal LM, for `hct-convert --sensitivity FILE`.

    /usr/bin/python3 scripts/hct_sensitivity.py MODEL_DIR OUT.json [--samples 16] [--seq 256]
        [--seed 1234] [--threads 2] [--start-token T] [--text CALIB.txt]

Data-free by default: `--samples` sequences of `--seq` tokens are drawn from the model itself
(temperature 1, seeded, from BOS or `--start-token`), and the diagonal Fisher information of the
model's own distribution is estimated from them: F_i = E[(d log p(sequence) / d w_i)^2], one
gradient per sequence (the per-token scores of a sequence drawn from the model are uncorrelated,
so the square of their sum estimates the sum of the per-token Fisher diagonals). The expected
rise of the cross-entropy when weight i moves by d_i is about 1/2 sum_i F_i d_i^2 (the Fisher is
the Gauss-Newton curvature at the model's own predictive distribution), so a tensor quantized
with one uniform step whose error has mean square D per weight costs about 1/2 F_t D, with
F_t = sum of F_i over the tensor: the "fisher_sum" written here. hct-convert spends the bits where
F_t x dD/dR is largest (include/hct/convert.h, AllocateBits).

`--text FILE` uses the bytes of FILE as the sequences instead (byte-level models only; never the
evaluation text), labels drawn from the model's predictive distribution (a true Fisher again).

Needs only Debian's python3-torch; the forward pass is scripts/eval_bpb_cpu.py's (the same ops
as transformers' LlamaForCausalLM), with a key/value cache added here for sampling.

Writes {"format": "hct-sensitivity", "version": 1, "method": ..., "tensors": {name:
{"fisher_sum": F_t, "elements": N_t}}} for every float tensor of the model with >= 2 dims.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_bpb_cpu import Llama, read_model  # noqa: E402


class CachedLlama(Llama):
    """eval_bpb_cpu.Llama with a key/value cache (sampling only; same ops otherwise)."""

    def step(self, ids, cache):
        b, s = ids.shape
        p0 = cache[0][0].shape[2] if cache and cache[0] is not None else 0
        h = self.w["model.embed_tokens.weight"][ids]
        cos, sin = self.rope(p0 + s)
        cos, sin = cos[p0:], sin[p0:]
        new = []
        for i in range(self.layers):
            p = f"model.layers.{i}."
            x = self.norm(h, p + "input_layernorm")
            q = self.lin(x, p + "self_attn.q_proj").view(b, s, self.nh, self.hd).transpose(1, 2)
            k = self.lin(x, p + "self_attn.k_proj").view(b, s, self.nkv, self.hd).transpose(1, 2)
            v = self.lin(x, p + "self_attn.v_proj").view(b, s, self.nkv, self.hd).transpose(1, 2)

            def rot(t):
                t1, t2 = t[..., :self.hd // 2], t[..., self.hd // 2:]
                return torch.cat((-t2, t1), dim=-1)
            q = self.r(self.r(q * cos) + self.r(rot(q) * sin))
            k = self.r(self.r(k * cos) + self.r(rot(k) * sin))
            if cache and cache[i] is not None:
                k = torch.cat([cache[i][0], k], dim=2)
                v = torch.cat([cache[i][1], v], dim=2)
            new.append((k, v))
            rep = self.nh // self.nkv
            kk, vv = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            sc = (q @ kk.transpose(-1, -2)) / math.sqrt(self.hd)
            t = kk.shape[2]
            mask = torch.arange(t)[None, :] > (p0 + torch.arange(s))[:, None]
            pr = torch.softmax(sc.masked_fill(mask, float("-inf")), dim=-1)
            o = self.r(pr @ vv).transpose(1, 2).reshape(b, s, self.nh * self.hd)
            h = self.r(h + self.lin(o, p + "self_attn.o_proj"))
            x = self.norm(h, p + "post_attention_layernorm")
            m = self.r(self.r(F.silu(self.lin(x, p + "mlp.gate_proj"))) *
                       self.lin(x, p + "mlp.up_proj"))
            h = self.r(h + self.lin(m, p + "mlp.down_proj"))
        return self.lin(self.norm(h, "model.norm"), "lm_head").float(), new


def sample(model, n, seq, start, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((n, 1), start, dtype=torch.long)
    cache = [None] * model.layers
    cur = ids
    with torch.no_grad():
        for _ in range(seq - 1):
            lg, cache = model.step(cur, cache)
            cur = torch.multinomial(torch.softmax(lg[:, -1, :], dim=-1), 1, generator=g)
            ids = torch.cat([ids, cur], dim=1)
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--start-token", type=int, default=None,
                    help="first token of every sample (default: bos_token_id, else 10 = '\\n')")
    ap.add_argument("--text", default=None, help="calibration bytes instead of samples")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    state = read_model(a.model)
    model = CachedLlama(state, cfg, "fp32")
    t0 = time.time()
    if a.text:
        data = torch.frombuffer(bytearray(open(a.text, "rb").read()), dtype=torch.uint8).long()
        nwin = min(a.samples, (data.numel() - 1) // a.seq)
        if nwin < 1:
            raise SystemExit(f"{a.text}: shorter than one sequence of {a.seq} bytes")
        stride = (data.numel() - a.seq) // nwin
        seqs = torch.stack([data[i * stride:i * stride + a.seq] for i in range(nwin)])
        method = f"fisher-text:{os.path.basename(a.text)}"
    else:
        start = a.start_token if a.start_token is not None else (cfg.get("bos_token_id") or 10)
        seqs = sample(model, a.samples, a.seq, start, a.seed)
        method = "fisher-self-generated"
    t_sample = time.time() - t0
    names = [k for k, v in state.items() if v.dim() >= 2 and v.is_floating_point()]
    params = {k: model.w[k].requires_grad_(True) for k in names}
    fisher = {k: torch.zeros((), dtype=torch.float64) for k in names}
    g = torch.Generator().manual_seed(a.seed + 1)
    for i in range(seqs.shape[0]):
        x = seqs[i:i + 1]
        lp = torch.log_softmax(model.logits(x), dim=-1)
        if a.text:  # labels from the model's own predictive distribution (true Fisher)
            y = torch.multinomial(lp[0].detach().exp(), 1, generator=g).T
            y = y[:, :x.shape[1]]
        else:  # the next sampled token is the label: drawn from the model
            lp, y = lp[:, :-1], x[:, 1:]
        ll = lp.gather(-1, y[..., None]).sum()
        grads = torch.autograd.grad(ll, [params[k] for k in names])
        for k, gr in zip(names, grads):
            fisher[k] += gr.double().pow(2).sum()
    n = seqs.shape[0]
    out = {"format": "hct-sensitivity", "version": 1, "method": method,
           "model": os.path.abspath(a.model), "samples": n, "seq": int(seqs.shape[1]),
           "seed": a.seed, "tensors": {}}
    for k in names:
        out["tensors"][k] = {"fisher_sum": float(fisher[k]) / n, "elements": state[k].numel()}
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(names)} tensors, {n} sequences of {seqs.shape[1]} tokens, "
          f"sampling {t_sample:.1f} s, total {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
