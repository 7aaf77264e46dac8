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


@pytest.mark.parametrize("engine", ["layerstreamer", "python"])
@pytest.mark.parametrize("prefetch,n_layers", [(0, 3), (1, 3), (2, 5), (4, 2)])
def test_streamed_equals_whole_over_passes(tmp_path, prefetch, n_layers, engine):
    src, dst, p = _pair(tmp_path, n_layers)
    s = hct.stream.attach(dst, p, prefetch=prefetch, device="cpu", engine=engine)
    assert s.nslots == min(prefetch + 1, n_layers)
    seen = []  # where the weights are while each layer runs (after the streamer's pre-hook)
    for l in dst.model.layers:
        l.register_forward_pre_hook(lambda m, a: seen.append(m.weight.data_ptr()))
    first = None
    for _ in range(3):  # passes = tokens: slots are never reallocated
        x = torch.randn(2, 8)
        with torch.no_grad():
            assert torch.equal(dst(x), src(x))
        first = first or set(seen)
        assert set(seen) <= first and len(first) <= s.nslots
        seen.clear()
    # Between forwards the layers hold no weights (only the slots do).
    assert all(l.weight.numel() == 0 for l in dst.model.layers)
    st = s.stats()
    assert st["bytes_streamed"] >= 3 * sum(l.weight.nelement() * 4 + 32 for l in src.model.layers)
    s.detach()


class Block(torch.nn.Module):
    """A decoder-like layer: two Linear modules used once each, then a norm (released with the
    layer); twice=True calls `a` twice (early release must refuse it)."""

    def __init__(self, twice=False):
        super().__init__()
        self.a, self.b, self.norm, self.twice = (torch.nn.Linear(8, 16), torch.nn.Linear(16, 8),
                                                 torch.nn.LayerNorm(8), twice)

    def forward(self, x):
        h = self.a(x)
        if self.twice:
            h = h + self.a(x)
        return self.norm(x + self.b(torch.relu(h)))


def _blocks(tmp_path, n, twice=False):
    torch.manual_seed(1)
    src, dst = Tiny(), Tiny()
    src.model.layers = torch.nn.ModuleList([Block(twice) for _ in range(n)])
    dst.model.layers = torch.nn.ModuleList([Block(twice) for _ in range(n)])
    p = str(tmp_path / "blocks.safetensors")
    write_safetensors(p, src.state_dict())
    return src, dst, p


@pytest.mark.parametrize("extra", [0, 256, 700, 1 << 20])
def test_extra_bytes_tensor_release_equals_whole(tmp_path, extra):
    # extra 0: one slot, the tensors released one by one; 256 / 700: two windows overlapping in
    # part; 1 MiB: capped at one slot (two disjoint windows).
    src, dst, p = _blocks(tmp_path, 5)
    s = hct.stream.attach(dst, p, prefetch=0, extra_bytes=extra, device="cpu")
    lo = None
    for _ in range(4):
        x = torch.randn(3, 8)
        with torch.no_grad():
            assert torch.equal(dst(x), src(x))
    assert s.stats()["restarts"] == 0  # the cyclic streamer was always on the layer wanted
    assert all(l.a.weight.numel() == 0 and l.norm.weight.numel() == 0 for l in dst.model.layers)
    s.detach()
    del lo


def test_early_release_refuses_a_module_called_twice(tmp_path):
    src, dst, p = _blocks(tmp_path, 3, twice=True)
    hct.stream.attach(dst, p, prefetch=0, extra_bytes=512, device="cpu")
    with pytest.raises(hct.HCTError, match="called again"):
        with torch.no_grad():
            dst(torch.randn(1, 8))
    src, dst, p = _blocks(tmp_path, 3, twice=True)
    s = hct.stream.attach(dst, p, prefetch=0, extra_bytes=512, device="cpu", early_release=False)
    for _ in range(2):
        x = torch.randn(2, 8)
        with torch.no_grad():
            assert torch.equal(dst(x), src(x))
    s.detach()


def test_out_of_order_layers_restart_the_streamer(tmp_path):
    src, dst, p = _blocks(tmp_path, 4)
    s = hct.stream.attach(dst, p, prefetch=0, extra_bytes=300, device="cpu")
    x = torch.randn(2, 8)
    with torch.no_grad():
        want = src.model.layers[2](src.model.layers[3](x))
        assert torch.equal(dst.model.layers[2](dst.model.layers[3](x)), want)
        assert torch.equal(dst(x), src(x))
    assert s.stats()["restarts"] >= 2
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


@pytest.mark.gpu
@pytest.mark.parametrize("extra", [0, 700, 1 << 20])
def test_gpu_extra_bytes_equals_whole(tmp_path, extra):
    src, dst, p = _blocks(tmp_path, 6)
    src = src.cuda()
    s = hct.stream.attach(dst, p, prefetch=0, extra_bytes=extra, device="cuda:0")
    for _ in range(4):
        x = torch.randn(4, 8, device="cuda")
        with torch.no_grad():
            assert torch.equal(dst(x), src(x))
    assert s.stats()["restarts"] == 0
    s.detach()
