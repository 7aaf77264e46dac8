"""hct.tp: tensor-parallel sharding plans and shard loads (docs/tensor-parallel.md).

A plan says, for each tensor name, how a tensor-parallel group of `world` ranks shares it:

- "column": split the leading dimension (dim 0) -- the output features of an [out, in] weight
  (column-parallel linear layers: q/k/v, gate/up; their biases too);
- "row": split the trailing dimension (the last) -- the input features (row-parallel layers:
  o_proj, down_proj); 1-D tensors under "row" (their biases, added after the reduction) are
  replicated;
- "vocab": split the leading dimension of an embedding or output head ([vocab, hidden]);
- "replicate": every rank loads all of it (norms, rotary tables, anything unmatched).

A plan is a list of (pattern, mode) pairs, fnmatch patterns over full tensor names, the first
match wins. `plan=` arguments accept such a list or a dict; the caller's rules come first and the
Llama defaults (LLAMA_PLAN) after them, so one rule overrides one tensor family:

    sd = hct.torch.load_file("llama-dir", device=f"cuda:{rank}", rank=rank, world=world,
                             plan={"lm_head.weight": "replicate"})

Splits are even: a dimension that `world` does not divide raises InvalidArgumentError naming the
tensor (split="chunk" splits as torch.chunk instead).
"""
import fnmatch

from . import _lib

MODES = ("column", "row", "vocab", "replicate")

# The Llama family (Llama, Mistral, Qwen2, ... with HF names), as Megatron-LM and vLLM shard it.
LLAMA_PLAN = [
    ("*.self_attn.q_proj.*", "column"),
    ("*.self_attn.k_proj.*", "column"),
    ("*.self_attn.v_proj.*", "column"),
    ("*.self_attn.o_proj.*", "row"),
    ("*.mlp.gate_proj.*", "column"),
    ("*.mlp.up_proj.*", "column"),
    ("*.mlp.down_proj.*", "row"),
    ("*embed_tokens.weight", "vocab"),
    ("lm_head.weight", "vocab"),
    ("*", "replicate"),
]


def make_plan(plan=None):
    """The rules of `plan` (a dict or a list of (pattern, mode); None: none) followed by
    LLAMA_PLAN. InvalidArgumentError for an unknown mode."""
    rules = list(plan.items()) if isinstance(plan, dict) else list(plan or [])
    for pat, mode in rules:
        if mode not in MODES:
            raise _lib.InvalidArgumentError(f"plan rule {pat!r}: mode {mode!r} is not one of "
                                            f"{', '.join(MODES)}")
    return rules + LLAMA_PLAN


def mode_of(name, shape, rules):
    """The mode the first matching rule gives `name` ("replicate" for scalars, and for 1-D
    tensors under "row")."""
    mode = next((m for p, m in rules if fnmatch.fnmatchcase(name, p)), "replicate")
    if not shape or (mode == "row" and len(shape) == 1):
        return "replicate"
    return mode


def dim_of(mode):
    """The slice dimension of a split mode (hct_slice_dim), None for "replicate"."""
    if mode in ("column", "vocab"):
        return _lib.SLICE_LEADING
    if mode == "row":
        return _lib.SLICE_TRAILING
    return None


def shard_table(infos, rank, world, plan=None, split="exact"):
    """{name: (mode, dim, start, length)} for every tensor of `infos` ({name: (dtype, shape,
    ...)} as Runtime.infos()); start/length None when replicated."""
    if world < 1 or not 0 <= rank < world:
        raise _lib.InvalidArgumentError(f"rank {rank} of world {world}")
    if split not in ("exact", "chunk"):
        raise _lib.InvalidArgumentError(f"split {split!r}: 'exact' or 'chunk'")
    rules = make_plan(plan)
    out = {}
    for name, info in infos.items():
        shape = info[1]
        mode = mode_of(name, shape, rules)
        dim = dim_of(mode)
        if dim is None or world == 1:
            out[name] = (mode, dim, None, None)
            continue
        n = shape[0] if dim == _lib.SLICE_LEADING or len(shape) == 1 else shape[-1]
        if n % world and split == "exact":
            raise _lib.InvalidArgumentError(
                f"tensor '{name}' ({mode}): dimension {n} does not split evenly into {world} "
                "parts (override its rule in plan=, or split='chunk')")
        part = n // world if n % world == 0 else -(-n // world)
        start = min(n, part * rank)
        out[name] = (mode, dim, start, min(n, start + part) - start)
    return out


def iter_shards(rt, rank, world, plan=None, split="exact", names=None, stream=None):
    """Yields (name, tensor) of rank `rank`'s shards of an open hct Runtime `rt`, in catalog
    order (or `names` order): split tensors through Runtime.load_slice (only the slice's bytes or
    chunks are read), replicated ones whole."""
    infos = rt.infos()
    table = shard_table(infos, rank, world, plan, split)
    for name in (list(infos) if names is None else names):
        mode, dim, start, length = table[name]
        if start is None:
            yield name, rt.load(name, stream)
        else:
            yield name, rt.load_slice(name, dim, start, length, stream)
