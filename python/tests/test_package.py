"""CPU (host placement) tests of the hct package; GPU tests are marked `gpu`."""
import os
import glob

import numpy as np
import pytest
import torch

import hct
import hct.torch as ht
from conftest import read_safetensors_numpy, write_safetensors


def test_library_found_and_versioned():
    assert hct.library_version() == "0.1.0"
    assert os.path.exists(hct.library_path())


def test_load_file_equals_numpy_reading(small_model):
    path, ts = small_model
    got = ht.load_file(path, device="cpu")
    ref = read_safetensors_numpy(path)
    assert set(got) == set(ref)
    for name, (dt, arr) in ref.items():
        t = got[name]
        assert t.device.type == "cpu"
        assert tuple(t.shape) == arr.shape, name
        bits = t.view(torch.int16).numpy().view(np.uint16) if dt == "BF16" else t.numpy()
        np.testing.assert_array_equal(bits, arr, err_msg=name)
        assert torch.equal(t, ts[name])


def test_safe_open_keys_slices_metadata(small_model):
    path, ts = small_model
    with hct.safe_open(path, framework="pt", device="cpu") as f:
        assert sorted(f.keys()) == sorted(ts)
        assert f.metadata() == {"format": "pt", "who": "test"}
        s = f.get_slice("model.layers.0.w")
        assert s.get_shape() == [33, 17] and s.get_dtype() == "BF16"
        part = s[3:11]
        assert torch.equal(part, ts["model.layers.0.w"][3:11])
        assert part._base is None  # a compact copy, not a view pinning the whole tensor
        assert torch.equal(f.get_tensor("d.i64"), ts["d.i64"])


def test_iterator_yields_pairs_in_order(small_model):
    path, ts = small_model
    names = [n for n, _ in ht.iter_tensors(path, names=["c.i8", "b.f16"])]
    assert names == ["c.i8", "b.f16"]


def test_tensor_outlives_its_runtime(small_model):
    path, ts = small_model
    rt = hct.Runtime(path, device="cpu")
    t = rt.load("model.layers.1.w")
    rt.close()
    del rt
    assert torch.equal(t, ts["model.layers.1.w"])


def test_missing_tensor_raises_naming_it(small_model):
    path, _ = small_model
    with hct.safe_open(path, device="cpu") as f:
        with pytest.raises(hct.NotFoundError, match="no.such.tensor"):
            f.get_tensor("no.such.tensor")
        with pytest.raises(hct.NotFoundError, match="nope"):
            f.get_slice("nope")


def test_bad_file_raises_naming_the_file(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(hct.HCTError) as e:
        ht.load_file(str(p))
    assert "bad.safetensors" in str(e.value)
    with pytest.raises(hct.NotFoundError):
        ht.load_file(str(tmp_path / "absent.safetensors"))


def test_truncated_file_raises(tmp_path, small_model):
    path, _ = small_model
    data = open(path, "rb").read()
    p = tmp_path / "trunc.safetensors"
    p.write_bytes(data[:-40])
    with pytest.raises(hct.HCTError):
        ht.load_file(str(p))


def test_options_and_unknown_option(small_model):
    path, ts = small_model
    got = ht.load_file(path, options={"io_threads": 2, "verify": 1})
    assert torch.equal(got["c.i8"], ts["c.i8"])
    with pytest.raises(hct.InvalidArgumentError, match="io_threads"):
        ht.load_file(path, options={"io_threads": 0})
    with pytest.raises(hct.InvalidArgumentError, match="bogus"):
        ht.load_file(path, options={"bogus": 1})


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(3)])
        self.model.norm = torch.nn.LayerNorm(8)
        self.lm_head = torch.nn.Linear(8, 4, bias=False)

    def forward(self, x):
        for l in self.model.layers:
            x = torch.relu(l(x))
        return self.lm_head(self.model.norm(x))


def test_load_model_strict_and_direct(tmp_path):
    src = Tiny()
    p = str(tmp_path / "tiny.safetensors")
    write_safetensors(p, src.state_dict())
    dst = Tiny()
    missing, unexpected = ht.load_model(dst, p, strict=True)
    assert missing == [] and unexpected == []
    x = torch.randn(2, 8)
    assert torch.equal(dst(x), src(x))
    sd = {k: v for k, v in src.state_dict().items() if k != "lm_head.weight"}
    write_safetensors(p, sd)
    with pytest.raises(hct.HCTError, match="lm_head.weight"):
        ht.load_model(Tiny(), p, strict=True)
    missing, _ = ht.load_model(Tiny(), p, strict=False)
    assert missing == ["lm_head.weight"]


def test_load_model_shape_mismatch_names_tensor(tmp_path):
    src = Tiny()
    sd = dict(src.state_dict())
    sd["lm_head.weight"] = torch.zeros(5, 8)
    p = str(tmp_path / "tiny.safetensors")
    write_safetensors(p, sd)
    with pytest.raises(hct.HCTError, match="lm_head.weight"):
        ht.load_model(Tiny(), p)


def _corrupt_cache(tmp_path, small_model):
    path, ts = small_model
    cache = str(tmp_path / "cache")
    calls = []
    hct.cache.warm(cache, path, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert [m[0] for m in hct.cache.ls(cache)]
    return cache, ts


def test_cache_load_and_corrupt_entry_raises(tmp_path, small_model):
    cache, ts = _corrupt_cache(tmp_path, small_model)
    got = ht.load_file(cache)  # the cache's only model
    assert torch.equal(got["model.layers.0.w"], ts["model.layers.0.w"])
    assert hct.cache.verify(cache, deep=True) == 0
    # Flip every byte after each entry's first page: tensor bytes no longer match their checksum.
    entries = [f for f in glob.glob(os.path.join(cache, "**", "*"), recursive=True)
               if os.path.isfile(f) and not os.path.basename(f).startswith("index.db")]
    assert entries
    for f in entries:
        b = bytearray(open(f, "rb").read())
        for i in range(len(b)):
            b[i] ^= 0x5A
        open(f, "wb").write(bytes(b))
    handed = []
    with pytest.raises(hct.HCTError) as e:
        for name, t in ht.iter_tensors(cache):
            handed.append(name)
    assert handed == []  # nothing corrupt was handed out
    assert any(n in str(e.value) for n in ts), str(e.value)
    assert hct.cache.verify(cache, deep=True) > 0
    assert hct.cache.evict(cache) >= 0


def test_unknown_device_is_refused(small_model):
    with pytest.raises(hct.InvalidArgumentError):
        hct.safe_open(small_model[0], device="mps")


@pytest.mark.gpu
def test_gpu_load_file_zero_copy_on_current_stream(small_model):
    path, ts = small_model
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        got = ht.load_file(path, device="cuda:0")
        # Used on the same stream: no synchronize needed for ordering.
        sums = {n: got[n].float().sum() for n in got}
    torch.cuda.current_stream().wait_stream(s)
    for n, t in got.items():
        assert t.device.type == "cuda"
        assert torch.equal(t.cpu(), ts[n]), n
        assert torch.allclose(sums[n].cpu(), ts[n].float().sum())


@pytest.mark.gpu
def test_gpu_tensor_outlives_runtime_and_memory_returns(small_model):
    path, ts = small_model
    torch.cuda.synchronize()
    rt = hct.Runtime(path, device="cuda:0")
    t = rt.load("model.layers.0.w")
    rt.close()
    assert torch.equal(t.cpu(), ts["model.layers.0.w"])
    del t


@pytest.mark.gpu
def test_gpu_missing_tensor(small_model):
    with hct.safe_open(small_model[0], device="cuda:0") as f:
        with pytest.raises(hct.NotFoundError, match="absent"):
            f.get_tensor("absent")


def test_parse_size_is_the_library_rule():
    # Python callers (scripts/generate.py --gpu-budget) get the tools' spelling and its errors.
    assert hct.parse_size("4GiB") == 4 << 30
    assert hct.parse_size("512M") == 512 << 20
    assert hct.parse_size("1.5K") == 1536
    assert hct.parse_size("4096") == 4096
    for bad in ("", "-1", "4X", "20000P", "abc"):  # 20000P > 2^64
        with pytest.raises(hct.InvalidArgumentError):
            hct.parse_size(bad)


def test_stats_report_host_memory(small_model):
    path, _ = small_model
    with hct.safe_open(path, device="cpu") as f:
        st = f.runtime.stats()
    for k in ("pinned_staging_bytes", "registered_bytes", "resident_files",
              "hct_device_scratch_bytes"):
        assert k in st
    assert st["registered_bytes"] == 0 and st["resident_files"] == 0  # no resident budget


def _hct_convert():
    lib = os.environ.get("HCT_LIBRARY", "")
    exe = os.path.join(os.path.dirname(os.path.dirname(lib)), "convert", "hct-convert")
    if not os.path.exists(exe):
        pytest.skip("hct-convert not next to HCT_LIBRARY's build")
    return exe


def test_hct_folder_uses_the_cache_and_falls_back(tmp_path, small_model):
    # An HCT folder with cache_dir loads warm tensors from the cache; a corrupt entry falls back
    # to the compressed source (never served), and either way the values are the HCT decode's.
    import subprocess
    path, ts = small_model
    out = str(tmp_path / "hct")
    subprocess.run([_hct_convert(), path, out, "--lossless", "-q"], check=True)
    plain = ht.load_file(out)
    assert torch.equal(plain["model.layers.0.w"], ts["model.layers.0.w"])  # lossless
    cache = str(tmp_path / "cache")
    hct.cache.warm(cache, out)
    with hct.safe_open(out, cache_dir=cache) as f:
        got = {k: f.get_tensor(k) for k in f.keys()}
        st = f.runtime.stats()
    assert st["loads_cache"] > 0 and st["cache_fallbacks"] == 0
    for k in plain:
        assert torch.equal(got[k], plain[k]), k
    for f in glob.glob(os.path.join(cache, "entries", "**", "*.safetensors"), recursive=True):
        b = bytearray(open(f, "rb").read())
        b[-1] ^= 0xFF  # the last tensor byte of each entry
        open(f, "wb").write(bytes(b))
    with hct.safe_open(out, cache_dir=cache) as f:
        got = {k: f.get_tensor(k) for k in f.keys()}
        st = f.runtime.stats()
    assert st["cache_fallbacks"] > 0
    for k in plain:
        assert torch.equal(got[k], plain[k]), k
