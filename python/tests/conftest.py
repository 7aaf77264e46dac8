"""Shared helpers of the hct package tests: a safetensors writer (the safetensors package is not
in Debian 12), a numpy reader independent of libhct, and the library from the build dir."""
import json
import os
import struct
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))

_DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int8: "I8",
       torch.uint8: "U8", torch.int32: "I32", torch.int64: "I64", torch.float64: "F64"}


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} as safetensors (sorted names, like safetensors.torch.save_file)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous().cpu()
        b = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


_NP = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "U8": np.uint8, "I32": np.int32,
       "I64": np.int64, "F64": np.float64, "BF16": np.uint16}


def read_safetensors_numpy(path):
    """{name: (dtype, numpy array)} read with numpy alone (BF16 as its uint16 bits)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        out[name] = (h["dtype"], np.frombuffer(data[a:b], dtype=_NP[h["dtype"]]).reshape(h["shape"]))
    return out


def _library():
    if os.environ.get("HCT_LIBRARY"):
        return os.environ["HCT_LIBRARY"]
    for b in ("build-h5", "build", "build-gpu"):
        p = os.path.join(ROOT, b, "runtime", "libhct.so")
        if os.path.exists(p):
            return p
    return None


lib_path = _library()
if lib_path:
    os.environ["HCT_LIBRARY"] = lib_path


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CUDA (skipped without it)")


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA device")
        for it in items:
            if "gpu" in it.keywords:
                it.add_marker(skip)


@pytest.fixture
def small_model(tmp_path):
    """A safetensors file of every common dtype with odd shapes."""
    g = torch.Generator().manual_seed(1)
    ts = {
        "model.layers.0.w": torch.randn(33, 17, generator=g).to(torch.bfloat16),
        "model.layers.1.w": torch.randn(5, 7, 3, generator=g),
        "b.f16": torch.randn(9, generator=g).to(torch.float16),
        "c.i8": torch.randint(-128, 127, (4, 4), generator=g, dtype=torch.int8),
        "d.i64": torch.arange(10, dtype=torch.int64),
        "e.scalar": torch.tensor(3.5),
    }
    p = tmp_path / "model.safetensors"
    write_safetensors(str(p), ts, metadata={"format": "pt", "who": "test"})
    return str(p), ts
