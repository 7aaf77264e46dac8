"""Tensor-parallel loading from Python (hct.tp, Runtime.load_slice, safe_open().get_slice,
hct.torch.load_file(rank=, world=, plan=)): shards equal the slices of full loads for every
dtype, odd shapes and both dimensions, from safetensors, a warm cache and HCT (lossless and
lossy: equal to the full CPU decode sliced); only the slice's bytes are read; the Llama plan and
its overrides; a world-2 torch.distributed (gloo, CPU) group that all-gathers its shards back
into the full model."""
import os
import subprocess

import pytest
import torch

import hct
import hct.torch as ht
from hct import tp

from conftest import write_safetensors

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.int32,
          torch.int64, torch.float64]


def _random(shape, dtype, g):
    if dtype.is_floating_point:
        return torch.randn(*shape, generator=g).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -1000), min(info.max, 1000), shape, generator=g,
                         dtype=dtype)


def llama_like(hidden=64, inter=128, vocab=256, layers=2, kv=32, dtype=torch.bfloat16, seed=0):
    """A small random model with Llama's tensor names and shape relations."""
    g = torch.Generator().manual_seed(seed)
    sd = {"model.embed_tokens.weight": _random((vocab, hidden), dtype, g),
          "model.norm.weight": _random((hidden,), dtype, g),
          "lm_head.weight": _random((vocab, hidden), dtype, g)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for n, shape in (("self_attn.q_proj", (hidden, hidden)), ("self_attn.k_proj", (kv, hidden)),
                         ("self_attn.v_proj", (kv, hidden)), ("self_attn.o_proj", (hidden, hidden)),
                         ("mlp.gate_proj", (inter, hidden)), ("mlp.up_proj", (inter, hidden)),
                         ("mlp.down_proj", (hidden, inter))):
            sd[p + n + ".weight"] = _random(shape, dtype, g)
        sd[p + "input_layernorm.weight"] = _random((hidden,), dtype, g)
        sd[p + "post_attention_layernorm.weight"] = _random((hidden,), dtype, g)
    return sd


def _hct_convert():
    lib = os.environ.get("HCT_LIBRARY", "")
    exe = os.path.join(os.path.dirname(os.path.dirname(lib)), "convert", "hct-convert")
    if not os.path.exists(exe):
        pytest.skip("hct-convert not next to HCT_LIBRARY's build")
    return exe


def _expected_shard(full, mode, rank, world):
    if mode in ("column", "vocab"):
        return torch.chunk(full, world, dim=0)[rank]
    if mode == "row" and full.dim() > 1:
        return torch.chunk(full, world, dim=-1)[rank]
    return full


@pytest.fixture
def odd_file(tmp_path):
    g = torch.Generator().manual_seed(3)
    ts = {}
    for i, dt in enumerate(DTYPES):
        ts[f"t{i}.2d"] = _random((13, 37), dt, g)
        ts[f"t{i}.3d"] = _random((5, 3, 21), dt, g)
        ts[f"t{i}.1d"] = _random((29,), dt, g)
    p = str(tmp_path / "odd.safetensors")
    write_safetensors(p, ts)
    return p, ts


def test_get_slice_reads_only_the_slice(odd_file):
    path, ts = odd_file
    with hct.safe_open(path, framework="pt", device="cpu", shared=False) as f:
        rt = f.runtime
        for name, full in ts.items():
            sl = f.get_slice(name)
            n0, nl = full.shape[0], full.shape[-1]
            for idx, want in (((slice(2, 9),), full[2:9]), ((slice(None), slice(4, 11)),
                                                           full[..., 4:11]),
                              ((Ellipsis, slice(1, nl - 1)), full[..., 1:nl - 1]),
                              ((slice(-3, None),), full[-3:]), ((slice(n0, n0 + 5),), full[n0:])):
                if full.dim() != 2 and idx[0] == slice(None) and len(idx) == 2:
                    continue  # [:, a:b] is the trailing dimension only for 2-D tensors
                before = rt.bytes_read()[0]
                got = sl[idx if len(idx) > 1 else idx[0]]
                assert got.dtype == full.dtype and got.shape == want.shape, (name, idx)
                assert torch.equal(got, want), (name, idx)
                assert got.is_contiguous()
                assert rt.bytes_read()[0] - before == want.numel() * want.element_size(), (name,
                                                                                         idx)
            # Any other index: the whole tensor, then indexed.
            assert torch.equal(sl[1], full[1])


def test_load_slice_and_even_slice_rules(odd_file):
    path, ts = odd_file
    rt = hct.Runtime(path)
    try:
        name = "t0.2d"  # 13 x 37
        assert rt.even_slice(name, 0, 1, 4, rule=1) == (4, 4)  # torch.chunk: 4, 4, 4, 1
        with pytest.raises(hct.InvalidArgumentError, match="t0.2d"):
            rt.even_slice(name, 1, 0, 2)
        assert rt.even_slice(name, 0, 0, 13) == (0, 1)
        with pytest.raises(hct.InvalidArgumentError):
            rt.load_slice(name, 0, 10, 5)  # past the end
        with pytest.raises(hct.NotFoundError):
            rt.load_slice("nope", 0, 0, 1)
        assert rt.load_slice(name, 1, 37, 0).shape == (13, 0)
    finally:
        rt.close()


def _check_shards(path, sd_full, world, plan=None, device="cpu", **kw):
    rules = tp.make_plan(plan)
    for rank in range(world):
        got = ht.load_file(path, device=device, rank=rank, world=world, plan=plan, **kw)
        assert sorted(got) == sorted(sd_full)
        for name, full in sd_full.items():
            mode = tp.mode_of(name, tuple(full.shape), rules)
            want = _expected_shard(full, mode, rank, world)
            assert got[name].shape == want.shape, (name, mode, rank, world)
            assert torch.equal(got[name].cpu(), want), (name, mode, rank, world)


def test_llama_plan_modes():
    rules = tp.make_plan()
    m = {n: tp.mode_of(n, tuple(t.shape), rules) for n, t in llama_like().items()}
    assert m["model.layers.0.self_attn.q_proj.weight"] == "column"
    assert m["model.layers.1.self_attn.v_proj.weight"] == "column"
    assert m["model.layers.0.self_attn.o_proj.weight"] == "row"
    assert m["model.layers.0.mlp.up_proj.weight"] == "column"
    assert m["model.layers.0.mlp.down_proj.weight"] == "row"
    assert m["model.embed_tokens.weight"] == "vocab" and m["lm_head.weight"] == "vocab"
    assert m["model.norm.weight"] == "replicate"
    assert m["model.layers.0.input_layernorm.weight"] == "replicate"
    assert tp.mode_of("model.layers.0.mlp.down_proj.bias", (64,), rules) == "replicate"
    assert tp.mode_of("model.layers.0.self_attn.q_proj.bias", (64,), rules) == "column"
    over = tp.make_plan({"lm_head.weight": "replicate", "*.mlp.*": "row"})
    assert tp.mode_of("lm_head.weight", (256, 64), over) == "replicate"
    assert tp.mode_of("model.layers.0.mlp.up_proj.weight", (128, 64), over) == "row"
    with pytest.raises(hct.InvalidArgumentError):
        tp.make_plan({"x": "diagonal"})


def test_load_file_shards_safetensors(tmp_path):
    sd = llama_like()
    path = str(tmp_path / "model.safetensors")
    write_safetensors(path, sd)
    for world in (1, 2, 4):
        _check_shards(path, sd, world)
    _check_shards(path, sd, 2, plan={"lm_head.weight": "replicate"})
    # 256 vocab rows do not split 3 ways: refused naming a tensor, unless split="chunk".
    with pytest.raises(hct.InvalidArgumentError, match="does not split evenly into 3"):
        ht.load_file(path, rank=0, world=3)
    got = ht.load_file(path, rank=2, world=3, split="chunk")
    assert torch.equal(got["model.layers.0.self_attn.k_proj.weight"],
                       torch.chunk(sd["model.layers.0.self_attn.k_proj.weight"], 3)[2])
    # Each rank reads about 1/world of the split tensors' bytes, and all of the replicated ones.
    rt = hct.Runtime(path)
    try:
        before = rt.bytes_read()[0]
        shards = dict(tp.iter_shards(rt, 1, 4))
        read = rt.bytes_read()[0] - before
    finally:
        rt.close()
    assert read == sum(t.numel() * t.element_size() for t in shards.values())
    total = sum(t.numel() * t.element_size() for t in sd.values())
    assert read < total / 3


def test_load_file_shards_every_dtype(tmp_path):
    for dt in DTYPES:
        sd = llama_like(dtype=dt, seed=5)
        path = str(tmp_path / f"m-{str(dt)[6:]}.safetensors")
        write_safetensors(path, sd)
        _check_shards(path, sd, 2)


def test_load_file_shards_cache(tmp_path):
    sd = llama_like()
    path = str(tmp_path / "model.safetensors")
    write_safetensors(path, sd)
    cache = str(tmp_path / "cache")
    hct.cache.warm(cache, path)
    _check_shards(cache, sd, 2)
    _check_shards(cache, sd, 4, options={"verify": 0})


@pytest.mark.parametrize("lossless", [True, False])
def test_load_file_shards_hct(tmp_path, lossless):
    sd = llama_like()
    src = str(tmp_path / "model.safetensors")
    write_safetensors(src, sd)
    out = str(tmp_path / "hct")
    args = [_hct_convert(), src, out, "-q", "--chunk-size", "1K"]
    subprocess.run(args + (["--lossless"] if lossless else []), check=True)
    full = ht.load_file(out)  # the CPU reference decoder's output
    if lossless:
        for n in sd:
            assert torch.equal(full[n], sd[n]), n
    else:
        assert not torch.equal(full["model.layers.0.mlp.up_proj.weight"],
                               sd["model.layers.0.mlp.up_proj.weight"])
    for world in (2, 4):
        _check_shards(out, full, world)
    # A leading-dimension shard decodes only the chunks it overlaps.
    rt = hct.Runtime(out)
    try:
        name = "model.layers.0.mlp.gate_proj.weight"
        _, stored_full = rt.bytes_read()
        rt.load(name)
        _, a = rt.bytes_read()
        rt.load_slice(name, 0, 0, 32)  # a quarter of the rows
        _, b = rt.bytes_read()
    finally:
        rt.close()
    assert 0 < b - a < (a - stored_full) / 2


def _gloo_worker(rank, world, path, init, q):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        rules = tp.make_plan()
        shards = ht.load_file(path, rank=rank, world=world)
        full = ht.load_file(path)
        bad = []
        for name, t in shards.items():
            mode = tp.mode_of(name, tuple(full[name].shape), rules)
            parts = [torch.empty_like(t) for _ in range(world)]
            dist.all_gather(parts, t.contiguous())
            dim = 0 if mode in ("column", "vocab") else -1
            got = t if mode == "replicate" or (mode == "row" and t.dim() == 1) \
                else torch.cat(parts, dim=dim)
            if mode == "replicate":
                got = parts[(rank + 1) % world]  # the other rank's copy
            if not torch.equal(got, full[name]):
                bad.append(name)
        q.put((rank, bad))
    finally:
        dist.destroy_process_group()


def test_gloo_world2_all_gather_equals_full_load(tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import torch.multiprocessing as mp
    sd = llama_like(dtype=torch.float32, seed=9)
    path = str(tmp_path / "model.safetensors")
    write_safetensors(path, sd)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    init = "file://" + str(tmp_path / "rendezvous")
    mp.spawn(_gloo_worker, args=(2, path, init, q), nprocs=2, join=True)
    results = sorted(q.get(timeout=60) for _ in range(2))
    assert results == [(0, []), (1, [])], results


@pytest.mark.gpu
def test_gpu_shards_equal_cpu_slices(tmp_path):
    sd = llama_like()
    path = str(tmp_path / "model.safetensors")
    write_safetensors(path, sd)
    _check_shards(path, sd, 2, device="cuda:0")
    out = str(tmp_path / "hct")
    subprocess.run([_hct_convert(), path, out, "-q", "--chunk-size", "1K", "--lossless"],
                   check=True)
    _check_shards(out, sd, 4, device="cuda:0")
