#!/usr/bin/env python3
"""Generates the safetensors test files in tests/data/safetensors/ and the fuzz seeds.

Pure Python (struct + json, no numpy/safetensors needed), writing the bytes the way the reference
writer does: 8-byte little-endian header length, compact JSON with "__metadata__" first, padded
with spaces so the data starts 8-byte aligned. Run from the repository root:

    python3 scripts/make_safetensors_testdata.py

Outputs:
  tests/data/safetensors/golden_*.safetensors   valid files
  tests/data/safetensors/golden.json            what each golden file holds (header order, dtype,
                                                shape, offsets, data as hex, metadata), written
                                                from the generator's own inputs, so the C++ test
                                                checks the reader against an independent source
  tests/data/safetensors/bad/*.safetensors      must-fail files (one defect each; the expected
                                                error code and message are in safetensors_test.cc)
  tests/data/fuzz/safetensors/*                 seed corpus (copies of the golden files)
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "safetensors")
BAD = os.path.join(OUT, "bad")
SEEDS = os.path.join(ROOT, "tests", "data", "fuzz", "safetensors")

# dtype -> bits, per the safetensors spec.
BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


def nbytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    bits = n * BITS[dtype]
    assert bits % 8 == 0
    return bits // 8


def pattern(seed, n):
    """Deterministic, distinct bytes per tensor."""
    return bytes((seed * 31 + i * 7 + 3) % 256 for i in range(n))


def pack(header_text, data, pad=True):
    """Length + header (+ spaces to 8-byte alignment) + data."""
    h = header_text.encode("utf-8")
    if pad:
        h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def build(tensors, metadata=None, data_order=None):
    """tensors: list of (name, dtype, shape, bytes) in header order; data_order: names in the
    order their bytes are laid out (default: header order)."""
    order = data_order or [t[0] for t in tensors]
    by_name = {t[0]: t for t in tensors}
    offsets, data, pos = {}, b"", 0
    for name in order:
        b = by_name[name][3]
        offsets[name] = [pos, pos + len(b)]
        data += b
        pos += len(b)
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, _ in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets[name]}
    return pack(json.dumps(header, separators=(",", ":")), data), offsets


def write(path, blob):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)


def golden():
    files = {}

    # One tensor per dtype, shapes chosen so sub-byte types fill whole bytes.
    shapes = {"F4": [2, 3], "F6_E2M3": [4], "F6_E3M2": [2, 4], "C64": [2], "BOOL": [5]}
    ts = []
    for i, dt in enumerate(BITS):
        shape = shapes.get(dt, [2, 3] if i % 2 else [3])
        data = pattern(i, nbytes(dt, shape))
        if dt == "BOOL":
            data = bytes([1, 0, 1, 1, 0])
        ts.append(("t_" + dt.lower(), dt, shape, data))
    files["golden_all_dtypes.safetensors"] = (ts, {"format": "pt", "source": "hct-test"}, None)

    # Header order differs from data order; a scalar and zero-size tensors.
    ts = [
        ("z.last_in_header", "F32", [2], pattern(40, 8)),
        ("a.scalar", "F64", [], pattern(41, 8)),
        ("m.empty", "F16", [0, 3], b""),
        ("b.empty2", "I32", [3, 0], b""),
        ("c.bf16", "BF16", [2, 2], pattern(42, 8)),
    ]
    files["golden_order.safetensors"] = (
        ts, None, ["a.scalar", "m.empty", "c.bf16", "b.empty2", "z.last_in_header"])

    files["golden_no_tensors.safetensors"] = ([], None, None)
    files["golden_metadata_only.safetensors"] = ([], {"k": "v", "unicode": "h\u00e9\u2713"}, None)

    expect = {}
    for name, (ts, md, order) in files.items():
        blob, offsets = build(ts, md, order)
        write(os.path.join(OUT, name), blob)
        expect[name] = {
            "file_size": len(blob),
            "metadata": md or {},
            "tensors": [
                {"name": n, "dtype": dt, "shape": sh, "data_offsets": offsets[n],
                 "hex": b.hex()}
                for n, dt, sh, b in ts
            ],
            "data_order": order or [t[0] for t in ts],
        }
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(expect, f, indent=1, sort_keys=True)
        f.write("\n")
    return list(files)


def raw(header_obj_text, data):
    return pack(header_obj_text, data)


def bad():
    good, _ = build([("a", "F32", [2], pattern(1, 8)), ("b", "F32", [2], pattern(2, 8))])
    t = lambda name, dt, shape, off: '"%s":{"dtype":"%s","shape":%s,"data_offsets":%s}' % (
        name, dt, json.dumps(shape), json.dumps(off))
    cases = {
        # Cut 4 bytes off the data section of a valid file.
        "truncated.safetensors": good[:-4],
        # Only 5 bytes: not even the length prefix.
        "truncated_len.safetensors": good[:5],
        # Length prefix far above the 100 MB limit.
        "bad_header_len.safetensors": struct.pack("<Q", 0xFFFFFFFF00) + b"{}",
        # Length prefix below the limit but past the end of a 40-byte file.
        "header_past_end.safetensors": struct.pack("<Q", 1000) + b"{}" + b" " * 30,
        "offsets_past_end.safetensors": raw("{%s}" % t("a", "F32", [4], [100, 116]), b"\0" * 16),
        "overlap.safetensors": raw(
            "{%s,%s}" % (t("a", "F32", [4], [0, 16]), t("b", "F32", [2], [8, 16])), b"\0" * 16),
        "gap.safetensors": raw(
            "{%s,%s}" % (t("a", "F32", [2], [0, 8]), t("b", "F32", [2], [16, 24])), b"\0" * 24),
        "trailing.safetensors": raw("{%s}" % t("a", "F32", [2], [0, 8]), b"\0" * 12),
        "shape_overflow.safetensors": raw(
            "{%s}" % t("a", "F32", [4294967296, 4294967296, 16], [0, 8]), b"\0" * 8),
        "bytes_overflow.safetensors": raw(
            "{%s}" % t("a", "F32", [4611686018427387904, 2], [0, 8]), b"\0" * 8),
        "size_mismatch.safetensors": raw(
            '{%s}' % t("a.weight", "F32", [2, 3], [0, 10]), b"\0" * 10),
        "bad_json.safetensors": raw('{"a":{"dtype":"F32","shape":[2],', b""),
        "not_object.safetensors": raw('[1,2]', b""),
        "wrong_dtype.safetensors": raw("{%s}" % t("a", "F128", [1], [0, 16]), b"\0" * 16),
        "metadata_not_string.safetensors": raw('{"__metadata__":{"k":1}}', b""),
        "metadata_not_object.safetensors": raw('{"__metadata__":["k","v"]}', b""),
        "duplicate.safetensors": raw(
            "{%s,%s}" % (t("a", "F32", [2], [0, 8]), t("a", "F32", [2], [8, 16])), b"\0" * 16),
        "negative_dim.safetensors": raw("{%s}" % t("a", "F32", [-1], [0, 0]), b""),
        "f4_odd.safetensors": raw("{%s}" % t("a", "F4", [3], [0, 2]), b"\0" * 2),
        "reversed_offsets.safetensors": raw("{%s}" % t("a", "U8", [0], [8, 0]), b"\0" * 8),
        "unknown_field.safetensors": raw(
            '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":1}}', b"\0"),
        "missing_field.safetensors": raw('{"a":{"dtype":"U8","data_offsets":[0,1]}}', b"\0"),
        "deep.safetensors": raw('{"__metadata__":' + "[" * 50 + "]" * 50 + "}", b""),
        "bad_utf8.safetensors": pack('{"a\xff":{}}', b"").replace(b"\xc3\xbf", b"\xff\xfe"),
    }
    for name, blob in cases.items():
        write(os.path.join(BAD, name), blob)


def main():
    names = golden()
    bad()
    os.makedirs(SEEDS, exist_ok=True)
    for n in names:
        shutil.copy(os.path.join(OUT, n), os.path.join(SEEDS, n.replace(".safetensors", "")))
    print("wrote", OUT, "and", SEEDS)


if __name__ == "__main__":
    main()
