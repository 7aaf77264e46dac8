#!/usr/bin/env python3
"""Checks safetensors files with the reference Python `safetensors` library.

Three modes (files and folders may be mixed; folders are searched for *.safetensors):

  check_safetensors_py.py PATH...
      open every file with safe_open and read every tensor (smoke check)
  check_safetensors_py.py --json tests/data/safetensors/golden.json DIR
      compare each file named in the JSON dump (tensor names, dtype, shape, bytes as hex,
      metadata) with what the library reads from DIR/<file>
  check_safetensors_py.py --compare A B
      for every *.safetensors under A, the file at the same relative path under B (or B itself
      when both are files) must hold the same tensors (dtype, shape, bytes) and metadata

Bytes come from safetensors.deserialize (raw bytes for every dtype the library knows); each
tensor is also loaded through a framework (torch if importable, else numpy) when that framework
has the dtype. Files using dtypes newer than the installed library (F8_E8M0, F4, F6_*) are
reported as SKIP, not FAIL. Prints one line per file and a PASS/FAIL summary; exits 1 on any
failure, 2 when the library is missing (unless --pure-python, which uses a minimal built-in
reader so the script itself can be tested where safetensors is not installed).

The C++ tests write their outputs for this with HCT_KEEP_SAFETENSORS_OUT (see
tests/formats/safetensors_test.cc for the exact commands).
"""
import argparse
import json
import os
import struct
import sys

NEW_DTYPES = {"F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"}


def raw_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


class PureReader:
    """Minimal stand-in for the library (only with --pure-python)."""

    name = "pure-python"

    def load(self, path):
        header, start = raw_header(path)
        md = header.pop("__metadata__", None) or {}
        with open(path, "rb") as f:
            blob = f.read()
        tensors = {}
        for k, v in header.items():
            b, e = v["data_offsets"]
            tensors[k] = (v["dtype"], list(v["shape"]), blob[start + b:start + e])
        return tensors, md, []


class LibReader:
    def __init__(self):
        import safetensors  # noqa: F401  (ImportError handled by the caller)
        from safetensors import safe_open

        self.safe_open = safe_open
        self.version = getattr(safetensors, "__version__", "?")
        self.deserialize = getattr(safetensors, "deserialize", None)
        self.framework = None
        try:
            import torch  # noqa: F401

            self.framework = "pt"
        except ImportError:
            try:
                import numpy  # noqa: F401

                self.framework = "numpy"
            except ImportError:
                pass
        self.name = "safetensors %s (framework %s)" % (self.version, self.framework)

    def _framework_bytes(self, t):
        if self.framework == "pt":
            import torch

            return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return t.tobytes()

    def load(self, path):
        notes = []
        tensors = {}
        fw = self.framework or "numpy"
        with self.safe_open(path, framework=fw) as f:
            md = f.metadata() or {}
            for k in f.keys():
                sl = f.get_slice(k)
                tensors[k] = [sl.get_dtype(), list(sl.get_shape()), None]
        if self.deserialize is not None:
            with open(path, "rb") as fh:
                for k, d in self.deserialize(fh.read()):
                    if k in tensors:
                        if list(d["shape"]) != tensors[k][1]:
                            raise ValueError("deserialize and safe_open disagree on '%s'" % k)
                        tensors[k][2] = bytes(d["data"])
        # Framework path: the bytes a user would get.
        if self.framework:
            with self.safe_open(path, framework=self.framework) as f:
                for k in f.keys():
                    try:
                        b = self._framework_bytes(f.get_tensor(k))
                    except Exception as e:  # dtype not representable in the framework
                        notes.append("%s: %s lacks %s (%s)" % (k, self.framework, tensors[k][0],
                                                               type(e).__name__))
                        continue
                    if tensors[k][2] is None:
                        tensors[k][2] = b
                    elif b != tensors[k][2]:
                        raise ValueError("framework bytes of '%s' differ from deserialize" % k)
        missing = [k for k, v in tensors.items() if v[2] is None]
        if missing:
            raise ValueError("could not read bytes of %d tensors (e.g. '%s')" %
                             (len(missing), missing[0]))
        return {k: tuple(v) for k, v in tensors.items()}, md, notes


def find_files(p):
    if os.path.isfile(p):
        return [p]
    out = []
    for root, dirs, files in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, f) for f in sorted(files) if f.endswith(".safetensors")]
    return out


class Run:
    def __init__(self, reader):
        self.reader = reader
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def report(self, status, path, msg=""):
        self.counts[status] += 1
        print("%-4s %s%s" % (status, path, (": " + msg) if msg else ""))

    def load(self, path):
        """(tensors, metadata) or None after reporting SKIP/FAIL."""
        try:
            t, md, notes = self.reader.load(path)
            for n in notes[:3]:
                print("     note: " + n)
            return t, md
        except Exception as e:
            try:
                header, _ = raw_header(path)
                new = sorted({v.get("dtype") for k, v in header.items()
                              if k != "__metadata__" and isinstance(v, dict)} & NEW_DTYPES)
            except Exception:
                new = []
            if new:
                self.report("SKIP", path, "%s does not know %s (%s)" %
                            (self.reader.name, ",".join(new), e))
            else:
                self.report("FAIL", path, "%s: %s" % (type(e).__name__, e))
            return None

    def smoke(self, path):
        r = self.load(path)
        if r:
            self.report("PASS", path, "%d tensors" % len(r[0]))

    def against_json(self, path, exp):
        r = self.load(path)
        if not r:
            return
        tensors, md = r
        errs = []
        names = [t["name"] for t in exp["tensors"]]
        if sorted(names) != sorted(tensors):
            errs.append("tensor names %s != expected %s" % (sorted(tensors), sorted(names)))
        for t in exp["tensors"]:
            got = tensors.get(t["name"])
            if got is None:
                continue
            dt, shape, data = got
            if dt != t["dtype"]:
                errs.append("%s: dtype %s != %s" % (t["name"], dt, t["dtype"]))
            if shape != t["shape"]:
                errs.append("%s: shape %s != %s" % (t["name"], shape, t["shape"]))
            if data.hex() != t["hex"]:
                errs.append("%s: bytes differ" % t["name"])
        if dict(md) != exp.get("metadata", {}):
            errs.append("metadata %s != %s" % (md, exp.get("metadata")))
        self.finish(path, errs, len(tensors))

    def compare(self, a, b):
        ra = self.load(a)
        if not ra:
            return
        if not os.path.exists(b):
            self.report("FAIL", a, "no counterpart %s" % b)
            return
        rb = self.load(b)
        if not rb:
            return
        (ta, ma), (tb, mb) = ra, rb
        errs = []
        if sorted(ta) != sorted(tb):
            errs.append("tensor names differ: only in A %s, only in B %s" %
                        (sorted(set(ta) - set(tb))[:5], sorted(set(tb) - set(ta))[:5]))
        for k in sorted(set(ta) & set(tb)):
            if ta[k][0] != tb[k][0] or ta[k][1] != tb[k][1]:
                errs.append("%s: %s%s != %s%s" % (k, ta[k][0], ta[k][1], tb[k][0], tb[k][1]))
            elif ta[k][2] != tb[k][2]:
                errs.append("%s: bytes differ" % k)
        if dict(ma) != dict(mb):
            errs.append("metadata differs: %s vs %s" % (ma, mb))
        self.finish("%s == %s" % (a, b), errs, len(ta))

    def finish(self, what, errs, n):
        if errs:
            self.report("FAIL", what, "; ".join(errs[:5]) +
                        (" (+%d more)" % (len(errs) - 5) if len(errs) > 5 else ""))
        else:
            self.report("PASS", what, "%d tensors" % n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--json", help="golden.json dump; paths: the folder holding its files")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    ap.add_argument("--pure-python", action="store_true",
                    help="use a built-in reader when safetensors is not installed (self-test)")
    args = ap.parse_args()
    try:
        reader = LibReader()
    except ImportError as e:
        if not args.pure_python:
            print("FAIL: the safetensors Python package is not installed (%s)" % e)
            return 2
        reader = PureReader()
    print("reader: " + reader.name)
    run = Run(reader)
    if args.json:
        with open(args.json) as f:
            exp = json.load(f)
        base = args.paths[0] if args.paths else os.path.dirname(args.json)
        for name in sorted(exp):
            run.against_json(os.path.join(base, name), exp[name])
    elif args.compare:
        a, b = args.compare
        if os.path.isfile(a):
            run.compare(a, b)
        else:
            for fa in find_files(a):
                run.compare(fa, os.path.join(b, os.path.relpath(fa, a)))
    else:
        if not args.paths:
            ap.error("nothing to check")
        for p in args.paths:
            for f in find_files(p):
                run.smoke(f)
    c = run.counts
    total = c["PASS"] + c["FAIL"]
    ok = c["FAIL"] == 0 and total > 0
    print("%s: %d passed, %d failed, %d skipped" % ("PASS" if ok else "FAIL", c["PASS"],
                                                    c["FAIL"], c["SKIP"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
