"""hct.stream: run a Hugging Face causal LM whose decoder layers do not fit the GPU.

    model = LlamaForCausalLM.from_pretrained(dir, dtype=torch.bfloat16)   # on the CPU
    s = hct.stream.attach(model, dir, prefetch=1, device="cuda:0")
    model.generate(...)                                                  # unchanged

Only prefetch + 1 layers' weights are on the GPU, in slots allocated once (torch memory) and
reused for every layer of every token: a forward pre-hook on layer i binds layer i's parameters
to views of its slot (the compute stream waits on the load's event, not the device) and issues
the load of layer i + prefetch (cyclically: the last layers prefetch the next token's first
ones) on a copy stream, which first waits for the event recorded when the layer that used that
slot last finished. Everything outside the layers (embeddings, final norm, head) is resident on
the device. Loads are enqueued by the hook's thread: resident and cached files are pure DMA; a
one-shot load reads its file pieces on the host before returning while the GPU runs the work
already queued (docs/python.md).

With device="cpu" the same logic runs synchronously on host memory (tests, CI).
"""
import ctypes
import time

import torch

from . import _lib
from ._core import Runtime
from ._lib import HCTError, check, lib


def _decoder_layers(model):
    for path in ("model.layers", "model.model.layers", "transformer.h", "layers"):
        m = model
        try:
            for p in path.split("."):
                m = getattr(m, p)
        except AttributeError:
            continue
        if isinstance(m, torch.nn.ModuleList):
            return path, m
    raise HCTError("hct.stream.attach: no decoder layers found (model.model.layers)")


class _Events:
    """torch.cuda.Event on a GPU, nothing on the host (loads there are synchronous)."""

    def __init__(self, on_device):
        self.on_device = on_device

    def new(self):
        return torch.cuda.Event() if self.on_device else None

    def record(self, ev, stream):
        if ev is not None:
            ev.record(stream)

    def wait(self, stream, ev):
        if ev is not None:
            stream.wait_event(ev)


class PyStreamer:
    """engine="python": loads issued from the hooks' thread into torch-allocated slots (the path
    before LayerStreamer drove the hooks; kept for comparison). `stats()` gives bytes streamed."""

    engine = "python"

    def __init__(self, model, path, prefetch=1, device="cuda:0", options=None, cache_dir=None,
                 extra_bytes=0):
        if extra_bytes:
            raise HCTError("extra_bytes needs engine='layerstreamer'")
        if prefetch < 0:
            raise HCTError(f"prefetch {prefetch} must be >= 0")
        self.rt = Runtime(path, device=device, options=options, cache_dir=cache_dir)
        self.device = self.rt.device
        self.on_device = self.rt.on_device
        self.ev = _Events(self.on_device)
        self.prefix, self.layers = _decoder_layers(model)
        self.n = len(self.layers)
        self._map_tensors(model)
        self._place_rest(model)
        self.nslots = min(prefetch + 1, max(1, self.n))
        self.prefetch = self.nslots - 1
        self.slot_bytes = max((self._packed(k) for k in range(self.n)), default=0)
        self.slots = [torch.empty(max(1, self.slot_bytes), dtype=torch.uint8, device=self.device)
                      for _ in range(self.nslots)]
        self.free_ev = [self.ev.new() for _ in range(self.nslots)]
        self.copy_stream = torch.cuda.Stream(self.device) if self.on_device else None
        self.issued = []   # [(layer, slot, ready event)] in issue order
        self.seq = 0       # loads issued so far: slot = seq % nslots
        self.bound = None  # (layer, slot) whose parameters point into a slot
        self.bytes_streamed = 0
        self.load_seconds = 0.0
        self.hooks = []
        for k, layer in enumerate(self.layers):
            self.hooks.append(layer.register_forward_pre_hook(self._pre_hook(k)))
            self.hooks.append(layer.register_forward_hook(self._post_hook(k)))

    # -- setup
    def _map_tensors(self, model):
        infos = self.rt.infos()
        pre = self.prefix + "."
        self.names = [[] for _ in range(self.n)]    # file names of layer k, in file order
        self.targets = [[] for _ in range(self.n)]  # (module, attribute, dtype, shape)
        for name, (dtype, shape, nbytes, _) in infos.items():
            if not name.startswith(pre):
                continue
            idx, _, rest = name[len(pre):].partition(".")
            if not idx.isdigit() or int(idx) >= self.n:
                raise HCTError(f"{self.rt.path}: tensor '{name}' names no layer of the model")
            mod = self.layers[int(idx)]
            *owner, attr = rest.split(".")
            for p in owner:
                mod = getattr(mod, p, None)
                if mod is None:
                    raise HCTError(f"{self.rt.path}: tensor '{name}' is not in the model")
            cur = getattr(mod, attr, None)
            if cur is None or tuple(cur.shape) != tuple(shape):
                raise HCTError(f"{self.rt.path}: tensor '{name}' {list(shape)} does not match the "
                               f"model's {None if cur is None else list(cur.shape)}")
            self.names[int(idx)].append(name)
            self.targets[int(idx)].append((mod, attr, cur.dtype, tuple(shape), nbytes))
        for k in range(self.n):
            have = {id(getattr(m, a)) for m, a, *_ in self.targets[k]}
            for pn, p in self.layers[k].named_parameters():
                if id(p) not in have:
                    raise HCTError(f"{self.rt.path}: no tensor for '{pre}{k}.{pn}'")

    def _place_rest(self, model):
        """Layer weights become empty placeholders (their memory is released); the rest of the
        model moves to the device and gets the file's tensors."""
        layer_ids = {id(getattr(m, a)) for t in self.targets for m, a, *_ in t}
        infos = self.rt.infos()
        sd0 = model.state_dict(keep_vars=True)
        in_file = {id(t) for n, t in sd0.items() if n in infos}
        memo = {}  # old tensor -> its replacement, so that tied weights stay tied
        with torch.no_grad():
            for mod in model.modules():
                for store in (mod._parameters, mod._buffers):
                    for key, t in list(store.items()):
                        if t is None:
                            continue
                        if id(t) not in memo:
                            memo[id(t)] = self._replacement(t, id(t) in layer_ids,
                                                            id(t) in in_file)
                        store[key] = memo[id(t)]
            sd = model.state_dict(keep_vars=True)
            pre = self.prefix + "."
            for name in self.rt.infos():
                if name.startswith(pre):
                    continue
                if name not in sd:
                    raise HCTError(f"{self.rt.path}: tensor '{name}' is not in the model")
                src = self.rt.load(name)
                sd[name].data.copy_(src.to(sd[name].dtype))

    def _replacement(self, t, in_layer, in_file):
        """A layer weight: an empty placeholder on the device (its memory is released); a
        tensor on 'meta' (a model built without weights): new device memory the file fills;
        anything else: moved to the device. New objects rather than .data assignment, which
        torch refuses from 'meta' to 'cuda'."""
        if in_layer:
            new = torch.empty(0, dtype=t.dtype, device=self.device)
        elif t.is_meta:
            if not in_file:
                raise HCTError(f"{self.rt.path}: a tensor of the model {list(t.shape)} is on "
                               "'meta' and not in the file: initialize it before attach")
            new = torch.empty(t.shape, dtype=t.dtype, device=self.device)
        else:
            new = t.detach().to(self.device)
        if isinstance(t, torch.nn.Parameter):
            new = torch.nn.Parameter(new, requires_grad=False)
        return new

    def _packed(self, k):
        return self.rt.pack_offsets(self.names[k])[1] if self.names[k] else 0

    # -- streaming
    def _issue(self, k):
        s = self.seq % self.nslots
        self.seq += 1
        cur = torch.cuda.current_stream(self.device) if self.on_device else None
        t0 = time.perf_counter()
        if self.on_device:
            # The copy stream starts after the compute stream's last use of the slot.
            self.ev.wait(self.copy_stream, self.free_ev[s])
        slot = self.slots[s]
        handles = self.rt.load_many_handles(self.names[k], stream=self.copy_stream,
                                            dst=ctypes.c_void_p(slot.data_ptr()),
                                            dst_bytes=self.slot_bytes)
        base = slot.data_ptr()
        offs = []
        L = lib()
        try:
            for h in handles:
                if not self.on_device:
                    check(L.hct_tensor_wait(h), f"{self.rt.path}: layer {k}")
                offs.append(L.hct_tensor_data(h) - base)
        finally:
            for h in handles:
                L.hct_tensor_free(h)  # the memory is the slot's; nothing is freed
        ready = self.ev.new()
        self.ev.record(ready, self.copy_stream)  # ordered after the copies (the C API's rule)
        self.load_seconds += time.perf_counter() - t0
        self.bytes_streamed += sum(t[4] for t in self.targets[k])
        self.issued.append((k, s, ready, offs))
        del cur

    def _pre_hook(self, k):
        def hook(module, args):
            self._enter(k)
        return hook

    def _post_hook(self, k):
        def hook(module, args, output):
            self._leave(k)
        return hook

    def _enter(self, k):
        if self.bound is not None:  # a forward that raised left a layer bound
            self._leave(self.bound[0])
        if not self.issued or self.issued[0][0] != k:
            # Not the layer prefetched (first call, or the model ran in another order): drain
            # what is in flight and load this one now.
            self._drain()
            self._issue(k)
        layer, s, ready, offs = self.issued.pop(0)
        while len(self.issued) < self.prefetch:
            nxt = (self.issued[-1][0] if self.issued else k) + 1
            self._issue(nxt % self.n)
        if self.on_device:
            self.ev.wait(torch.cuda.current_stream(self.device), ready)
        slot = self.slots[s]
        for (mod, attr, dtype, shape, nbytes), off in zip(self.targets[k], offs):
            getattr(mod, attr).data = slot[off:off + nbytes].view(dtype).view(shape)
        self.bound = (k, s)

    def _leave(self, k):
        if self.bound is None or self.bound[0] != k:
            return
        _, s = self.bound
        for mod, attr, dtype, _, _ in self.targets[k]:
            getattr(mod, attr).data = torch.empty(0, dtype=dtype, device=self.device)
        cur = torch.cuda.current_stream(self.device) if self.on_device else None
        self.ev.record(self.free_ev[s], cur)
        self.bound = None

    def _drain(self):
        self.issued.clear()  # their slots are free again once their copies are done: the next
        # load into a slot waits for the copy stream order (same stream) and for free_ev.

    # -- reporting
    def stats(self):
        return {"layers": self.n, "slots": self.nslots, "slot_bytes": self.slot_bytes,
                "bytes_streamed": self.bytes_streamed, "issue_seconds": self.load_seconds,
                **self.rt.stats()}

    def detach(self):
        for h in self.hooks:
            h.remove()
        self.hooks = []


class Streamer(PyStreamer):
    """engine="layerstreamer" (default): hct::LayerStreamer (C API, cyclic) loads the layers on
    its own thread, so the hooks only wait for a layer and bind it: the next layer's reads run
    while this one computes, and across tokens (after the last layer it goes on with layer 0).
    With extra_bytes (prefetch 0), the streamer's buffer is one slot plus extra_bytes in two
    overlapping windows, and each weight of an nn.Linear called once per layer forward is
    dropped right after that call, so the next layer's tensors load as soon as the bytes they
    land on are free (hct::LayerStreamer::Options)."""

    engine = "layerstreamer"

    def __init__(self, model, path, prefetch=1, device="cuda:0", options=None, cache_dir=None,
                 extra_bytes=0, early_release=True):
        if prefetch < 0 or extra_bytes < 0:
            raise HCTError(f"prefetch {prefetch} and extra_bytes {extra_bytes} must be >= 0")
        if extra_bytes and prefetch:
            raise HCTError(f"extra_bytes {extra_bytes} needs prefetch 0 (got {prefetch})")
        self.rt = Runtime(path, device=device, options=options, cache_dir=cache_dir)
        self.device, self.on_device = self.rt.device, self.rt.on_device
        self.prefix, self.layers = _decoder_layers(model)
        self.n = len(self.layers)
        self._map_tensors(model)
        self._place_rest(model)
        self._use_order(early_release)
        self.stream = torch.cuda.current_stream(self.device) if self.on_device else None
        self._s = ctypes.c_void_p()
        flat = [n for names in self.names for n in names]
        o = _lib.StreamOptions()
        o.struct_size = ctypes.sizeof(o)
        o.prefetch, o.extra_bytes, o.cyclic, o.num_layers = prefetch, extra_bytes, 1, self.n
        sizes = (ctypes.c_int64 * max(1, self.n))(*[len(x) for x in self.names])
        arr = (ctypes.c_char_p * max(1, len(flat)))(*[x.encode() for x in flat])
        o.layer_sizes, o.names = sizes, arr
        check(lib().hct_streamer_create_ex(self.rt._h, ctypes.byref(o),
                                           self.rt.stream_handle(self.stream),
                                           ctypes.byref(self._s)), self.rt.path)
        L = lib()
        self.slot_bytes = L.hct_streamer_slot_bytes(self._s)
        self.nslots = min(prefetch + 1, max(1, self.n)) if not extra_bytes else 1
        self.prefetch = self.nslots - 1
        self.extra_bytes = (min(extra_bytes, self.slot_bytes) // 256 * 256) if extra_bytes else 0
        self.buffer_bytes = self.slot_bytes * self.nslots + self.extra_bytes
        self._cap = max(1, L.hct_streamer_max_tensors(self._s))
        self.bytes_streamed, self.load_seconds, self.wait_seconds, self.restarts = 0, 0.0, 0.0, 0
        self.bound = None  # (layer, {name: (module, attribute, dtype)}) bound now
        self.expect = 0    # the layer the streamer hands out next
        self.hooks = []
        for k, layer in enumerate(self.layers):
            self.hooks.append(layer.register_forward_pre_hook(self._pre_hook(k)))
            self.hooks.append(layer.register_forward_hook(self._post_hook(k)))
        for mod, names in self.early.items():
            self.hooks.append(mod.register_forward_pre_hook(self._mod_pre(mod)))
            self.hooks.append(mod.register_forward_hook(self._mod_post(mod)))

    def _use_order(self, early_release):
        """Each layer's tensors in the order the layer uses them: those of nn.Linear modules
        (released right after their one call: `early`) in module order, then the others (norms,
        released with the layer). Only the order of loads and releases depends on it."""
        self.early = {}  # module -> [(layer, name, attribute)]
        for k in range(self.n):
            rank = {id(m): i for i, m in enumerate(self.layers[k].modules())}
            items = list(zip(self.names[k], self.targets[k]))
            lin = lambda t: (early_release and isinstance(t[0], torch.nn.Linear)  # noqa: E731
                             and t[0] is not self.layers[k])
            items.sort(key=lambda it: (0 if lin(it[1]) else 1, rank.get(id(it[1][0]), 1 << 30)))
            self.names[k] = [n for n, _ in items]
            self.targets[k] = [t for _, t in items]
            for n, t in items:
                if lin(t):
                    self.early.setdefault(t[0], []).append((k, n, t[1]))

    def _next(self, k):
        L = lib()
        out = (ctypes.c_void_p * self._cap)()
        index, cnt = ctypes.c_int(), ctypes.c_int64()
        t0 = time.perf_counter()
        rc = L.hct_streamer_next(self._s, ctypes.byref(index), out, self._cap, ctypes.byref(cnt))
        self.wait_seconds += time.perf_counter() - t0
        check(rc, f"{self.rt.path}: layer {k}")
        handles = [ctypes.c_void_p(out[i]) for i in range(cnt.value)]
        tensors = {}
        try:
            for h in handles:
                name = L.hct_tensor_name(h).decode()
                tensors[name] = self.rt.to_torch(h, name)  # frees h
        finally:
            for h in handles[len(tensors) + 1:]:
                L.hct_tensor_free(h)
        self.expect = (index.value + 1) % self.n
        return index.value, tensors

    def _enter(self, k):
        if self.bound is not None:  # a forward that raised left a layer bound
            self._leave(self.bound[0])
        if k != self.expect:  # not the layer loading next (first call, or another order)
            check(lib().hct_streamer_restart_at(self._s, k), self.rt.path)
            self.restarts += 1
            self.expect = k
        got, tensors = self._next(k)
        if got != k:
            raise HCTError(f"{self.rt.path}: the streamer handed out layer {got}, not {k}")
        cur = torch.cuda.current_stream(self.device) if self.on_device else None
        if cur is not None and cur != self.stream:
            cur.wait_stream(self.stream)  # the loads are ordered on the streamer's stream
        bound = {}
        for name, (mod, attr, dtype, shape, nbytes) in zip(self.names[k], self.targets[k]):
            t = tensors.pop(name)
            getattr(mod, attr).data = t if t.dtype == dtype else t.view(dtype)
            bound[name] = (mod, attr, dtype)
            self.bytes_streamed += nbytes
        del tensors
        self.bound = (k, bound, cur)

    def _drop(self, names):
        """Points the parameters of `names` (of the bound layer) back at empty placeholders: the
        streamer's tensors are dropped, which releases their bytes after the work enqueued so
        far on the streamer's stream."""
        k, bound, cur = self.bound
        if cur is not None and cur != self.stream:
            self.stream.wait_stream(cur)
        for n in names:
            if n in bound:
                mod, attr, dtype = bound.pop(n)
                getattr(mod, attr).data = torch.empty(0, dtype=dtype, device=self.device)

    def _leave(self, k):
        if self.bound is None or self.bound[0] != k:
            return
        self._drop(list(self.bound[1]))
        self.bound = None

    def _mod_pre(self, mod):
        def hook(module, args):
            if self.bound is None:
                return
            for k, n, attr in self.early[mod]:
                if k == self.bound[0] and n not in self.bound[1]:
                    raise HCTError(f"{self.rt.path}: '{n}' was released after its module's first "
                                   f"call in this forward of layer {k}; the module is called "
                                   "again: attach(..., early_release=False)")
        return hook

    def _mod_post(self, mod):
        def hook(module, args, output):
            if self.bound is not None:
                self._drop([n for k, n, _ in self.early[mod] if k == self.bound[0]])
        return hook

    def stats(self):
        return {"layers": self.n, "slots": self.nslots, "slot_bytes": self.slot_bytes,
                "extra_bytes": self.extra_bytes, "buffer_bytes": self.buffer_bytes,
                "bytes_streamed": self.bytes_streamed, "issue_seconds": 0.0,
                "wait_seconds": self.wait_seconds, "restarts": self.restarts,
                "engine": self.engine, **self.rt.stats()}

    def detach(self):
        for h in self.hooks:
            h.remove()
        self.hooks = []
        if self.bound is not None:
            self._leave(self.bound[0])
        if getattr(self, "_s", None):
            lib().hct_streamer_free(self._s)
            self._s = None

    def __del__(self):
        try:
            if getattr(self, "_s", None):
                lib().hct_streamer_free(self._s)
                self._s = None
        except Exception:
            pass


def budget_plan(path, budget, reserve=None):
    """How streaming fits `budget` bytes of GPU memory: {prefetch, extra_bytes, rest, layer,
    layers}. The non-layer tensors (rest) are resident; `reserve` (default max(256 MiB, budget /
    16)) is left for activations, the KV cache and workspaces; of what remains, whole slots of
    the largest layer give prefetch = slots - 1, and with a single slot the bytes left beyond it
    (up to one layer) become extra_bytes (LayerStreamer's partial second slot)."""
    rt = Runtime(path, device="cpu")  # the catalog only (host placement: no GPU memory)
    layer, rest = {}, 0
    for dtype, shape, nbytes, lay in rt.infos().values():
        if lay >= 0:
            layer[lay] = layer.get(lay, 0) + ((nbytes + 255) // 256) * 256
        else:
            rest += nbytes
    rt.close()
    reserve = max(256 << 20, budget // 16) if reserve is None else reserve
    biggest = max(layer.values(), default=1)
    free = budget - rest - reserve
    slots = min(free // biggest, len(layer)) if free > 0 else 0
    if slots < 1:
        raise HCTError(f"GPU budget {budget} B holds not even one layer ({biggest} B) plus the "
                       f"resident part ({rest} B) and the reserve ({reserve} B)")
    extra = min(free - biggest, biggest) if slots == 1 and len(layer) > 1 else 0
    return {"prefetch": int(slots - 1), "extra_bytes": int(max(0, extra)) // 256 * 256,
            "rest": rest, "layer": biggest, "layers": len(layer), "reserve": reserve}


def attach(model, path, prefetch=1, device="cuda:0", options=None, cache_dir=None,
           extra_bytes=0, engine="layerstreamer", early_release=True):
    """Streams `model`'s decoder layers from `path` (safetensors, HCT or a warm cache dir) in
    prefetch + 1 device slots (or, prefetch 0 and extra_bytes > 0, one slot plus extra_bytes);
    returns the Streamer (keep it: stats(), detach()). engine: "layerstreamer" (default) or
    "python" (the earlier hook-issued loads; no extra_bytes)."""
    if engine == "python":
        s = PyStreamer(model, path, prefetch=prefetch, device=device, options=options,
                       cache_dir=cache_dir, extra_bytes=extra_bytes)
    elif engine == "layerstreamer":
        s = Streamer(model, path, prefetch=prefetch, device=device, options=options,
                     cache_dir=cache_dir, extra_bytes=extra_bytes, early_release=early_release)
    else:
        raise HCTError(f"engine {engine!r}: 'layerstreamer' or 'python'")
    model._hct_streamer = s
    return s


class LayerIterator:
    """hct::LayerStreamer through the C API (hct_streamer_*), without a model: iterating yields
    (layer index, {name: tensor}) for layers 0..n-1 with `prefetch` layers loading ahead in
    prefetch + 1 slots; a layer's slot is reused once all its tensors are dropped (on the GPU,
    after the work enqueued on `stream` before they were dropped). Tensors reach torch by DLPack,
    ordered on `stream` (default torch's current stream). restart() starts a new pass (it
    replaces the C streamer: its slots are allocated again; see hct_streamer_restart)."""

    def __init__(self, path, prefetch=1, device="cuda:0", options=None, cache_dir=None,
                 stream=None, extra_bytes=0):
        self.rt = Runtime(path, device=device, options=options, cache_dir=cache_dir)
        self._s = ctypes.c_void_p()
        o = _lib.StreamOptions()
        o.struct_size = ctypes.sizeof(o)
        o.prefetch, o.extra_bytes = int(prefetch), int(extra_bytes)
        try:
            check(lib().hct_streamer_create_ex(self.rt._h, ctypes.byref(o),
                                               self.rt.stream_handle(stream),
                                               ctypes.byref(self._s)), self.rt.path)
        except Exception:
            self.rt.close()
            raise
        L = lib()
        self.num_layers = L.hct_streamer_num_layers(self._s)
        self.slot_bytes = L.hct_streamer_slot_bytes(self._s)
        self._cap = max(1, L.hct_streamer_max_tensors(self._s))

    def __iter__(self):
        return self

    def __next__(self):
        L = lib()
        out = (ctypes.c_void_p * self._cap)()
        index, n = ctypes.c_int(), ctypes.c_int64()
        rc = L.hct_streamer_next(self._s, ctypes.byref(index), out, self._cap, ctypes.byref(n))
        if rc == _lib.OutOfRangeError.code:  # after the last layer (the capacity always fits)
            raise StopIteration
        check(rc, self.rt.path)
        handles = [ctypes.c_void_p(out[i]) for i in range(n.value)]
        names = [L.hct_tensor_name(h).decode() for h in handles]
        tensors = {}
        try:
            for h, name in zip(handles, names):
                tensors[name] = self.rt.to_torch(h, name)  # frees h
        finally:
            for h in handles[len(tensors) + 1:]:
                L.hct_tensor_free(h)
        return index.value, tensors

    def restart(self):
        check(lib().hct_streamer_restart(self._s), self.rt.path)

    def close(self):
        if getattr(self, "_s", None):
            lib().hct_streamer_free(self._s)
            self._s = None
        self.rt.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
