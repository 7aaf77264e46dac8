#!/usr/bin/env python3
"""Writes the seeds of the cache database fuzz target (tests/fuzz/cache_db_fuzz.cc) into
tests/data/fuzz/cache_db/: each seed is a list of row edits of a warmed cache's index.db, in the
target's input format (u8 column, u8 row, u8 kind, u8 length, value; kind 0 text, 1 integer
little-endian, 2 blob, 3 NULL). They replay under ctest (FuzzReplay.cache_db) and start
scripts/fuzz.sh's corpus. The column numbers are the order of kColumns in the target."""
import os
import struct

COLS = ["files.path", "files.size", "files.data_offset", "files.group_key", "files.layer",
        "files.model_id", "files.source_file", "files.pinned", "files.last_access",
        "tensors.name", "tensors.dtype", "tensors.shape", "tensors.offset", "tensors.length",
        "tensors.xxh3", "tensors.block_xxh3", "tensors.layer", "tensors.file_id",
        "tensors.model_id", "models.name", "models.pinned", "models.source_kind",
        "config.value", "tensors.ord"]
TEXT, INT, BLOB, NULL = 0, 1, 2, 3


def op(col, row, kind, value=b""):
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, int):
        value = struct.pack("<Q", value & (2 ** 64 - 1))
    return bytes([COLS.index(col), row, kind, len(value)]) + value


SEEDS = {
    "none": b"",
    "path-parent": op("files.path", 0, TEXT, "../decoy.txt"),
    "path-through-entries": op("files.path", 1, TEXT, "entries/../../decoy.txt"),
    "path-model-dotdot": op("files.path", 0, TEXT, "entries/../index.db"),
    "path-nul": op("files.path", 0, TEXT, "entries/model/x\x00y"),
    "path-null": op("files.path", 0, NULL),
    "model-name-escape": op("models.name", 0, TEXT, "../../escaped"),
    "model-name-control": op("models.name", 0, TEXT, "m\x1b[31m"),
    "tensor-xxh3": op("tensors.xxh3", 0, INT, 0x1234),
    "tensor-blocks-zero": op("tensors.block_xxh3", 0, BLOB, bytes(8)),
    "tensor-blocks-short": op("tensors.block_xxh3", 1, BLOB, bytes(3)),
    "tensor-shape-bad": op("tensors.shape", 0, TEXT, "[["),
    "tensor-shape-negative": op("tensors.shape", 1, TEXT, "[-4]"),
    "tensor-dtype-unknown": op("tensors.dtype", 1, TEXT, "Q7"),
    "tensor-offset-huge": op("tensors.offset", 0, INT, 2 ** 63 - 1),
    "tensor-length-huge": op("tensors.length", 2, INT, -1),
    "tensor-name-empty": op("tensors.name", 0, TEXT, ""),
    "tensor-file-missing": op("tensors.file_id", 0, INT, 999),
    "file-size-zero": op("files.size", 0, INT, 0),
    "file-layer-null": op("files.layer", 0, NULL) + op("tensors.layer", 0, INT, -7),
    "file-model-missing": op("files.model_id", 0, INT, 77),
    "model-kind-hct": op("models.source_kind", 0, TEXT, "hct"),
    "config-not-number": op("config.value", 0, TEXT, "abc"),
    "many": (op("files.path", 0, TEXT, "../decoy.txt") + op("tensors.xxh3", 1, INT, 5) +
             op("models.name", 0, TEXT, "..") + op("tensors.ord", 0, INT, -1)),
}

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache_db")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}")
