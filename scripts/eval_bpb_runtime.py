#!/usr/bin/env python3
"""Bits per byte of kdoc-lm-25m with weights loaded by libhct from an HCT model folder.

    python3 scripts/eval_bpb_runtime.py HCT_DIR [--config-dir DIR] [--val VAL_TXT]
                                        [--lib build-gpu/runtime/libhct.so] [--no-reference]

Every tensor of HCT_DIR (written by `hct-convert`) is loaded through the runtime's C API
(hct_open_hct: CPU zstd + GPU dequantize kernels on the GPU) and handed to torch with DLPack
(torch.from_dlpack, zero-copy); the model (config and construction exactly as
../shared/weights/eval_bpb.py: LlamaForCausalLM.from_pretrained(config_dir, dtype=bfloat16))
gets them as its state dict. Bits per byte are computed with the protocol of eval_bpb.py (its
small evaluation loop is copied below). Unless --no-reference, the same tensors are also loaded
with HCT_FORCE_HOST=1 (the runtime's CPU path: the CPU reference decoder) and the original
weights are evaluated too; prints one line each and the check |runtime - cpu decoder| <= 1e-4.
"""
import argparse
import ctypes
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from dlpack_torch import capsule, check, load_lib, Info  # noqa: E402
import eval_bpb_dirs  # noqa: E402


def bits_per_byte(model, val_path, dev):
    """The evaluation of ../shared/weights/eval_bpb.py (scripts/eval_bpb_dirs.py holds it)."""
    val = torch.frombuffer(bytearray(open(val_path, "rb").read()), dtype=torch.uint8).to(dev).long()
    return eval_bpb_dirs.bits_per_byte(model, val, dev)


def load_state(lib, hct_dir, force_host, dev):
    """Every tensor of the HCT model through libhct, as torch tensors (DLPack), on `dev`."""
    os.environ["HCT_FORCE_HOST"] = "1" if force_host else "0"
    rt = ctypes.c_void_p()
    check(lib, lib.hct_open_hct(hct_dir.encode(), None, ctypes.byref(rt)), "hct_open_hct")
    on_dev = bool(lib.hct_on_device(rt))
    stream = torch.cuda.current_stream().cuda_stream if on_dev else None
    state = {}
    for i in range(lib.hct_num_tensors(rt)):
        info = Info()
        check(lib, lib.hct_tensor_info_at(rt, i, ctypes.byref(info)), "info")
        t = ctypes.c_void_p()
        check(lib, lib.hct_load(rt, info.name, stream, None, 0, ctypes.byref(t)),
              f"load {info.name.decode()}")
        check(lib, lib.hct_tensor_wait(t), "wait")
        m = ctypes.c_void_p()
        check(lib, lib.hct_tensor_to_dlpack(t, ctypes.byref(m)), "dlpack")
        lib.hct_tensor_free(t)  # the DLPack export keeps the memory alive
        state[info.name.decode()] = torch.from_dlpack(capsule(m.value)).to(dev)
    st = HctStats()
    check(lib, lib.hct_runtime_stats(rt, ctypes.byref(st)), "stats")
    lib.hct_close(rt)
    return state, on_dev, st


class HctStats(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "pinned_staging_bytes", "loads_resident", "loads_one_shot", "loads_hct", "loads_cache",
        "cache_fallbacks", "bytes_hct_stored", "bytes_hct_decoded")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hct_dir")
    ap.add_argument("--config-dir", default=None,
                    help="config.json (and original weights, if any) to build the model from; "
                         "default: HCT_DIR (hct-convert copies config.json and val.txt there)")
    ap.add_argument("--val", default=None)
    ap.add_argument("--lib", default=os.path.join(ROOT, "build-gpu", "runtime", "libhct.so"))
    ap.add_argument("--no-reference", action="store_true")
    a = ap.parse_args()
    cfg_dir = a.config_dir or a.hct_dir
    val = a.val or os.path.join(cfg_dir, "val.txt")
    from transformers import AutoConfig, LlamaForCausalLM

    lib = load_lib(a.lib)
    lib.hct_open_hct.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.hct_runtime_stats.argtypes = [ctypes.c_void_p, ctypes.POINTER(HctStats)]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    # Built as eval_bpb.py builds it (from_pretrained, bf16) when the original weights are there,
    # else from the config alone with the same dtype; the weights are then replaced.
    has_weights = any(f.endswith(".safetensors") for f in os.listdir(cfg_dir))
    if has_weights:
        model = LlamaForCausalLM.from_pretrained(cfg_dir, dtype=torch.bfloat16)
    else:
        model = LlamaForCausalLM._from_config(AutoConfig.from_pretrained(cfg_dir),
                                              dtype=torch.bfloat16)
    model = model.to(dev).eval()
    results = {}
    if not a.no_reference and has_weights:
        results["original"] = bits_per_byte(model, val, dev)[0]
        print(f"original weights        bits_per_byte={results['original']:.6f}", flush=True)
    modes = [("runtime", False)] + ([] if a.no_reference else [("cpu_decoder", True)])
    for label, host in modes:
        state, on_dev, st = load_state(lib, a.hct_dir, host, dev)
        want = model.state_dict()
        missing = sorted(set(want) - set(state))
        extra = sorted(set(state) - set(want))
        if missing or extra:
            raise SystemExit(f"state dict mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
        for k, v in state.items():
            if v.shape != want[k].shape or v.dtype != want[k].dtype:
                raise SystemExit(f"{k}: {tuple(v.shape)} {v.dtype}, model wants "
                                 f"{tuple(want[k].shape)} {want[k].dtype}")
        model.load_state_dict(state, strict=True)
        del state
        bpb, count = bits_per_byte(model, val, dev)
        results[label] = bpb
        where = "GPU (zstd on CPU, kernels)" if on_dev else "host (CPU reference decoder)"
        print(f"{label:<23} bits_per_byte={bpb:.6f} bytes={count}  [{where}; "
              f"{st.loads_hct} HCT tensors, {st.bytes_hct_stored / 1e6:.1f} MB read]", flush=True)
    if "cpu_decoder" in results:
        d = abs(results["runtime"] - results["cpu_decoder"])
        cost = (f"; cost vs original {results['runtime'] - results['original']:+.4f} bits/byte"
                if "original" in results else "")
        print(f"|runtime - cpu_decoder| = {d:.2e}  (<= 1e-4: {'yes' if d <= 1e-4 else 'NO'}){cost}")
        return 0 if d <= 1e-4 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
