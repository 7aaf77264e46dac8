"""The shared engines of load_file / safe_open (a ring and open files kept between calls),
loads into one torch allocation per group, and hct.stream.LayerIterator (the C streamer)."""
import os

import numpy as np
import pytest
import torch

from conftest import read_safetensors_numpy, write_safetensors

import hct
import hct.stream
import hct.torch as ht
from hct import _core


@pytest.fixture(autouse=True)
def fresh_engines():
    hct.release_shared()
    yield
    hct.release_shared()


def _model(path, seed, rows=16):
    g = torch.Generator().manual_seed(seed)
    ts = {f"model.layers.{i}.w": torch.randn(rows, 8, generator=g).to(torch.bfloat16)
          for i in range(3)}
    ts["head.weight"] = torch.randn(4, 8, generator=g)
    write_safetensors(str(path), ts)
    return ts


def _equal_to_numpy(got, path):
    ref = read_safetensors_numpy(str(path))
    assert set(got) == set(ref)
    for n, (dt, a) in ref.items():
        t = got[n]
        if dt == "BF16":
            t = t.view(torch.int16)
            a = a.view(np.int16)
        assert np.array_equal(t.numpy(), a), n


def test_repeated_load_file_reuses_one_engine(tmp_path):
    p = tmp_path / "m.safetensors"
    _model(p, 1)
    for _ in range(3):
        _equal_to_numpy(ht.load_file(str(p)), p)
    st = hct.shared_stats()
    assert len(st) == 1
    assert st[0]["loads_one_shot"] == 3 * 4  # every call's loads counted by the one engine
    with hct.safe_open(str(p)) as f:  # safe_open shares it too
        f.get_tensor("head.weight")
    assert len(hct.shared_stats()) == 1
    ht.load_file(str(p), shared=False)  # its own runtime: the shared engine does not move
    assert hct.shared_stats()[0]["loads_one_shot"] == 3 * 4 + 1


def test_replaced_file_is_read_anew(tmp_path):
    # The engine reads through the descriptor it opened first: a file replaced under the same
    # path (new inode, as save_file + rename does) or rewritten larger must not be read stale.
    p = tmp_path / "m.safetensors"
    _model(p, 1)
    _equal_to_numpy(ht.load_file(str(p)), p)
    tmp = tmp_path / "new.tmp"
    _model(tmp, 2)  # same names and size, other values
    os.replace(tmp, p)
    _equal_to_numpy(ht.load_file(str(p)), p)
    _model(p, 3, rows=64)  # in place, larger
    _equal_to_numpy(ht.load_file(str(p)), p)


def test_relative_paths_follow_the_working_directory(tmp_path, monkeypatch):
    for d, seed in (("a", 1), ("b", 2)):
        (tmp_path / d).mkdir()
        _model(tmp_path / d / "m.safetensors", seed)
    monkeypatch.chdir(tmp_path / "a")
    _equal_to_numpy(ht.load_file("m.safetensors"), tmp_path / "a" / "m.safetensors")
    monkeypatch.chdir(tmp_path / "b")
    _equal_to_numpy(ht.load_file("m.safetensors"), tmp_path / "b" / "m.safetensors")


def test_engine_replaced_past_its_file_limit_and_released(tmp_path, monkeypatch):
    monkeypatch.setattr(_core.SharedEngines, "MAX_FILES", 2)
    paths = [tmp_path / f"m{i}.safetensors" for i in range(3)]
    for i, p in enumerate(paths):
        _model(p, i)
    held = ht.load_file(str(paths[0]))
    ht.load_file(str(paths[1]))
    assert hct.shared_stats()[0]["loads_one_shot"] == 8
    ht.load_file(str(paths[2]))  # a third file: a new engine
    assert hct.shared_stats()[0]["loads_one_shot"] == 4
    assert hct.release_shared() == 1
    assert hct.shared_stats() == []
    _equal_to_numpy(held, paths[0])  # tensors outlive the engines


def test_ring_grows_for_a_larger_model(tmp_path):
    small, big = tmp_path / "s.safetensors", tmp_path / "b.safetensors"
    _model(small, 1)
    write_safetensors(str(big), {"x": torch.zeros(40 << 20, dtype=torch.uint8)})  # > 16 MiB
    opts = {"chunk_bytes": 1 << 20}
    ht.load_file(str(small), options=opts)
    (e0,) = _core.ENGINES._engines.values()
    ht.load_file(str(big), options=opts)
    (e1,) = _core.ENGINES._engines.values()
    assert e1 is not e0 and e1.staging > e0.staging
    ht.load_file(str(small), options=opts)  # a smaller model keeps the larger ring
    assert next(iter(_core.ENGINES._engines.values())) is e1


def test_forked_child_starts_without_the_parents_engines(tmp_path):
    p = tmp_path / "m.safetensors"
    _model(p, 1)
    ht.load_file(str(p))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no engine inherited, a load makes its own
        ok = hct.shared_stats() == []
        try:
            got = ht.load_file(str(p))
            ok = ok and torch.equal(got["head.weight"], ht.load_file(str(p))["head.weight"])
            ok = ok and len(hct.shared_stats()) == 1 and \
                hct.shared_stats()[0]["loads_one_shot"] == 8
        except Exception:
            ok = False
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    import select
    import signal
    ready = select.select([r], [], [], 30)[0]  # using the parent's engine hangs the child
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert ready and os.read(r, 1) == b"1"
    assert hct.shared_stats()[0]["loads_one_shot"] == 4  # the parent's engine is untouched


def test_settings_get_their_own_engine(tmp_path):
    p = tmp_path / "m.safetensors"
    _model(p, 1)
    ht.load_file(str(p))
    ht.load_file(str(p), options={"io_threads": 3})
    assert len(hct.shared_stats()) == 2


def test_group_shares_one_allocation(tmp_path):
    p = tmp_path / "m.safetensors"
    ts = _model(p, 1)
    got = ht.load_file(str(p))
    ptrs = {n: _core._storage_ptr(t) for n, t in got.items()}
    assert len(set(ptrs.values())) == 4  # one per layer group (layers 0..2 and the rest)
    got = dict(ht.iter_tensors(str(p), group_bytes=1 << 30))
    assert len({_core._storage_ptr(t) for t in got.values()}) == 4
    for n in ts:
        assert torch.equal(got[n], ts[n]), n
    with hct.safe_open(str(p)) as f:
        sl = f.get_slice("model.layers.0.w")[2:5]
    assert torch.equal(sl, ts["model.layers.0.w"][2:5])
    assert _core._storage_bytes(sl) == sl.numel() * sl.element_size()  # a compact copy


def test_dlpack_path_outlives_its_runtime(tmp_path):
    p = tmp_path / "m.safetensors"
    ts = _model(p, 1)
    rt = hct.Runtime(str(p))
    t = rt.to_torch(rt.load_handle("head.weight"), "head.weight")
    rt.close()
    assert torch.equal(t, ts["head.weight"])


def _write_u16(path):
    import json
    import struct
    data = np.arange(6, dtype=np.uint16)
    h = json.dumps({"u": {"dtype": "U16", "shape": [2, 3], "data_offsets": [0, 12]}}).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data.tobytes())
    return data


def test_dtype_torch_lacks_is_refused_naming_the_tensor(tmp_path):
    p = tmp_path / "u.safetensors"
    data = _write_u16(p)
    if "U16" in _core.TORCH_DTYPES:
        t = ht.load_file(str(p))["u"]
        assert np.array_equal(t.view(torch.int16).numpy().view(np.uint16).ravel(), data)
    else:  # torch 1.13: through DLPack, which refuses it
        with pytest.raises(hct.UnsupportedError, match="'u'"):
            ht.load_file(str(p))


def test_layer_iterator_passes_and_restarts(tmp_path):
    p = tmp_path / "m.safetensors"
    ts = _model(p, 1)
    with hct.stream.LayerIterator(str(p), prefetch=1, device="cpu") as it:
        assert it.num_layers == 3
        for _ in range(2):
            seen = []
            for k, tensors in it:
                seen.append(k)
                assert list(tensors) == [f"model.layers.{k}.w"]
                assert torch.equal(tensors[f"model.layers.{k}.w"], ts[f"model.layers.{k}.w"])
            assert seen == [0, 1, 2]
            it.restart()


def test_layer_iterator_corrupt_file_raises(tmp_path):
    p = tmp_path / "m.safetensors"
    _model(p, 1)
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 40)  # the last tensors pass the end of the file
    with pytest.raises(hct.HCTError, match="m.safetensors"):
        with hct.stream.LayerIterator(str(p), prefetch=0, device="cpu") as it:
            list(it)


@pytest.mark.gpu
def test_gpu_shared_engine_ring_made_once_and_torch_memory(tmp_path):
    p = tmp_path / "m.safetensors"
    ts = _model(p, 1)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    got = ht.load_file(str(p), device="cuda:0")
    assert torch.cuda.memory_allocated() - before >= os.path.getsize(p) - 4096
    pinned = hct.shared_stats()[0]["pinned_staging_bytes"]
    assert pinned > 0
    for _ in range(2):
        got = ht.load_file(str(p), device="cuda:0")
    (st,) = hct.shared_stats()
    assert st["pinned_staging_bytes"] == pinned and st["loads_one_shot"] == 12
    for n in ts:
        assert torch.equal(got[n].cpu(), ts[n]), n


@pytest.mark.gpu
def test_gpu_resident_budget_kept_across_calls(tmp_path):
    p = tmp_path / "m.safetensors"
    ts = _model(p, 1)
    opts = {"resident_budget": 1 << 30}
    for _ in range(3):
        got = ht.load_file(str(p), device="cuda:0", options=opts)
    (st,) = hct.shared_stats()
    assert st["resident_files"] == 1 and 0 < st["registered_bytes"] <= 1 << 30
    assert st["loads_resident"] == 12 and st["loads_one_shot"] == 0
    for n in ts:
        assert torch.equal(got[n].cpu(), ts[n]), n
    hct.release_shared()
    assert hct.shared_stats() == []
    assert torch.equal(got["head.weight"].cpu(), ts["head.weight"])


@pytest.mark.gpu
def test_gpu_layer_iterator_on_current_stream(tmp_path):
    p = tmp_path / "m.safetensors"
    ts = _model(p, 1)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        it = hct.stream.LayerIterator(str(p), prefetch=1, device="cuda:0")
        sums = {k: t[f"model.layers.{k}.w"].float().sum() for k, t in it}
    torch.cuda.current_stream().wait_stream(s)
    it.close()
    for k, v in sums.items():
        assert torch.allclose(v.cpu(), ts[f"model.layers.{k}.w"].float().sum()), k
