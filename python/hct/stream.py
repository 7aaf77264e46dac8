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


class Streamer:
    """The state of one attach(); see the module doc. `stats()` gives bytes streamed and time."""

    def __init__(self, model, path, prefetch=1, device="cuda:0", options=None, cache_dir=None):
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


def attach(model, path, prefetch=1, device="cuda:0", options=None, cache_dir=None):
    """Streams `model`'s decoder layers from `path` (safetensors, HCT or a warm cache dir) in
    prefetch + 1 device slots; returns the Streamer (keep it: stats(), detach())."""
    s = Streamer(model, path, prefetch=prefetch, device=device, options=options,
                 cache_dir=cache_dir)
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
                 stream=None):
        self.rt = Runtime(path, device=device, options=options, cache_dir=cache_dir)
        self._s = ctypes.c_void_p()
        try:
            check(lib().hct_streamer_create(self.rt._h, int(prefetch),
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
