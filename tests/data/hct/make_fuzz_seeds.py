#!/usr/bin/env python3
"""Writes the fuzz seeds in tests/data/fuzz/hct/ from the files in tests/data/hct/.

tests/fuzz/hct_fuzz.cc reads byte 0 as a mode: even = the rest is a whole file, odd = the rest
is index JSON that the harness wraps into a file with valid checksums. Each .hct file here gives
one seed of each kind, and its index JSON alone is a seed of tests/fuzz/hct_index_fuzz.cc
(tests/data/fuzz/hct_index/). Standard library only (the index is located through the footer; no
checksum is needed to extract it).
"""
import pathlib
import struct

here = pathlib.Path(__file__).resolve().parent
out = here.parent / "fuzz" / "hct"
out.mkdir(parents=True, exist_ok=True)
out_index = here.parent / "fuzz" / "hct_index"
out_index.mkdir(parents=True, exist_ok=True)
for f in sorted(here.glob("*.hct")):
    data = f.read_bytes()
    (out / f"file_{f.stem}").write_bytes(b"\x00" + data)
    if len(data) >= 4096 + 48 and data[-8:] == b"\x89HCT\r\n\x1a\n":
        off, length = struct.unpack_from("<QQ", data, len(data) - 48)
        if off + length <= len(data):
            (out / f"index_{f.stem}").write_bytes(b"\x01" + data[off:off + length])
            (out_index / f"{f.stem}.json").write_bytes(data[off:off + length])
