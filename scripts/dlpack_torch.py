#!/usr/bin/env python3
"""torch.from_dlpack over libhct's C API (ctypes): loads tensors of a safetensors file or folder
onto the GPU and checks them against safetensors' own loader.

    python3 scripts/dlpack_torch.py [MODEL] [--lib build-gpu/runtime/libhct.so]

MODEL defaults to ../shared/weights/kdoc-lm-25m, else a small file written here.
"""
import argparse
import ctypes
import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Info(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_char_p), ("ndim", ctypes.c_int32),
                ("shape", ctypes.c_int64 * 8), ("nbytes", ctypes.c_uint64),
                ("layer", ctypes.c_int32)]


def load_lib(path):
    lib = ctypes.CDLL(path)
    lib.hct_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.hct_close.argtypes = [ctypes.c_void_p]
    lib.hct_on_device.argtypes = [ctypes.c_void_p]
    lib.hct_num_tensors.argtypes = [ctypes.c_void_p]
    lib.hct_num_tensors.restype = ctypes.c_int64
    lib.hct_tensor_info_at.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(Info)]
    lib.hct_load.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_uint64, ctypes.POINTER(ctypes.c_void_p)]
    lib.hct_tensor_wait.argtypes = [ctypes.c_void_p]
    lib.hct_tensor_to_dlpack.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.hct_tensor_free.argtypes = [ctypes.c_void_p]
    lib.hct_last_error.restype = ctypes.c_char_p
    return lib


def check(lib, rc, what):
    if rc != 0:
        raise RuntimeError(f"{what}: {lib.hct_last_error().decode()}")


def capsule(ptr):
    # A "dltensor" capsule around the DLManagedTensor*, as torch.from_dlpack expects; torch
    # renames it "used_dltensor" and calls the tensor's deleter when the torch tensor dies.
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return new(ptr, b"dltensor", None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--lib", default=os.path.join(ROOT, "build-gpu", "runtime", "libhct.so"))
    a = ap.parse_args()
    from safetensors.torch import load_file, save_file
    model = a.model or os.path.join(ROOT, "..", "shared", "weights", "kdoc-lm-25m")
    if not os.path.exists(model):
        model = os.path.join(tempfile.mkdtemp(), "small.safetensors")
        save_file({"model.layers.0.w": torch.randn(256, 128).bfloat16(),
                   "model.layers.1.w": torch.randn(64, 64)}, model)
    lib = load_lib(a.lib)
    rt = ctypes.c_void_p()
    check(lib, lib.hct_open(model.encode(), ctypes.byref(rt)), "hct_open")
    on_dev = lib.hct_on_device(rt)
    print(f"libhct: {a.lib}; model {model}; tensors land on {'cuda' if on_dev else 'cpu'}")
    files = [model] if model.endswith(".safetensors") else [
        os.path.join(model, f) for f in sorted(os.listdir(model)) if f.endswith(".safetensors")]
    ref = {}
    for f in files:
        ref.update(load_file(f, device="cpu"))
    n, bad = lib.hct_num_tensors(rt), 0
    stream = torch.cuda.current_stream().cuda_stream if on_dev else None
    for i in range(n):
        info = Info()
        check(lib, lib.hct_tensor_info_at(rt, i, ctypes.byref(info)), "info")
        name = info.name.decode()
        t = ctypes.c_void_p()
        check(lib, lib.hct_load(rt, info.name, stream, None, 0, ctypes.byref(t)), f"load {name}")
        check(lib, lib.hct_tensor_wait(t), "wait")
        m = ctypes.c_void_p()
        check(lib, lib.hct_tensor_to_dlpack(t, ctypes.byref(m)), "dlpack")
        lib.hct_tensor_free(t)  # the DLPack export keeps the memory
        x = torch.from_dlpack(capsule(m.value))
        want = ref[name]
        ok = (x.device.type == ("cuda" if on_dev else "cpu") and x.dtype == want.dtype
              and tuple(x.shape) == tuple(want.shape) and torch.equal(x.cpu(), want))
        bad += not ok
        if i < 3 or not ok:
            print(f"  {name}: {tuple(x.shape)} {x.dtype} on {x.device}: {'equal' if ok else 'MISMATCH'}")
        del x
    lib.hct_close(rt)
    print(f"{n - bad}/{n} tensors equal to safetensors.load_file through torch.from_dlpack")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
