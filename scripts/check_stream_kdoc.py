#!/usr/bin/env python3
"""Issue 11's kdoc-lm-25m check of hct.stream (GPU machine: torch + transformers):

    python3 scripts/check_stream_kdoc.py [MODEL_DIR] [--prefetch 1] [--tokens 64]

Bits per byte on val.txt (protocol of ../shared/weights/README.md, scripts/eval_bpb_dirs.py)
and greedy text, once with the whole model on the GPU and once with its decoder layers
streamed by hct.stream from MODEL_DIR (default ../shared/weights/kdoc-lm-25m). Passes (exit 0)
when the bits per byte agree within 1e-4 and the texts are identical; exit 1 otherwise, 77 when
the weights or a GPU are absent.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)

import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?",
                    default=os.path.join(ROOT, "..", "shared", "weights", "kdoc-lm-25m"))
    ap.add_argument("--prefetch", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--extra-bytes", type=int, default=0,
                    help="prefetch 0: LayerStreamer's partial second slot (bytes)")
    ap.add_argument("--engine", default="layerstreamer")
    a = ap.parse_args()
    val_path = os.path.join(a.model, "val.txt")
    if not torch.cuda.is_available() or not os.path.exists(val_path):
        print("check_stream_kdoc: skipped (needs a GPU and", val_path + ")")
        return 77
    import hct.stream
    from eval_bpb_dirs import bits_per_byte
    from generate import build
    from transformers import LlamaForCausalLM
    dev = "cuda"
    val = torch.frombuffer(bytearray(open(val_path, "rb").read()), dtype=torch.uint8)
    val = val.to(dev).long()
    prompt = torch.tensor([list(b"The kernel ")], device=dev)
    greedy = dict(max_new_tokens=a.tokens, min_new_tokens=a.tokens, do_sample=False,
                  attention_mask=torch.ones_like(prompt))

    whole = LlamaForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).to(dev).eval()
    ref_bpb, n = bits_per_byte(whole, val, dev)
    with torch.no_grad():
        ref_text = whole.generate(prompt, **greedy)[0].tolist()
    del whole
    torch.cuda.empty_cache()

    model, _ = build(a.model, torch.bfloat16)
    s = hct.stream.attach(model, a.model, prefetch=a.prefetch, device="cuda:0",
                          extra_bytes=a.extra_bytes, engine=a.engine)
    bpb, n2 = bits_per_byte(model, val, dev)
    with torch.no_grad():
        text = model.generate(prompt, **greedy)[0].tolist()
    ok = abs(bpb - ref_bpb) <= 1e-4 and text == ref_text and n == n2
    print(f"whole: bits_per_byte={ref_bpb:.6f}; streamed ({a.engine}, prefetch {a.prefetch}, extra {a.extra_bytes} B, {s.nslots} slots "
          f"of {s.slot_bytes} B): bits_per_byte={bpb:.6f} (diff {bpb - ref_bpb:+.2e}); "
          f"greedy text identical: {text == ref_text}; streamed {s.bytes_streamed / 1e9:.2f} GB")
    if text != ref_text:
        print("whole:   ", bytes(ref_text).decode(errors="replace"))
        print("streamed:", bytes(text).decode(errors="replace"))
    print("check_stream_kdoc:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
