"""hct: HCT's tensor runtime from Python (torch). See docs/python.md.

    import hct, hct.torch
    with hct.safe_open("model.safetensors", framework="pt", device="cuda:0") as f:
        w = f.get_tensor("model.layers.0.mlp.up_proj.weight")
    sd = hct.torch.load_file("model_dir", device="cuda:0")
"""
from ._lib import (HCTError, InvalidArgumentError, NotFoundError, CorruptionError, HCTIOError,
                   UnsupportedError, OutOfRangeError, AlreadyExistsError, BusyError,
                   ResourceExhaustedError, InternalError)
from ._core import Runtime, release_shared, safe_open, shared_stats
from . import cache, stream, torch  # noqa: F401  (hct.torch is the module, not torch)
from . import tp  # noqa: F401  (tensor-parallel plans: hct.tp)


def library_version():
    """The version of the loaded libhct.so."""
    from ._lib import lib
    return lib().hct_version().decode()


def parse_size(text):
    """A size written by a person ("4GiB", "512M", "1.5T", "4096"; powers of 1024) parsed by the
    library's one rule (the tools' and HCT_* variables'); InvalidArgumentError otherwise."""
    import ctypes
    from ._lib import check, lib
    v = ctypes.c_uint64()
    check(lib().hct_parse_size(str(text).encode(), ctypes.byref(v)), f"size {text!r}")
    return v.value


def library_path():
    from ._lib import lib
    return lib().path


__version__ = "0.1.0"
__all__ = ["safe_open", "Runtime", "HCTError", "InvalidArgumentError", "NotFoundError",
           "CorruptionError", "HCTIOError", "UnsupportedError", "OutOfRangeError",
           "AlreadyExistsError", "BusyError", "ResourceExhaustedError", "InternalError",
           "library_version", "library_path", "parse_size", "release_shared", "shared_stats"]
