"""ctypes bindings of libhct's C API (include/hct/hct.h) and the exceptions its codes become.

ctypes rather than a compiled extension: libhct.so already exports a C API, so the package is
pure Python and works unchanged with every Python that can load the library (Debian's 3.11, the
GPU image's 3.12) with no compile step per interpreter (docs/python.md).
"""
import ctypes
import glob
import os
import threading

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))  # the repository, when run from python/

MAX_DIMS = 8


class HCTError(RuntimeError):
    """A libhct failure: `code` (an hct_code), `message` (hct_last_error(): file and tensor)."""

    code = -1

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidArgumentError(HCTError, ValueError):
    code = 1


class NotFoundError(HCTError, LookupError):
    code = 2

    def __str__(self):  # LookupError/KeyError quoting would hide the message
        return self.message


class CorruptionError(HCTError):
    code = 3


class HCTIOError(HCTError, OSError):
    code = 4

    def __str__(self):
        return self.message


class UnsupportedError(HCTError):
    code = 5


class OutOfRangeError(HCTError, IndexError):
    code = 6


class AlreadyExistsError(HCTError):
    code = 7


class BusyError(HCTError):
    code = 8


class ResourceExhaustedError(HCTError, MemoryError):
    code = 9


class InternalError(HCTError):
    code = 10


_BY_CODE = {c.code: c for c in (InvalidArgumentError, NotFoundError, CorruptionError, HCTIOError,
                                UnsupportedError, OutOfRangeError, AlreadyExistsError, BusyError,
                                ResourceExhaustedError, InternalError)}


def error(code, message):
    cls = _BY_CODE.get(code, HCTError)
    return cls(message, code)


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_char_p), ("ndim", ctypes.c_int32),
                ("shape", ctypes.c_int64 * MAX_DIMS), ("nbytes", ctypes.c_uint64),
                ("layer", ctypes.c_int32)]


class Options(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32),
                ("staging_bytes", ctypes.c_uint64), ("chunk_bytes", ctypes.c_uint64),
                ("hct_slot_bytes", ctypes.c_uint64), ("hct_staging_bytes", ctypes.c_uint64),
                ("copy_step_bytes", ctypes.c_uint64),
                ("io_threads", ctypes.c_int32), ("decode_threads", ctypes.c_int32),
                ("streams", ctypes.c_int32), ("o_direct", ctypes.c_int32),
                ("verify", ctypes.c_int32), ("resident_budget", ctypes.c_uint64),
                ("device", ctypes.c_int32), ("force_host", ctypes.c_int32)]


class Stats(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "pinned_staging_bytes", "loads_resident", "loads_one_shot", "loads_hct", "loads_cache",
        "cache_fallbacks", "bytes_hct_stored", "bytes_hct_decoded", "registered_bytes",
        "resident_files", "hct_device_scratch_bytes")]


class StreamOptions(ctypes.Structure):  # hct_stream_options
    _fields_ = [("struct_size", ctypes.c_uint32), ("prefetch", ctypes.c_int32),
                ("extra_bytes", ctypes.c_uint64), ("cyclic", ctypes.c_int32),
                ("num_layers", ctypes.c_int64), ("layer_sizes", ctypes.POINTER(ctypes.c_int64)),
                ("names", ctypes.POINTER(ctypes.c_char_p))]


SOURCE_AUTO, SOURCE_CACHE, SOURCE_HCT = 0, 1, 2  # enum hct_source
SLICE_LEADING, SLICE_TRAILING = 0, 1  # enum hct_slice_dim
SPLIT_EXACT, SPLIT_CHUNK = 0, 1  # enum hct_split_rule

PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p)

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_S = ctypes.c_char_p
_SIGNATURES = {
    "hct_version": ([], _S),
    "hct_parse_size": ([_S, ctypes.POINTER(ctypes.c_uint64)], ctypes.c_int),
    "hct_options_default": ([ctypes.POINTER(Options)], ctypes.c_int),
    "hct_options_from_env": ([ctypes.POINTER(Options)], ctypes.c_int),
    "hct_open_ex": ([_S, ctypes.POINTER(Options), _PP], ctypes.c_int),
    "hct_open_cache_ex": ([_S, _S, ctypes.POINTER(Options), _PP], ctypes.c_int),
    "hct_open_hct_ex": ([_S, _S, ctypes.POINTER(Options), _PP], ctypes.c_int),
    "hct_close": ([_P], None),
    "hct_on_device": ([_P], ctypes.c_int),
    "hct_runtime_stats": ([_P, ctypes.POINTER(Stats)], ctypes.c_int),
    "hct_num_tensors": ([_P], ctypes.c_int64),
    "hct_tensor_info_at": ([_P, ctypes.c_int64, ctypes.POINTER(TensorInfo)], ctypes.c_int),
    "hct_lookup": ([_P, _S, ctypes.POINTER(TensorInfo)], ctypes.c_int),
    "hct_load": ([_P, _S, _P, _P, ctypes.c_uint64, _PP], ctypes.c_int),
    "hct_load_many": ([_P, ctypes.POINTER(_S), ctypes.c_int64, _P, _P, ctypes.c_uint64, _PP],
                      ctypes.c_int),
    "hct_tensor_wait": ([_P], ctypes.c_int),
    "hct_tensor_event": ([_P], _P),
    "hct_tensor_data": ([_P], _P),
    "hct_tensor_nbytes": ([_P], ctypes.c_uint64),
    "hct_tensor_to_dlpack": ([_P, _PP], ctypes.c_int),
    "hct_tensor_free": ([_P], None),
    "hct_make_resident": ([_P, _S], ctypes.c_int),
    "hct_release_resident": ([_P], ctypes.c_int),
    "hct_cache_warm": ([_S, _S, _S, PROGRESS_FN, _P], ctypes.c_int),
    "hct_cache_verify": ([_S, _S, ctypes.c_int, PROGRESS_FN, _P, ctypes.POINTER(ctypes.c_int64)],
                         ctypes.c_int),
    "hct_cache_evict": ([_S, _S, ctypes.POINTER(ctypes.c_uint64)], ctypes.c_int),
    "hct_cache_ls": ([_S, ctypes.POINTER(_S)], ctypes.c_int),
    "hct_runtime_create": ([ctypes.POINTER(Options), _PP], ctypes.c_int),
    "hct_open_on": ([_P, ctypes.c_int, _S, _S, _PP], ctypes.c_int),
    "hct_pack_offsets": ([_P, ctypes.POINTER(_S), ctypes.c_int64, ctypes.POINTER(ctypes.c_uint64),
                          ctypes.POINTER(ctypes.c_uint64)], ctypes.c_int),
    "hct_tensor_name": ([_P], _S),
    "hct_streamer_create": ([_P, ctypes.c_int, _P, _PP], ctypes.c_int),
    "hct_streamer_num_layers": ([_P], ctypes.c_int),
    "hct_streamer_max_tensors": ([_P], ctypes.c_int64),
    "hct_streamer_slot_bytes": ([_P], ctypes.c_uint64),
    "hct_streamer_next": ([_P, ctypes.POINTER(ctypes.c_int), _PP, ctypes.c_int64,
                           ctypes.POINTER(ctypes.c_int64)], ctypes.c_int),
    "hct_streamer_restart": ([_P], ctypes.c_int),
    "hct_streamer_free": ([_P], None),
    "hct_even_slice": ([_P, _S, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                        ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)],
                       ctypes.c_int),
    "hct_load_slice": ([_P, _S, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, _P, _P,
                        ctypes.c_uint64, _PP], ctypes.c_int),
    "hct_tensor_shape": ([_P, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int64)],
                         ctypes.c_int),
    "hct_runtime_bytes_read": ([_P, ctypes.POINTER(ctypes.c_uint64),
                                ctypes.POINTER(ctypes.c_uint64)], ctypes.c_int),
    "hct_streamer_create_ex": ([_P, ctypes.POINTER(StreamOptions), _P, _PP], ctypes.c_int),
    "hct_streamer_restart_at": ([_P, ctypes.c_int], ctypes.c_int),
    "hct_last_error": ([], _S),
    "hct_code_name": ([ctypes.c_int], _S),
}


def candidates():
    """Where libhct.so is looked for, in order: $HCT_LIBRARY, next to the package (what
    scripts/install_python.sh puts there), then the repository's build dirs."""
    env = os.environ.get("HCT_LIBRARY")
    if env:
        return [env]
    out = [os.path.join(_HERE, "libhct.so")]
    for b in ["build", "build-gpu"] + sorted(os.path.basename(p) for p in glob.glob(
            os.path.join(_ROOT, "build*"))):
        out.append(os.path.join(_ROOT, b, "runtime", "libhct.so"))
    return out


_lib = None
_lock = threading.Lock()


def lib():
    """The loaded library (loaded once)."""
    global _lib
    with _lock:
        if _lib is None:
            tried = candidates()
            path = next((p for p in tried if os.path.exists(p)), None)
            if path is None:
                raise ImportError("libhct.so not found (set HCT_LIBRARY or build it: cmake --build "
                                  "BUILD --target hct_shared); looked at: " + ", ".join(tried))
            L = ctypes.CDLL(path)
            for name, (args, res) in _SIGNATURES.items():
                try:
                    f = getattr(L, name)
                except AttributeError:
                    raise ImportError(f"{path} lacks {name}: it is older than this package; "
                                      "rebuild it (cmake --build BUILD --target hct_shared) or "
                                      "set HCT_LIBRARY") from None
                f.argtypes = args
                f.restype = res
            L.path = path
            _lib = L
        return _lib


def check(rc, what=None):
    """Raises the HCTError subclass of rc with the library's message (prefixed by `what`)."""
    if rc != 0:
        msg = lib().hct_last_error().decode(errors="replace")
        raise error(rc, f"{what}: {msg}" if what else msg)
