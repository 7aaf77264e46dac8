"""Runtimes, tensors through DLPack, and the safetensors-like `safe_open`."""
import ctypes
import json
import os
import sys

import torch

from . import _lib
from ._lib import check, lib

_CAPSULE_NAME = b"dltensor"


def _capsule_api():
    api = ctypes.pythonapi
    api.PyCapsule_New.restype = ctypes.py_object
    api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    api.PyCapsule_IsValid.restype = ctypes.c_int
    api.PyCapsule_IsValid.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return api


_api = _capsule_api()


class _DLManaged(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _capsule_destructor(cap):
    # A capsule torch never consumed (still named "dltensor": from_dlpack failed or was never
    # called) owns its DLManagedTensor: call its deleter so the memory is not leaked. A consumed
    # capsule is renamed "used_dltensor" and torch owns the tensor.
    if _api.PyCapsule_IsValid(cap, _CAPSULE_NAME):
        m = _api.PyCapsule_GetPointer(cap, _CAPSULE_NAME)
        # DLManagedTensor: DLTensor (48 bytes on LP64), manager_ctx, deleter.
        deleter = ctypes.c_void_p.from_address(m + 48 + 8).value
        if deleter:
            _DELETER(deleter)(m)


def _capsule(ptr):
    return _api.PyCapsule_New(ptr, _CAPSULE_NAME, ctypes.cast(_capsule_destructor, ctypes.c_void_p))


def parse_device(device):
    """(placement, index): ("cpu", 0) or ("cuda", N)."""
    d = torch.device(device) if not isinstance(device, torch.device) else device
    if d.type == "cpu":
        return "cpu", 0
    if d.type == "cuda":
        return "cuda", d.index if d.index is not None else torch.cuda.current_device()
    raise _lib.InvalidArgumentError(f"device {device!r}: only 'cpu' and 'cuda[:N]' are supported")


def _staging_for(path, default, chunk):
    """A pinned ring no larger than the model: pinning the default 256 MiB takes ~100 ms (H200
    box), more than loading a small model. At least 2 chunks (the ring's minimum) and 16 MiB."""
    try:
        if os.path.isdir(path):
            files = [e for e in os.scandir(path) if e.name.endswith(".safetensors")]
            if not files:  # a cache or HCT folder: keep the default
                return default
            size = sum(e.stat().st_size for e in files)
        elif path.endswith(".safetensors"):
            size = os.path.getsize(path)
        else:
            return default
    except OSError:
        return default
    want = max(16 << 20, 2 * chunk, -(-size // chunk) * chunk)
    return min(default, want)


def make_options(device="cpu", options=None, path=None):
    """hct_options from the HCT_* environment, the placement of `device` and `options` (a dict
    of field names: staging_bytes, io_threads, resident_budget, verify, ...)."""
    o = _lib.Options()
    check(lib().hct_options_from_env(ctypes.byref(o)), "settings")
    kind, index = parse_device(device)
    o.force_host = 1 if kind == "cpu" else 0
    o.device = index
    if path is not None and "staging_bytes" not in (options or {}) and \
            "HCT_STAGING_BYTES" not in os.environ:
        o.staging_bytes = _staging_for(path, o.staging_bytes, o.chunk_bytes)
    for k, v in (options or {}).items():
        if k == "struct_size" or not hasattr(o, k):
            raise _lib.InvalidArgumentError(f"unknown runtime option {k!r}")
        setattr(o, k, int(v))
    return o


def _is_cache(path):
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "index.db"))


class Runtime:
    """One libhct runtime over a model: a safetensors file or Hugging Face folder, an HCT file
    or folder, or a warm cache directory (`model` picks the cache's model; None: its only one).
    Tensors it hands out outlive it. `cache_dir`: for an HCT file or folder, the warm cache whose
    entries of this source are loaded instead of decoding (where present and valid)."""

    def __init__(self, path, device="cpu", options=None, model=None, cache_dir=None):
        self.path = os.fspath(path)
        self.device_kind, self.device_index = parse_device(device)
        if self.device_kind == "cuda" and not torch.cuda.is_available():
            raise _lib.InvalidArgumentError(f"device {device!r}: torch sees no CUDA device")
        opt = make_options(device, options, self.path)
        h = ctypes.c_void_p()
        L = lib()
        if cache_dir is not None and not _is_cache(self.path):
            rc = L.hct_open_hct_ex(self.path.encode(), os.fspath(cache_dir).encode(),
                                   ctypes.byref(opt), ctypes.byref(h))
        elif _is_cache(self.path):
            rc = L.hct_open_cache_ex(self.path.encode(), model.encode() if model else None,
                                     ctypes.byref(opt), ctypes.byref(h))
        else:
            rc = L.hct_open_ex(self.path.encode(), ctypes.byref(opt), ctypes.byref(h))
        check(rc, self.path)
        self._h = h
        self.on_device = bool(L.hct_on_device(h))
        if self.device_kind == "cuda" and not self.on_device:
            self.close()
            raise _lib.UnsupportedError(f"{self.path}: libhct was built without CUDA or sees no "
                                        "GPU; use device='cpu'")
        self.device = torch.device(f"cuda:{self.device_index}" if self.on_device else "cpu")
        self._infos = None

    # -- catalog
    def infos(self):
        """{name: (dtype, shape, nbytes, layer)} in catalog order."""
        if self._infos is None:
            L, out = lib(), {}
            for i in range(L.hct_num_tensors(self._h)):
                t = _lib.TensorInfo()
                check(L.hct_tensor_info_at(self._h, i, ctypes.byref(t)))
                out[t.name.decode()] = (t.dtype.decode(), tuple(t.shape[:t.ndim]), t.nbytes,
                                        t.layer)
            self._infos = out
        return self._infos

    def stats(self):
        s = _lib.Stats()
        check(lib().hct_runtime_stats(self._h, ctypes.byref(s)))
        return {n: getattr(s, n) for n, _ in s._fields_}

    def make_resident(self, path):
        check(lib().hct_make_resident(self._h, os.fspath(path).encode()), os.fspath(path))

    # -- loads
    def stream_handle(self, stream=None):
        """The cudaStream_t loads are ordered on: `stream` or torch's current stream."""
        if not self.on_device:
            return None
        if stream is None:
            stream = torch.cuda.current_stream(self.device)
        return ctypes.c_void_p(stream.cuda_stream)

    def load_handle(self, name, stream=None, dst=None, dst_bytes=0):
        """The raw hct_tensor* of `name` (the caller frees it or passes it to to_torch)."""
        if name not in self.infos():
            raise _lib.NotFoundError(f"{self.path}: no tensor '{name}'", 2)
        t = ctypes.c_void_p()
        check(lib().hct_load(self._h, name.encode(), self.stream_handle(stream), dst, dst_bytes,
                             ctypes.byref(t)), f"{self.path}: tensor '{name}'")
        return t

    def load_many_handles(self, names, stream=None, dst=None, dst_bytes=0):
        arr = (ctypes.c_char_p * len(names))(*[n.encode() for n in names])
        out = (ctypes.c_void_p * len(names))()
        check(lib().hct_load_many(self._h, arr, len(names), self.stream_handle(stream), dst,
                                  dst_bytes, out), f"{self.path}: tensors {', '.join(names[:4])}")
        return [ctypes.c_void_p(p) for p in out]

    def to_torch(self, handle, name):
        """A torch tensor sharing the handle's memory (DLPack); frees the handle. On the GPU the
        data is ordered on the stream the load was given; on the host it is waited for."""
        L = lib()
        try:
            if not self.on_device:
                check(L.hct_tensor_wait(handle), f"{self.path}: tensor '{name}'")
            m = ctypes.c_void_p()
            check(L.hct_tensor_to_dlpack(handle, ctypes.byref(m)), f"{self.path}: tensor '{name}'")
        finally:
            L.hct_tensor_free(handle)  # the export keeps the memory
        cap = _capsule(m.value)
        try:
            return torch.utils.dlpack.from_dlpack(cap)
        except Exception as e:  # e.g. a dtype this torch lacks; the capsule frees the export
            raise _lib.UnsupportedError(
                f"{self.path}: tensor '{name}' ({self.infos()[name][0]}): torch cannot take it: "
                f"{e}", 5) from e

    def load(self, name, stream=None):
        return self.to_torch(self.load_handle(name, stream), name)

    def close(self):
        if getattr(self, "_h", None):
            lib().hct_close(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _safetensors_metadata(path):
    """__metadata__ of a safetensors file (the first shard of a folder), or None."""
    if os.path.isdir(path):
        shards = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        if not shards:
            return None
        path = os.path.join(path, shards[0])
    if not path.endswith(".safetensors"):
        return None
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 0 or n > (100 << 20):
            return None
        try:
            return json.loads(f.read(n)).get("__metadata__")
        except ValueError:
            return None


class _Slice:
    """get_slice(name): shape and dtype without loading; indexing loads the tensor and indexes
    it (the runtime reads whole tensors; a leading-dimension range returns a compact copy so that
    the rest of the tensor's memory is released)."""

    def __init__(self, rt, name):
        self._rt, self._name = rt, name
        self._dtype, self._shape = rt.infos()[name][:2]

    def get_shape(self):
        return list(self._shape)

    def get_dtype(self):
        return self._dtype

    def __getitem__(self, idx):
        x = self._rt.load(self._name)[idx]
        return x.clone() if x._base is not None or x.numel() == 0 else x


class safe_open:
    """Mirror of safetensors.safe_open: `with hct.safe_open(path, "pt", device="cuda:0") as f:`
    then f.keys(), f.get_tensor(name), f.get_slice(name)[a:b], f.metadata()."""

    def __init__(self, path, framework="pt", device="cpu", options=None, model=None,
                 cache_dir=None):
        if framework not in ("pt", "torch"):
            raise _lib.InvalidArgumentError(f"framework {framework!r}: only 'pt' is supported")
        self._rt = Runtime(path, device=device, options=options, model=model,
                           cache_dir=cache_dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._rt.close()
        return False

    def keys(self):
        return list(self._rt.infos())

    def offset_keys(self):
        return self.keys()

    def metadata(self):
        return _safetensors_metadata(self._rt.path)

    def get_tensor(self, name):
        return self._rt.load(name)

    def get_slice(self, name):
        if name not in self._rt.infos():
            raise _lib.NotFoundError(f"{self._rt.path}: no tensor '{name}'", 2)
        return _Slice(self._rt, name)

    @property
    def runtime(self):
        return self._rt


def progress_bar(total_bytes, desc, enabled=None):
    """A tqdm bar over bytes when stderr is a terminal and the load is long (>= 256 MiB), or
    `enabled` says so; None when tqdm is missing or not wanted."""
    if enabled is None:
        enabled = total_bytes >= (256 << 20) and sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, leave=False)
