#!/usr/bin/env python3
"""Bits per byte of several kdoc-lm-25m model folders in one process (loads torch once).

    python3 scripts/eval_bpb_dirs.py VAL_TXT DIR [DIR...]

Same protocol as ../shared/weights/eval_bpb.py (token = byte; windows of 512 at stride 512;
x = val[s:s+512], y = val[s+1:s+513] for s < len - 513; bf16 weights, bf16 autocast, float32
logits). Prints one line per folder: "<dir> bits_per_byte=<v> bytes=<n>".
"""
import math
import sys

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM


def bits_per_byte(model, val, dev):
    seq, total, count = 512, 0.0, 0
    with torch.no_grad():
        for s in range(0, val.numel() - seq - 1, seq):
            x, y = val[s:s + seq][None], val[s + 1:s + seq + 1][None]
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
                logits = model(input_ids=x).logits.float()
            total += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1),
                                     reduction="sum").item()
            count += y.numel()
    return total / count / math.log(2), count


def main():
    val_path, dirs = sys.argv[1], sys.argv[2:]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    val = torch.frombuffer(bytearray(open(val_path, "rb").read()), dtype=torch.uint8)
    val = val.to(dev).long()
    for d in dirs:
        model = LlamaForCausalLM.from_pretrained(d, dtype=torch.bfloat16).to(dev).eval()
        bpb, n = bits_per_byte(model, val, dev)
        print(f"{d} bits_per_byte={bpb:.6f} bytes={n}", flush=True)
        del model


if __name__ == "__main__":
    main()
