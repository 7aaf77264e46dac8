#!/usr/bin/env python3
"""Tensor-parallel load check and measurement on several GPUs (docs/tensor-parallel.md).

One process per GPU, started by torchrun, NCCL as the backend:

    torchrun --standalone --nproc_per_node=N scripts/tp_load.py MODEL [--baseline] [--make-llama]

Each rank loads its shards of every tensor of MODEL (a safetensors file or folder, an HCT file or
folder, or a warm cache directory) onto its GPU with hct.torch.load_file(rank=, world=): split
tensors through Runtime.load_slice (only their bytes, or HCT chunks, are read), replicated ones
whole (the Llama plan of hct.tp, overridable with --plan '{"lm_head.weight": "replicate"}').
Then every tensor is all-gathered and compared, on rank 0's GPU, with a single-GPU full load of
the same model (bit-exact: raw and lossless are the stored bytes; lossy shards are decoded by the
same GPU kernels from the same chunks as the full load). With --cpu-check, lossy tensors are also
compared with the CPU reference decoder (max abs difference printed).

Printed (rank 0): per rank, load seconds, shard bytes, bytes read (files + HCT stored) and peak /
current host RSS; the aggregate load rate (sum of shard bytes / slowest rank) against rank 0's
single-GPU full-load rate, and, with --baseline, against each rank loading everything and slicing
(what loaders do today).

--make-llama DIR writes a random Llama-shaped BF16 model there first (rank 0; --hidden, --inter,
--layers, --vocab, --kv) and uses it as MODEL.

--simulate-world N (no torchrun, one GPU): loads the shards of ranks 0..N-1 in turn, prints each
rank's seconds, bytes read and rates against the full load of the same run, and checks that the
shards put back together equal the full load bit for bit.

NVLink multicast stays off (the GPU machines' rule, /work/.library/device/KINDS.md): the script
sets NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1 and NVSHMEM_DISABLE_NVLS=1 before
NCCL starts unless they are already set, and refuses to run if one is set to enable it.
"""
import argparse
import json
import os
import resource
import sys
import time

_MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                  "NVSHMEM_DISABLE_NVLS": "1"}
for _k, _v in _MULTICAST_OFF.items():
    os.environ.setdefault(_k, _v)
    if os.environ[_k] != _v:
        sys.exit(f"tp_load.py: {_k}={os.environ[_k]} would enable NVLink multicast; "
                 f"it must be {_v} on these machines")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import hct  # noqa: E402
import hct.torch as ht  # noqa: E402
from hct import tp  # noqa: E402


def rss_bytes():
    """(peak, current) resident set of this process."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cur = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) * 1024
    return peak, cur


def make_llama(path, hidden, inter, layers, vocab, kv, seed=0):
    """A random Llama-shaped BF16 safetensors file (written once, by rank 0)."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    sd = {"model.embed_tokens.weight": w(vocab, hidden), "model.norm.weight": w(hidden),
          "lm_head.weight": w(vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        sd.update({p + "self_attn.q_proj.weight": w(hidden, hidden),
                   p + "self_attn.k_proj.weight": w(kv, hidden),
                   p + "self_attn.v_proj.weight": w(kv, hidden),
                   p + "self_attn.o_proj.weight": w(hidden, hidden),
                   p + "mlp.gate_proj.weight": w(inter, hidden),
                   p + "mlp.up_proj.weight": w(inter, hidden),
                   p + "mlp.down_proj.weight": w(hidden, inter),
                   p + "input_layernorm.weight": w(hidden),
                   p + "post_attention_layernorm.weight": w(hidden)})
    os.makedirs(path, exist_ok=True)
    out = os.path.join(path, "model.safetensors")
    try:
        from safetensors.torch import save_file
        save_file(sd, out)
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                        "python", "tests"))
        from conftest import write_safetensors
        write_safetensors(out, sd)
    return path


def timed(fn, device):
    if device != "cpu":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device != "cpu":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0


def nbytes(sd):
    return sum(t.numel() * t.element_size() for t in sd.values())


def load_shards(model, device, rank, world, plan):
    # The shared engine (as load_file uses): its ring is pinned once, not per pass.
    rt = hct.Runtime(model, device=device, shared=True)
    try:
        f0, s0 = rt.bytes_read()
        shards, secs = timed(lambda: dict(tp.iter_shards(rt, rank, world, plan)), device)
        f1, s1 = rt.bytes_read()
    finally:
        rt.close()
    return shards, secs, (f1 - f0) + (s1 - s0)


def gather_and_compare(shards, full, rank, world, plan, device):
    """Names whose all-gathered shards differ from the full load (checked on rank 0)."""
    rules = tp.make_plan(plan)
    bad = []

    def raw(x):  # the bytes, as uint8 (every backend gathers those; the check is bitwise)
        x = x.contiguous()
        return (x.reshape(1) if x.dim() == 0 else x).view(torch.uint8)

    for name in sorted(shards):
        t = raw(shards[name])
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t)
        if rank != 0:
            continue
        mode = tp.mode_of(name, tuple(full[name].shape), rules)
        dim = tp.dim_of(mode)
        if dim is None:
            got = parts[world - 1]  # the last rank's copy
        else:
            got = torch.cat(parts, dim=0 if dim == 0 or t.dim() == 1 else -1)
        want = raw(full[name])
        if got.shape != want.shape or not torch.equal(got, want):
            bad.append(name)
    return bad


def reassemble(parts, full, plan):
    """Names whose shards of every rank, put back together, differ from the full load."""
    rules = tp.make_plan(plan)
    bad = []
    for name, want in full.items():
        mode = tp.mode_of(name, tuple(want.shape), rules)
        dim = tp.dim_of(mode)
        ps = [p[name] for p in parts]
        if dim is None:
            ok = all(torch.equal(x, want) for x in ps)
        else:
            got = torch.cat(ps, dim=0 if dim == 0 or want.dim() == 1 else -1)
            ok = got.shape == want.shape and torch.equal(got, want)
        if not ok:
            bad.append(name)
    return bad


def simulate(a):
    """--simulate-world N on one device (cuda:0, or the host with --cpu)."""
    device = "cpu" if a.cpu else "cuda:0"
    model = make_llama(a.make_llama, a.hidden, a.inter, a.layers, a.vocab, a.kv) \
        if a.make_llama else a.model
    plan = json.loads(a.plan) if a.plan else None
    world = a.simulate_world
    ht.load_file(model, device=device)  # page cache hot, engine made: every pass sees the same
    full, full_secs = timed(lambda: ht.load_file(model, device=device), device)
    rt = hct.Runtime(model, device=device, shared=True)
    try:
        f0, s0 = rt.bytes_read()
        rt.load_tensors(list(rt.infos()))
        f1, s1 = rt.bytes_read()
    finally:
        rt.close()
    full_read = (f1 - f0) + (s1 - s0)
    print(f"model {model}: {len(full)} tensors, {nbytes(full) / 1e9:.3f} GB, full load reads "
          f"{full_read / 1e9:.3f} GB; simulated world {world} on {device}")
    print(f"full load: {full_secs:.3f} s, {nbytes(full) / 1e9 / full_secs:.2f} GB/s")
    parts = []
    for rank in range(world):
        shards, secs, read = load_shards(model, device, rank, world, plan)
        parts.append(shards)
        print(f"  rank {rank}: {secs:.3f} s, shards {nbytes(shards) / 1e9:.3f} GB "
              f"({nbytes(shards) / nbytes(full):.3f} of the model), read {read / 1e9:.3f} GB "
              f"({read / full_read:.3f} of the full load's), {nbytes(shards) / 1e9 / secs:.2f} "
              f"GB/s of shards, {read / 1e9 / secs:.2f} GB/s read (full load "
              f"{full_read / 1e9 / full_secs:.2f})")
    bad = reassemble(parts, full, plan)
    print("check:", "the shards of every rank put together equal the full load" if not bad else
          f"MISMATCH in {len(bad)} tensors: {bad[:8]}")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--make-llama", metavar="DIR")
    ap.add_argument("--hidden", type=int, default=8192)
    ap.add_argument("--inter", type=int, default=28672)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--kv", type=int, default=1024)
    ap.add_argument("--plan", default=None, help="JSON object of pattern -> mode overrides")
    ap.add_argument("--baseline", action="store_true",
                    help="also time each rank loading everything and slicing")
    ap.add_argument("--cpu-check", action="store_true",
                    help="also compare with the CPU reference decoder (max abs difference)")
    ap.add_argument("--json", metavar="FILE", help="write rank 0's figures as JSON")
    ap.add_argument("--cpu", action="store_true",
                    help="host placement and the gloo backend (a smoke test without GPUs)")
    ap.add_argument("--simulate-world", type=int, metavar="N",
                    help="no torch.distributed: one process loads the shards of ranks 0..N-1 "
                         "in turn on one GPU (per-rank bytes read and rate; the shards "
                         "reassembled must equal the full load)")
    a = ap.parse_args()
    if a.simulate_world:
        return simulate(a)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", rank))
    if a.cpu:
        device = "cpu"
        dist.init_process_group("gloo")
    else:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
        dist.init_process_group("nccl", device_id=torch.device(device))
    plan = json.loads(a.plan) if a.plan else None
    model = a.model
    if a.make_llama:
        if rank == 0:
            make_llama(a.make_llama, a.hidden, a.inter, a.layers, a.vocab, a.kv)
        model = a.make_llama
    if not model:
        ap.error("MODEL or --make-llama DIR")
    dist.barrier()

    shards, secs, read = load_shards(model, device, rank, world, plan)
    peak, cur = rss_bytes()
    mine = torch.tensor([secs, nbytes(shards), read, peak, cur], dtype=torch.float64,
                        device=device)
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)

    full, full_secs = (None, 0.0)
    if rank == 0:
        full, full_secs = timed(lambda: ht.load_file(model, device=device), device)
    bad = gather_and_compare(shards, full, rank, world, plan, device)
    base = None
    if a.baseline:
        def load_all_and_slice():
            sd = ht.load_file(model, device=device, shared=False)
            table = tp.shard_table({n: (None, tuple(t.shape)) for n, t in sd.items()}, rank,
                                   world, plan)
            out = {}
            for n, t in sd.items():
                _, dim, start, length = table[n]
                out[n] = t if start is None else \
                    t.narrow(0 if dim == 0 or t.dim() == 1 else t.dim() - 1, start, length).clone()
            return out
        dist.barrier()
        _, bsecs = timed(load_all_and_slice, device)
        bpeak, _ = rss_bytes()
        b = torch.tensor([bsecs, bpeak], dtype=torch.float64, device=device)
        ball = [torch.empty_like(b) for _ in range(world)]
        dist.all_gather(ball, b)
        base = [x.tolist() for x in ball]

    if rank == 0:
        rows = [x.tolist() for x in every]
        total_shards = sum(r[1] for r in rows)
        slowest = max(r[0] for r in rows)
        print(f"model {model}: {len(full)} tensors, {nbytes(full) / 1e9:.3f} GB; world {world}; "
              f"{'cpu' if a.cpu else torch.cuda.get_device_name(local)}")
        for i, r in enumerate(rows):
            print(f"  rank {i}: {r[0]:.3f} s, shards {r[1] / 1e9:.3f} GB, read {r[2] / 1e9:.3f} GB"
                  f", host RSS peak {r[3] / 2**30:.2f} GiB now {r[4] / 2**30:.2f} GiB")
        print(f"aggregate: {total_shards / 1e9 / slowest:.2f} GB/s of shards (slowest rank "
              f"{slowest:.3f} s); single-GPU full load {nbytes(full) / 1e9 / full_secs:.2f} GB/s "
              f"({full_secs:.3f} s)")
        if base:
            bs = max(r[0] for r in base)
            print(f"baseline (each rank loads everything, then slices): slowest {bs:.3f} s, "
                  f"{total_shards / 1e9 / bs:.2f} GB/s of shards, host RSS peak "
                  f"{max(r[1] for r in base) / 2**30:.2f} GiB")
        if a.cpu_check:
            cpu = ht.load_file(model, device="cpu")
            worst = max((full[n].float().cpu() - cpu[n].float()).abs().max().item()
                        if full[n].is_floating_point() else
                        float(not torch.equal(full[n].cpu(), cpu[n])) for n in cpu)
            print(f"GPU full load vs CPU reference decoder: max abs difference {worst:.3g}")
        print("check:", "all-gathered shards equal the full load" if not bad else
              f"MISMATCH in {len(bad)} tensors: {bad[:8]}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"world": world, "ranks": rows, "full_seconds": full_secs,
                           "full_bytes": nbytes(full), "baseline": base, "bad": bad}, f)
    dist.barrier()
    dist.destroy_process_group()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
