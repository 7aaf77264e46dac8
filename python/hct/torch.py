"""hct.torch: whole-model loads into torch (mirrors safetensors.torch)."""
from ._core import TORCH_DTYPES, Runtime, progress_bar
from ._lib import HCTError

import torch as _torch


def iter_tensors(path, device="cpu", names=None, options=None, progress=None, model=None,
                 cache_dir=None, group_bytes=None, shared=True):
    """Yields (name, tensor) in catalog order (or `names` order) as each one is loaded; on the
    GPU each tensor is ordered on torch's current stream. Tensors of one layer load together in
    groups of up to `group_bytes` (default GROUP_BYTES): one hct_load_many call straight into one
    torch allocation per group. `shared`: use the process's shared engine for these settings
    (its pinned ring and open files are kept between calls; hct.release_shared() frees them).
    `cache_dir`: see Runtime."""
    rt = Runtime(path, device=device, options=options, model=model, cache_dir=cache_dir,
                 shared=shared)
    try:
        infos = rt.infos()
        names = list(infos) if names is None else list(names)
        bar = progress_bar(sum(infos[n][2] for n in names if n in infos), "hct load", progress)
        for group in _groups(names, infos, group_bytes or GROUP_BYTES):
            for n, t in zip(group, rt.load_tensors(group)):
                if bar is not None:
                    bar.update(infos[n][2])
                yield n, t
        if bar is not None:
            bar.close()
    finally:
        rt.close()


GROUP_BYTES = 64 << 20   # iter_tensors: memory is released per group as tensors are dropped
FILE_GROUP_BYTES = 2 << 30  # load_file keeps everything: fewer, larger loads keep the I/O busy


def _groups(names, infos, limit):
    """Consecutive names of one layer, up to `limit` bytes (a larger tensor goes alone)."""
    group, size, layer = [], 0, None
    for n in names:
        b, lay = (infos[n][2], infos[n][3]) if n in infos else (0, None)
        if group and (lay != layer or size + b > limit):
            yield group
            group, size = [], 0
        group.append(n)
        size += b
        layer = lay
    if group:
        yield group


def load_file(path, device="cpu", options=None, progress=None, model=None, cache_dir=None,
              shared=True, rank=None, world=None, plan=None, split="exact"):
    """{name: tensor} of every tensor of `path` (safetensors file or folder, HCT file or folder,
    or a warm cache directory), like safetensors.torch.load_file. The tensors of one layer (up
    to FILE_GROUP_BYTES) share one allocation.

    Tensor parallelism (docs/tensor-parallel.md): with `world` (and `rank`, 0..world-1), rank
    `rank`'s shards instead: each tensor split by the sharding plan (hct.tp: the Llama defaults,
    overridden by `plan`, a dict or list of (fnmatch pattern, mode)) is loaded as its slice,
    reading only the bytes (or HCT chunks) that hold it; replicated tensors load whole."""
    if world is None:
        return dict(iter_tensors(path, device=device, options=options, progress=progress,
                                 model=model, cache_dir=cache_dir, group_bytes=FILE_GROUP_BYTES,
                                 shared=shared))
    return _load_shards(path, device, options, progress, model, cache_dir, shared,
                        0 if rank is None else rank, world, plan, split)


def _load_shards(path, device, options, progress, model, cache_dir, shared, rank, world, plan,
                 split):
    from . import tp
    rt = Runtime(path, device=device, options=options, model=model, cache_dir=cache_dir,
                 shared=shared)
    try:
        infos = rt.infos()
        table = tp.shard_table(infos, rank, world, plan, split)
        out = {}
        whole = [n for n in infos if table[n][2] is None]
        bar = progress_bar(sum(infos[n][2] for n in infos) // max(world, 1), "hct load shards",
                           progress)
        for group in _groups(whole, infos, FILE_GROUP_BYTES):
            for n, t in zip(group, rt.load_tensors(group)):
                out[n] = t
                if bar is not None:
                    bar.update(infos[n][2])
        for n in infos:
            mode, dim, start, length = table[n]
            if start is not None:
                out[n] = rt.load_slice(n, dim, start, length)
                if bar is not None:
                    bar.update(out[n].numel() * out[n].element_size())
        if bar is not None:
            bar.close()
        return {n: out[n] for n in infos}  # catalog order
    finally:
        rt.close()


def _shares_loaded(t, loaded):
    return any(t.data_ptr() == u.data_ptr() and t.device == u.device for u in loaded)


def load_model(model, path, strict=True, device=None, options=None, progress=None,
               cache_dir=None, shared=True):
    """Loads `path` into `model`'s parameters and buffers by state_dict name. A parameter that
    is contiguous, on `device`, of the same dtype and size is loaded straight into its memory
    (no copy); others get a copy. strict: keys missing from the file (other than tied weights
    that share memory with a loaded one) or not in the model raise HCTError. Returns
    (missing, unexpected) like torch's load_state_dict."""
    sd = model.state_dict(keep_vars=True)
    if device is None:
        first = next(iter(sd.values()), None)
        device = first.device if first is not None and first.device.type != "meta" else "cpu"
    rt = Runtime(path, device=device, options=options, cache_dir=cache_dir, shared=shared)
    try:
        infos = rt.infos()
        unexpected = [n for n in infos if n not in sd]
        todo = [n for n in sd if n in infos]
        loaded = []
        bar = progress_bar(sum(infos[n][2] for n in todo), "hct load_model", progress)
        for n in todo:
            _load_into(rt, n, sd[n], infos[n])
            loaded.append(sd[n])
            if bar is not None:
                bar.update(infos[n][2])
        if bar is not None:
            bar.close()
        missing = [n for n in sd if n not in infos and not _shares_loaded(sd[n], loaded)]
        if strict and (missing or unexpected):
            raise HCTError(f"{path}: load_model(strict=True): missing from the file: "
                           f"{missing[:8]}{'...' if len(missing) > 8 else ''}; not in the model: "
                           f"{unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
        return missing, unexpected
    finally:
        rt.close()


def _load_into(rt, name, target, info):
    dtype, shape, nbytes, _ = info
    if tuple(target.shape) != tuple(shape):
        raise HCTError(f"{rt.path}: tensor '{name}' has shape {list(shape)}, the model's "
                       f"{list(target.shape)}")
    direct = (target.is_contiguous() and target.device == rt.device and
              target.element_size() * target.numel() == nbytes and
              _dtype_name(target.dtype) == dtype)
    with _torch.no_grad():
        if direct:
            # Straight into the parameter's memory; ordered on the current stream.
            h = rt.load_handle(name, dst=_ptr(target), dst_bytes=nbytes)
            if not rt.on_device:
                from ._lib import check, lib
                check(lib().hct_tensor_wait(h), f"{rt.path}: tensor '{name}'")
            from ._lib import lib as _l
            _l().hct_tensor_free(h)
        else:
            src = rt.load(name)
            if target.device.type == "meta":
                raise HCTError(f"{rt.path}: tensor '{name}': the model's parameter is on 'meta'; "
                               "materialize it first (model.to_empty(device=...))")
            target.data.copy_(src.to(target.dtype))


def _ptr(t):
    import ctypes
    return ctypes.c_void_p(t.data_ptr())


_NAMES = {d: n for n, d in TORCH_DTYPES.items()}


def _dtype_name(d):
    return _NAMES.get(d)
