"""hct.cache: warm / verify / evict / ls of a cache directory (thin, over the C API)."""
import ctypes
import os

from ._lib import PROGRESS_FN, check, lib


def _callback(progress):
    if progress is None:
        return PROGRESS_FN()  # NULL
    return PROGRESS_FN(lambda done, total, _u: progress(done, total))


def warm(cache_dir, source, tensors=None, progress=None):
    """Warms `source` into `cache_dir`; progress(done_bytes, total_bytes) if given."""
    cb = _callback(progress)
    check(lib().hct_cache_warm(os.fspath(cache_dir).encode(), os.fspath(source).encode(),
                               tensors.encode() if tensors else None, cb, None),
          f"warm {source}")


def verify(cache_dir, model=None, deep=False, progress=None):
    """The number of problems found (0: clean)."""
    n = ctypes.c_int64(0)
    cb = _callback(progress)
    check(lib().hct_cache_verify(os.fspath(cache_dir).encode(), model.encode() if model else None,
                                 1 if deep else 0, cb, None, ctypes.byref(n)), f"verify {cache_dir}")
    return n.value


def evict(cache_dir, model=None):
    """Evicts `model` (None: every unpinned entry); returns the bytes freed."""
    freed = ctypes.c_uint64(0)
    check(lib().hct_cache_evict(os.fspath(cache_dir).encode(), model.encode() if model else None,
                                ctypes.byref(freed)), f"evict {cache_dir}")
    return freed.value


def ls(cache_dir):
    """[(name, bytes, source)] of the cache's models."""
    out = ctypes.c_char_p()
    check(lib().hct_cache_ls(os.fspath(cache_dir).encode(), ctypes.byref(out)), f"ls {cache_dir}")
    rows = []
    for line in (out.value or b"").decode().splitlines():
        name, size, source = line.split("\t", 2)
        rows.append((name, int(size), source))
    return rows
