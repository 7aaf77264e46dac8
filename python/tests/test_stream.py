"""hct.stream on host placement: the hooks bind each layer to its slot, results equal the whole
model's, slots are reused across passes, and a failed load raises naming the tensor."""
import pytest
import torch

import hct
import hct.stream
from conftest import write_safetensors
from test_package import Tiny


def _pair(tmp_path, n_layers=3):
    torch.manual_seed(0)
    src = Tiny()
    if n_layers != 3:
        src.model.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(n_layers)])
    p = str(tmp_path / "tiny.safetensors")
    write_safetensors(p, src.state_dict())
    dst = Tiny()
    dst.model.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(n_layers)])
    return src, dst, p


@pytest.mark.parametrize("prefetch,n_layers", [(0, 3), (1, 3), (2, 5), (4, 2)])
def test_streamed_equals_whole_over_passes(tmp_path, prefetch, n_layers):
    src, dst, p = _pair(tmp_path, n_layers)
    s = hct.stream.attach(dst, p, prefetch=prefetch, device="cpu")
    assert s.nslots == min(prefetch + 1, n_layers)
    slots = [t.data_ptr() for t in s.slots]
    for _ in range(3):  # passes = tokens: slots are never reallocated
        x = torch.randn(2, 8)
        with torch.no_grad():
            assert torch.equal(dst(x), src(x))
        assert [t.data_ptr() for t in s.slots] == slots
    # Between forwards the layers hold no weights (only the slots do).
    assert all(l.weight.numel() == 0 for l in dst.model.layers)
    st = s.stats()
    assert st["bytes_streamed"] >= 3 * sum(l.weight.nelement() * 4 + 32 for l in src.model.layers)
    s.detach()


def test_missing_layer_tensor_is_refused(tmp_path):
    src, dst, p = _pair(tmp_path)
    sd = {k: v for k, v in src.state_dict().items() if k != "model.layers.1.bias"}
    write_safetensors(p, sd)
    with pytest.raises(hct.HCTError, match="model.layers.1.bias"):
        hct.stream.attach(dst, p, device="cpu")


def test_shape_mismatch_names_tensor(tmp_path):
    src, dst, p = _pair(tmp_path)
    sd = dict(src.state_dict())
    sd["model.layers.2.weight"] = torch.zeros(4, 8)
    write_safetensors(p, sd)
    with pytest.raises(hct.HCTError, match="model.layers.2.weight"):
        hct.stream.attach(dst, p, device="cpu")


def test_corrupt_layer_raises_in_forward_and_binds_nothing(tmp_path):
    src, dst, p = _pair(tmp_path)
    cache = str(tmp_path / "cache")
    hct.cache.warm(cache, p)
    s = hct.stream.attach(dst, cache, prefetch=1, device="cpu")
    with torch.no_grad():
        dst(torch.randn(1, 8))
    import glob, os
    for f in glob.glob(os.path.join(cache, "**", "*"), recursive=True):
        if os.path.isfile(f) and "index.db" not in f:
            b = bytearray(open(f, "rb").read())
            open(f, "wb").write(bytes(x ^ 0xFF for x in b))
    with pytest.raises(hct.HCTError, match="model.layers"):
        with torch.no_grad():
            for _ in range(3):
                dst(torch.randn(1, 8))
    assert all(l.weight.numel() == 0 for l in dst.model.layers)


@pytest.mark.gpu
def test_gpu_streamed_equals_whole(tmp_path):
    src, dst, p = _pair(tmp_path, 6)
    src = src.cuda()
    s = hct.stream.attach(dst, p, prefetch=2, device="cuda:0")
    for _ in range(3):
        x = torch.randn(4, 8, device="cuda")
        with torch.no_grad():
            assert torch.equal(dst(x), src(x))
    assert s.stats()["bytes_streamed"] > 0
