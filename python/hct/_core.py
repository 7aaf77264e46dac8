"""Runtimes, tensors through DLPack, and the safetensors-like `safe_open`."""
import ctypes
import json
import os
import sys
import threading

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


def _is_safetensors(path):
    try:
        return path.endswith(".safetensors") or (os.path.isdir(path) and any(
            e.name.endswith(".safetensors") for e in os.scandir(path)))
    except OSError:
        return False


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


# Shared engines (load_file, safe_open) over safetensors: a ring of 2 chunks per I/O thread in
# 1 MiB chunks keeps every thread reading while pinning 32 MiB (~14 ms) instead of 256 MiB
# (~115 ms on the H200 box), which the first call of a process pays (docs/BENCHMARKS.md).
SHARED_CHUNK_BYTES = 1 << 20


def make_options(device="cpu", options=None, path=None, shared=False):
    """hct_options from the HCT_* environment, the placement of `device` and `options` (a dict
    of field names: staging_bytes, io_threads, resident_budget, verify, ...)."""
    o = _lib.Options()
    check(lib().hct_options_from_env(ctypes.byref(o)), "settings")
    kind, index = parse_device(device)
    o.force_host = 1 if kind == "cpu" else 0
    o.device = index
    if path is not None and "staging_bytes" not in (options or {}) and \
            "HCT_STAGING_BYTES" not in os.environ:
        if shared and "chunk_bytes" not in (options or {}) and \
                "HCT_CHUNK_BYTES" not in os.environ and _is_safetensors(path):
            o.chunk_bytes = SHARED_CHUNK_BYTES
            o.staging_bytes = 2 * max(1, o.io_threads) * SHARED_CHUNK_BYTES
        o.staging_bytes = _staging_for(path, o.staging_bytes, o.chunk_bytes)
    for k, v in (options or {}).items():
        if k == "struct_size" or not hasattr(o, k):
            raise _lib.InvalidArgumentError(f"unknown runtime option {k!r}")
        setattr(o, k, int(v))
    return o


def _is_cache(path):
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "index.db"))


# safetensors dtype name -> torch dtype, for those this torch has (1.13 lacks U16/U32/U64/F8).
TORCH_DTYPES = {n: getattr(torch, a) for n, a in (
    ("BOOL", "bool"), ("U8", "uint8"), ("I8", "int8"), ("F8_E5M2", "float8_e5m2"),
    ("F8_E4M3", "float8_e4m3fn"), ("I16", "int16"), ("U16", "uint16"), ("F16", "float16"),
    ("BF16", "bfloat16"), ("I32", "int32"), ("U32", "uint32"), ("F32", "float32"),
    ("C64", "complex64"), ("F64", "float64"), ("I64", "int64"), ("U64", "uint64"))
    if hasattr(torch, a)}


def _file_signature(path):
    """{file: (dev, inode, size, mtime_ns)} of the data files an engine opens for `path` (the
    file, or the .safetensors / .hct files of a folder)."""
    if os.path.isdir(path):
        files = [os.path.join(path, e) for e in os.listdir(path)
                 if e.endswith((".safetensors", ".hct"))]
    else:
        files = [path]
    out = {}
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            continue  # the open reports it
        out[f] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return out


class _Engine:
    def __init__(self, opt):
        h = ctypes.c_void_p()
        check(lib().hct_runtime_create(ctypes.byref(opt), ctypes.byref(h)), "runtime")
        self.handle, self.staging, self.files = h, opt.staging_bytes, {}

    def fits(self, opt, files):
        """Whether a model of `files` may use this engine: its ring is large enough, it has not
        seen one of these paths as another file (it reads by the descriptor it opened first),
        and it keeps at most MAX_FILES files open."""
        return (self.staging >= opt.staging_bytes and
                all(self.files.get(f, sig) == sig for f, sig in files.items()) and
                len(self.files.keys() | files.keys()) <= SharedEngines.MAX_FILES)


class SharedEngines:
    """The engines that Runtime(shared=True) (load_file, iter_tensors, load_model, safe_open)
    opens models on, one per device and settings: the pinned ring, streams, I/O threads, open
    files and resident registrations are made once per process instead of once per call. An
    engine is replaced by a new one when a model needs a larger ring, a file it has open was
    replaced or rewritten (size, mtime or inode changed), or it would keep more than MAX_FILES
    files open; the old one is freed when its last runtime closes."""

    MAX_FILES = 128

    def __init__(self):
        self._lock = threading.Lock()
        self._engines = {}

    @staticmethod
    def _key(opt):
        return tuple(getattr(opt, n) for n, _ in opt._fields_ if n != "staging_bytes")

    def open(self, path, opt):
        """A runtime handle for the safetensors or HCT model at `path` (absolute) on the shared
        engine of `opt`'s settings."""
        files = _file_signature(path)
        key = self._key(opt)
        with self._lock:  # an engine is neither replaced nor released while a model opens on it
            e = self._engines.get(key)
            if e is not None and not e.fits(opt, files):
                lib().hct_close(self._engines.pop(key).handle)
                e = None
            if e is None:
                e = self._engines[key] = _Engine(opt)
            h = ctypes.c_void_p()
            check(lib().hct_open_on(e.handle, _lib.SOURCE_AUTO, path.encode(), None,
                                    ctypes.byref(h)), path)
            e.files.update(files)
            return h

    def release(self):
        """Drops every shared engine; each frees its pinned ring and resident registrations when
        the runtimes still open on it are closed. Returns how many there were."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for e in engines:
            lib().hct_close(e.handle)
        return len(engines)

    def stats(self):
        """[runtime stats dict] of each shared engine: pinned and registered bytes held."""
        out = []
        with self._lock:
            for e in self._engines.values():
                st = _lib.Stats()
                check(lib().hct_runtime_stats(e.handle, ctypes.byref(st)))
                out.append({n: getattr(st, n) for n, _ in st._fields_})
        return out


    def _forget_in_child(self):
        # A forked child must not use (or free) the parent's engines: their CUDA state and I/O
        # threads do not survive fork. It starts with none (the parent's handles are left).
        self._lock = threading.Lock()
        self._engines = {}


ENGINES = SharedEngines()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=ENGINES._forget_in_child)


def release_shared():
    """Frees what load_file / safe_open keep for reuse between calls (the pinned staging rings,
    resident registrations, open files), once the runtimes still open are closed."""
    return ENGINES.release()


def shared_stats():
    return ENGINES.stats()


class Runtime:
    """One libhct runtime over a model: a safetensors file or Hugging Face folder, an HCT file
    or folder, or a warm cache directory (`model` picks the cache's model; None: its only one).
    Tensors it hands out outlive it. `cache_dir`: for an HCT file or folder, the warm cache whose
    entries of this source are loaded instead of decoding (where present and valid).
    `shared`: open a safetensors or HCT model on the process's shared engine for these settings
    (SharedEngines; caches always get their own); stats() are then the engine's."""

    def __init__(self, path, device="cpu", options=None, model=None, cache_dir=None,
                 shared=False):
        self.path = os.fspath(path)
        self.device_kind, self.device_index = parse_device(device)
        if self.device_kind == "cuda" and not torch.cuda.is_available():
            raise _lib.InvalidArgumentError(f"device {device!r}: torch sees no CUDA device")
        opt = make_options(device, options, self.path,
                           shared=shared and cache_dir is None and not _is_cache(self.path))
        h = ctypes.c_void_p()
        L = lib()
        self.shared = shared and cache_dir is None and not _is_cache(self.path)
        if self.shared:
            h = ENGINES.open(os.path.abspath(self.path), opt)
            rc = 0
        elif cache_dir is not None and not _is_cache(self.path):
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

    def pack_offsets(self, names):
        """([offset of each name], total bytes) of hct_load_many's one-buffer layout."""
        arr = (ctypes.c_char_p * len(names))(*[n.encode() for n in names])
        offs, total = (ctypes.c_uint64 * len(names))(), ctypes.c_uint64()
        check(lib().hct_pack_offsets(self._h, arr, len(names), offs, ctypes.byref(total)),
              self.path)
        return list(offs), total.value

    def load_tensors(self, names, stream=None):
        """The tensors of `names`, loaded by one hct_load_many straight into one torch
        allocation (made on `stream`, default torch's current stream; the tensors are views of
        it, sharing its memory until all are dropped). On the GPU they are ordered on that
        stream; on the host they are waited for. A dtype this torch cannot view goes through
        the runtime's own allocation and DLPack (to_torch)."""
        infos = self.infos()
        for n in names:
            if n not in infos:
                raise _lib.NotFoundError(f"{self.path}: no tensor '{n}'", 2)
        if any(infos[n][0] not in TORCH_DTYPES for n in names):
            return self._load_dlpack(names, stream)
        offs, total = self.pack_offsets(names)
        if self.on_device:
            stream = stream or torch.cuda.current_stream(self.device)
            with torch.cuda.stream(stream):
                buf = torch.empty(max(total, 1), dtype=torch.uint8, device=self.device)
        else:
            buf = torch.empty(max(total, 1), dtype=torch.uint8)
        L = lib()
        handles = self.load_many_handles(names, stream, dst=ctypes.c_void_p(buf.data_ptr()),
                                         dst_bytes=buf.numel())
        try:
            if not self.on_device:
                check(L.hct_tensor_wait(handles[0]), f"{self.path}: tensors {names[0]}...")
        finally:
            for h in handles:
                L.hct_tensor_free(h)  # the memory is buf's: nothing is freed
        return [buf[o:o + infos[n][2]].view(TORCH_DTYPES[infos[n][0]]).view(infos[n][1])
                for n, o in zip(names, offs)]

    def _load_dlpack(self, names, stream):
        handles = self.load_many_handles(names, stream)
        out = []
        try:
            for h, n in zip(handles, names):
                out.append(self.to_torch(h, n))  # frees h
        finally:
            for h in handles[len(out) + 1:]:  # after a failure: the ones not reached
                lib().hct_tensor_free(h)
        return out

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
        return self.load_tensors([name], stream)[0]

    # -- slices (tensor parallelism; docs/tensor-parallel.md)
    def slice_shape(self, name, dim, length):
        """The shape of `name` with dimension `dim` (0 leading, 1 trailing) cut to `length`."""
        shape = list(self.infos()[name][1])
        if not shape:
            raise _lib.InvalidArgumentError(f"{self.path}: tensor '{name}': a scalar has no slices")
        shape[0 if dim == _lib.SLICE_LEADING or len(shape) == 1 else -1] = length
        return tuple(shape)

    def even_slice(self, name, dim, rank, world, rule=_lib.SPLIT_EXACT):
        """(start, length) of rank `rank`'s part of dimension `dim` of `name` split `world` ways
        (rule SPLIT_EXACT: InvalidArgumentError when world does not divide it; SPLIT_CHUNK: as
        torch.chunk)."""
        if name not in self.infos():
            raise _lib.NotFoundError(f"{self.path}: no tensor '{name}'", 2)
        a, n = ctypes.c_int64(), ctypes.c_int64()
        check(lib().hct_even_slice(self._h, name.encode(), dim, rank, world, rule,
                                   ctypes.byref(a), ctypes.byref(n)), f"{self.path}")
        return a.value, n.value

    def load_slice(self, name, dim, start, length, stream=None):
        """Elements [start, start + length) of dimension `dim` (0 leading, 1 trailing) of `name`,
        every other dimension whole, reading only the bytes (or HCT chunks) that hold them: a
        compact tensor in one torch allocation (ordered on `stream` on the GPU, waited for on
        the host)."""
        infos = self.infos()
        if name not in infos:
            raise _lib.NotFoundError(f"{self.path}: no tensor '{name}'", 2)
        dtype = infos[name][0]
        shape = self.slice_shape(name, dim, length)
        what = f"{self.path}: tensor '{name}'"
        L, h = lib(), ctypes.c_void_p()
        if dtype not in TORCH_DTYPES:  # the runtime's memory, through DLPack
            check(L.hct_load_slice(self._h, name.encode(), dim, start, length,
                                   self.stream_handle(stream), None, 0, ctypes.byref(h)), what)
            return self.to_torch(h, name)
        # The slice's own compact tensor (no view of a larger buffer), loaded in place.
        if self.on_device:
            stream = stream or torch.cuda.current_stream(self.device)
            with torch.cuda.stream(stream):
                out = torch.empty(shape, dtype=TORCH_DTYPES[dtype], device=self.device)
        else:
            out = torch.empty(shape, dtype=TORCH_DTYPES[dtype])
        nbytes = out.numel() * out.element_size()
        check(L.hct_load_slice(self._h, name.encode(), dim, start, length,
                               self.stream_handle(stream),
                               ctypes.c_void_p(out.data_ptr()) if nbytes else None, nbytes,
                               ctypes.byref(h)), what)
        try:
            if not self.on_device:
                check(L.hct_tensor_wait(h), what)
        finally:
            L.hct_tensor_free(h)  # the memory is out's (a widened read's buffer goes with it)
        return out

    def bytes_read(self):
        """(bytes of files and cache entries read, stored bytes of HCT chunks read) so far by
        this runtime's engine (the shared engine's totals for shared runtimes)."""
        f, c = ctypes.c_uint64(), ctypes.c_uint64()
        check(lib().hct_runtime_bytes_read(self._h, ctypes.byref(f), ctypes.byref(c)))
        return f.value, c.value

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


def _slice_request(idx, shape):
    """(dim, start, length) when `idx` is a step-1 range of the leading dimension (`[a:b]`,
    `[a:b, :]`, `[a:b, ...]`) or of the trailing one (`[:, a:b]` for 2-D, `[..., a:b]`); else
    None. Ranges are clamped like Python slices."""
    if not shape:
        return None
    full = slice(None)
    if isinstance(idx, slice):
        idx = (idx,)
    if not isinstance(idx, tuple) or not idx:
        return None
    if idx[-1] is Ellipsis:
        idx = idx[:-1]
    dim = None
    if len(idx) >= 1 and idx[0] is Ellipsis and len(idx) == 2 and isinstance(idx[1], slice):
        dim, s = 1, idx[1]
    elif isinstance(idx[0], slice) and all(i == full for i in idx[1:]) and len(idx) <= len(shape):
        dim, s = 0, idx[0]
    elif len(idx) == len(shape) and isinstance(idx[-1], slice) and all(i == full for i in idx[:-1]):
        dim, s = 1, idx[-1]
    if dim is None:
        return None
    n = shape[0] if dim == 0 or len(shape) == 1 else shape[-1]
    start, stop, step = s.indices(n)
    if step != 1:
        return None
    return (_lib.SLICE_LEADING if dim == 0 else _lib.SLICE_TRAILING), start, max(0, stop - start)


class _Slice:
    """get_slice(name): shape and dtype without loading. Indexing with a step-1 range of the
    leading dimension (`[a:b]`) or of the trailing one (`[:, a:b]`, `[..., a:b]`) loads only
    that slice (Runtime.load_slice: only its bytes, or HCT chunks, are read); any other index
    loads the tensor and indexes it (a compact copy when it is a view of part of the memory)."""

    def __init__(self, rt, name):
        self._rt, self._name = rt, name
        self._dtype, self._shape = rt.infos()[name][:2]

    def get_shape(self):
        return list(self._shape)

    def get_dtype(self):
        return self._dtype

    def __getitem__(self, idx):
        req = _slice_request(idx, self._shape)
        if req is not None:
            return self._rt.load_slice(self._name, *req)
        x = self._rt.load(self._name)[idx]
        return x.clone() if x.numel() * x.element_size() < _storage_bytes(x) else x


def _storage(t):
    return t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()  # 1.13: none


def _storage_bytes(t):
    """Bytes of the memory `t` is a view of."""
    return _storage(t).nbytes()


def _storage_ptr(t):
    return _storage(t).data_ptr()


class safe_open:
    """Mirror of safetensors.safe_open: `with hct.safe_open(path, "pt", device="cuda:0") as f:`
    then f.keys(), f.get_tensor(name), f.get_slice(name)[a:b], f.metadata()."""

    def __init__(self, path, framework="pt", device="cpu", options=None, model=None,
                 cache_dir=None, shared=True):
        if framework not in ("pt", "torch"):
            raise _lib.InvalidArgumentError(f"framework {framework!r}: only 'pt' is supported")
        self._rt = Runtime(path, device=device, options=options, model=model,
                           cache_dir=cache_dir, shared=shared)

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
