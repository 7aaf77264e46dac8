#!/usr/bin/env python3
"""Hostile-input campaign against hct-convert and hct-cache (issue 10).

Crafts inputs for every item class of issue 10 (1-17) plus seeded random mutants of valid HCT,
safetensors and index.db files, runs each relevant tool in a fresh sandbox directory under a
timeout and checks invariants:
  (a) exit code in the documented table 0..9, never a signal / 134 / timeout
  (b) nothing outside the folder the tool owns is written, replaced or deleted (snapshot of the
      whole case directory, hashes + mtimes, owned paths excluded)
  (c) no temporaries (".tmp.") left behind
  (d) cache consistency: verify --deep gives the same answer twice, and reports planted corruption
  (e) per-item expectations (see each item function)
  (f) time: no case over its timeout; item-7 throughput figures are printed.

Usage: /usr/bin/python3 scripts/campaign/run.py [--quick] [--build DIR] [--work DIR] [--seed N]
       [--items 1,2,mut] [--json FILE]
Stdlib only (XXH3 through ctypes on the system libxxhash.so.0). Parallelism 1.
"""
import argparse
import ctypes
import hashlib
import json
import os
import random
import resource
import shlex
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TEMP_MARKER = ".tmp."  # include/hct/detail/file.h kTempMarker
VALID_RC = set(range(0, 10))

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def xxh3(b):
    return _xxh.XXH3_64bits(bytes(b), len(b))


assert xxh3(b"") == 0x2d06800538d394c2, "libxxhash XXH3-64 mismatch with docs/hct-format.md"

G = argparse.Namespace()  # global config
RESULTS = []  # dicts: item, case, ok, failures[], seconds
TIMINGS = {}


# ----------------------------------------------------------------------------- file crafting
def st_bytes(tensors, metadata=None, raw_header=None, pad_to=8):
    """tensors: list of (name, dtype, shape, data bytes). Returns safetensors file bytes."""
    if raw_header is None:
        hdr, off = {}, 0
        if metadata is not None:
            hdr["__metadata__"] = metadata
        for name, dt, shape, data in tensors:
            hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
            off += len(data)
        raw_header = json.dumps(hdr, separators=(",", ":")).encode()
        raw_header += b" " * ((-len(raw_header)) % pad_to)
    body = b"".join(t[3] for t in tensors)
    return struct.pack("<Q", len(raw_header)) + raw_header + body


def st_parse(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def rnd_f32(rng, n, scale=0.02):
    return f32([rng.gauss(0, scale) for _ in range(n)])


def tiny_tensors(rng, layers=2, d=32, prefix="model"):
    ts = [(f"{prefix}.embed_tokens.weight", "F32", [64, d], rnd_f32(rng, 64 * d))]
    for i in range(layers):
        ts.append((f"{prefix}.layers.{i}.mlp.up_proj.weight", "F32", [d, d], rnd_f32(rng, d * d)))
        ts.append((f"{prefix}.layers.{i}.input_layernorm.weight", "F32", [d], f32([1.0] * d)))
    ts.append(("lm_head.weight" if prefix == "model" else prefix + ".head", "F32", [64, d],
               rnd_f32(rng, 64 * d)))
    return ts


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def hct_read(path):
    with open(path, "rb") as f:
        b = bytearray(f.read())
    foot = b[-48:]
    ioff, ilen = struct.unpack("<QQ", foot[:16])
    return b, ioff, json.loads(b[ioff:ioff + ilen])


def hct_rewrite_index(b, ioff, index_obj=None, raw=None):
    """Replace the index JSON of HCT bytes b and recompute index_xxh3 and footer_xxh3."""
    foot = b[-48:]
    major, minor = struct.unpack("<HH", foot[24:28])
    raw = raw if raw is not None else json.dumps(index_obj, separators=(",", ":")).encode()
    head = bytes(b[:ioff])
    f0 = struct.pack("<QQQHHI", ioff, len(raw), xxh3(raw), major, minor, 0)
    footer = f0 + struct.pack("<Q", xxh3(f0)) + bytes(foot[40:48])
    return head + raw + footer


def tensor_hash(chunks):
    return "%016x" % xxh3(b"".join(struct.pack("<Q", int(c["decoded_xxh3"], 16)) for c in chunks))


# ----------------------------------------------------------------------------- sandbox checks
def snapshot(root, owned):
    owned = [os.path.abspath(p) for p in owned]
    snap = {}
    for dp, dns, fns in os.walk(root, followlinks=False):
        keep = []
        for d in dns:
            p = os.path.join(dp, d)
            if any(p == o or p.startswith(o + "/") for o in owned):
                continue
            keep.append(d)
        dns[:] = keep
        for n in fns + [d for d in dns]:
            p = os.path.join(dp, n)
            if any(p == o or p.startswith(o + "/") for o in owned):
                continue
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if os.path.islink(p):
                snap[p] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                snap[p] = ("d",)
            else:
                h = hashlib.sha1()
                try:
                    with open(p, "rb") as f:
                        for blk in iter(lambda: f.read(1 << 20), b""):
                            h.update(blk)
                except OSError:
                    pass
                snap[p] = ("f", st.st_size, st.st_mtime_ns, st.st_ino, h.hexdigest())
    return snap


def snap_diff(a, b):
    out = []
    for p in sorted(set(a) | set(b)):
        if p not in b:
            out.append("deleted " + p)
        elif p not in a:
            out.append("created " + p)
        elif a[p] != b[p]:
            out.append("modified " + p)
    return out


def temps(root):
    found = []
    for dp, dns, fns in os.walk(root):
        for n in fns + dns:
            if TEMP_MARKER in n:
                found.append(os.path.join(dp, n))
    return found


class Case:
    def __init__(self, item, name):
        self.item, self.name = item, name
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
        self.dir = os.path.join(G.work, f"i{item}", f"{len(RESULTS):05d}-{safe}")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.failures, self.cmds, self.t0 = [], [], time.time()
        self.slowest = 0.0

    def p(self, *parts):
        return os.path.join(self.dir, *parts)

    def fail(self, what):
        self.failures.append(what)

    def tool(self, argv, owned=(), timeout=None, expect=None, env=None, preexec=None,
             check_temps=True, allow_rc=None, ctl_check=False):
        """Run one tool, check (a) (b) (c) (f) and an expected exit code set."""
        timeout = timeout or G.timeout
        exe = {"convert": G.convert, "cache": G.cache}[argv[0]]
        full = [exe] + [str(a) for a in argv[1:]]
        self.cmds.append("cd %s && %s" % (shlex.quote(self.dir), " ".join(
            shlex.quote(a.replace(self.dir + "/", "")) if isinstance(a, str) else repr(a)
            for a in [argv[0] == "convert" and "hct-convert" or "hct-cache"] + full[1:])))
        before = snapshot(self.dir, owned)
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.time()
        e = dict(os.environ)
        e.pop("HCT_CACHE_DIR", None)
        e["HOME"] = self.p("home")  # never the real home cache
        e["XDG_CACHE_HOME"] = self.p("home", ".cache")
        if env:
            e.update(env)
        try:
            pr = subprocess.run(full, cwd=self.dir, capture_output=True, timeout=timeout, env=e,
                                preexec_fn=preexec)
            rc, out, err = pr.returncode, pr.stdout, pr.stderr
        except subprocess.TimeoutExpired as ex:
            rc, out, err = "timeout", ex.stdout or b"", ex.stderr or b""
        dt = time.time() - t
        ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the tool, waited for: user + sys
        cpu = (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime)
        self.slowest = max(self.slowest, dt)
        tag = self.cmds[-1].split("&& ", 1)[1]
        if rc == "timeout":
            self.fail(f"(f) timeout {timeout}s: {tag}")
        elif rc < 0 or rc not in VALID_RC:
            self.fail(f"(a) rc={rc} ({'signal %d' % -rc if rc < 0 else 'undocumented'}): {tag}"
                      f" stderr={err[-300:]!r}")
        elif expect is not None and rc not in expect:
            self.fail(f"(e) rc={rc} expected {sorted(expect)}: {tag} stderr={err[-300:]!r}")
        d = snap_diff(before, snapshot(self.dir, owned))
        if d:
            self.fail(f"(b) outside owned {list(owned)}: {tag}: " + "; ".join(d[:6]))
        if check_temps and rc != "timeout":
            tl = temps(self.dir)
            if tl:
                self.fail(f"(c) temporaries left: {tag}: " + ", ".join(tl[:4]))
        msg = out + err
        if b".cc:" in msg:
            self.fail(f"(e) message shows a source path: {tag}: {msg[-200:]!r}")
        if ctl_check and any(c < 32 and c not in (9, 10, 13) or c == 127 for c in msg):
            self.fail(f"(e) unescaped control character printed: {tag}: {msg[-200:]!r}")
        return argparse.Namespace(rc=rc, out=out, err=err, dt=dt, cpu=cpu)

    def verify_consistent(self, cache, expect_problem=None):
        """(d): verify --deep twice gives the same exit and problem count."""
        r1 = self.tool(["cache", "--cache-dir", cache, "--json", "verify", "--deep"], owned=[cache],
                       expect={0, 1, 3, 5})
        r2 = self.tool(["cache", "--cache-dir", cache, "--json", "verify", "--deep"], owned=[cache],
                       expect={0, 1, 3, 5})
        if r1.rc != r2.rc:
            self.fail(f"(d) verify --deep not consistent: rc {r1.rc} then {r2.rc}")
        if expect_problem and r1.rc == 0:
            self.fail(f"(d) verify --deep reports 0 problems after {expect_problem}: "
                      f"{r1.out[-300:]!r}")
        return r1

    def done(self):
        ok = not self.failures
        RESULTS.append(dict(item=self.item, case=self.name, ok=ok, failures=self.failures,
                            dir=self.dir, cmds=self.cmds, seconds=round(time.time() - self.t0, 3),
                            slowest_tool=round(self.slowest, 3)))
        if ok and not G.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if not ok and G.verbose:
            print(f"  FAIL [{self.item}] {self.name}: {self.failures[0][:300]}", flush=True)


# ----------------------------------------------------------------------------- fixtures
FIX = {}


def fixtures():
    fx = os.path.join(G.work, "fixtures")
    shutil.rmtree(fx, ignore_errors=True)
    os.makedirs(fx)
    rng = random.Random(G.seed)
    tiny = os.path.join(fx, "tiny")
    write(os.path.join(tiny, "model.safetensors"), st_bytes(tiny_tensors(rng)))
    write(os.path.join(tiny, "config.json"), '{"model_type": "llama", "hidden_size": 32}\n')
    write(os.path.join(tiny, "tokenizer.json"), '{"version": "1.0", "model": {}}\n')
    FIX["tiny"] = tiny
    for name, extra in (("tiny_hct", []), ("tiny_hct_lossless", ["--lossless"])):
        out = os.path.join(fx, name)
        r = subprocess.run([G.convert, tiny, out, "-q"] + extra, capture_output=True)
        if r.returncode:
            sys.exit(f"fixture convert failed: {r.stderr!r}")
        FIX[name] = out
    cache = os.path.join(fx, "cache")
    r = subprocess.run([G.cache, "--cache-dir", cache, "warm", FIX["tiny_hct"]],
                       capture_output=True)
    if r.returncode:
        sys.exit(f"fixture warm failed: {r.stderr!r}")
    FIX["cache"] = cache


def copy_fix(case, name, dst=None):
    dst = case.p(dst or name)
    shutil.copytree(FIX[name], dst, symlinks=True)
    return dst


def warmed(case, src_name="tiny_hct"):
    """A source folder + a cache warmed from it inside the case dir."""
    src = copy_fix(case, src_name, "src")
    cache = case.p("cache")
    case.tool(["cache", "--cache-dir", cache, "warm", src], owned=[cache], expect={0})
    return src, cache


def db_exec(cache, sql, params=()):
    con = sqlite3.connect(os.path.join(cache, "index.db"))
    try:
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def hct_file(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".hct"))[0]


# ----------------------------------------------------------------------------- items
def item1():
    """Symlinked hub snapshots; source_file and index names escaping the output."""
    for variant in ("plain", "sysfile", "out_beside_blobs", "abs_links"):
        c = Case(1, f"hub-snapshot-{variant}")
        repo = c.p("hub", "models--org--tiny")
        blobs, snap = os.path.join(repo, "blobs"), os.path.join(repo, "snapshots", "abc123")
        os.makedirs(blobs)
        os.makedirs(snap)
        for f in os.listdir(FIX["tiny"]):
            data = open(os.path.join(FIX["tiny"], f), "rb").read()
            h = hashlib.sha256(data).hexdigest()
            write(os.path.join(blobs, h), data)
            tgt = os.path.join(blobs, h) if variant == "abs_links" else "../../blobs/" + h
            os.symlink(tgt, os.path.join(snap, f))
        if variant == "sysfile":
            write(c.p("sys", "etc", "passwd"), "root:x:0:0::/root:/bin/sh\n")
            os.symlink("../../../../sys/etc/passwd", os.path.join(snap, "passwd"))
            os.symlink(c.p("sys", "etc", "passwd"), os.path.join(snap, "shadow"))
        out = os.path.join(repo, "converted") if variant == "out_beside_blobs" else c.p("out")
        r = c.tool(["convert", snap, out, "-q"], owned=[out], expect={0})
        if r.rc == 0:
            for f in ("config.json", "tokenizer.json"):
                p = os.path.join(out, f)
                if not os.path.isfile(p) or os.path.islink(p):
                    c.fail(f"(e) {f} not a regular file inside the output {out}")
                elif open(p, "rb").read() != open(os.path.join(FIX["tiny"], f), "rb").read():
                    c.fail(f"(e) {f} in output differs from the snapshot's")
            outside = [p for p in os.listdir(os.path.dirname(out)) if p not in (
                os.path.basename(out), "hub", "sys", "blobs", "snapshots", "refs", "home")]
            if outside:
                c.fail(f"(e) unexpected names next to output: {outside}")
            dec = c.p("dec")
            c.tool(["convert", "decode", out, dec, "-q"], owned=[dec], expect={0})
        cache = c.p("cache")
        c.tool(["cache", "--cache-dir", cache, "warm", snap], owned=[cache], expect={0})
        c.verify_consistent(cache)
        c.done()
    # decode with source_file (HCT metadata) and index file names from the input
    names = ["../../store/cfg", "../x.safetensors", "/ABS/store/abs.safetensors", "a\x00b.safetensors",
             "L" * 5000 + ".safetensors", "", ".", "sub/../../esc.safetensors", "..",
             "config.json", "model.hct.index.json", "sub/dir/ok.safetensors", "\x1b[31mred"]
    for i, name in enumerate(names):
        c = Case(1, f"decode-source_file-{i}")
        os.makedirs(c.p("store"))
        src = copy_fix(c, "tiny_hct_lossless", "in")
        f = hct_file(src)
        b, ioff, idx = hct_read(f)
        name = name.replace("/ABS", c.dir)
        idx.setdefault("metadata", {})["source_file"] = name
        write(f, hct_rewrite_index(b, ioff, idx))
        dec = c.p("sub1", "dec")
        os.makedirs(c.p("sub1"))
        r = c.tool(["convert", "decode", src, dec, "-q"], owned=[dec], expect={0, 4, 5},
                   ctl_check=True)  # 4: ENAMETOOLONG is an I/O error
        if r.rc == 0 and name == "config.json":
            c.fail(f"(e) decode accepted source_file {name!r} clashing with another output file")
        c.done()
    # model index naming files outside the folder / absolute / loops
    for i, fname in enumerate(["../outside.hct", "/ABS/outside.hct", "sub/../../outside.hct",
                               "model.safetensors", "a\x00.hct", "L" * 5000 + ".hct"]):
        c = Case(1, f"model-index-file-{i}")
        src = copy_fix(c, "tiny_hct_lossless", "in")
        shutil.copy(hct_file(src), c.p("outside.hct"))
        ip = os.path.join(src, "model.hct.index.json")
        idx = json.load(open(ip))
        fname = fname.replace("/ABS", c.dir)
        old = idx["files"][0]["file"]
        idx["files"][0]["file"] = fname
        idx["weight_map"] = {k: fname for k in idx.get("weight_map", {})}
        write(ip, json.dumps(idx))
        os.unlink(os.path.join(src, old))
        dec, cache = c.p("dec"), c.p("cache")
        c.tool(["convert", "decode", src, dec, "-q"], owned=[dec], expect={0, 3, 4, 5})
        c.tool(["convert", "inspect", src], expect={0, 3, 4, 5})
        c.tool(["cache", "--cache-dir", cache, "warm", src], owned=[cache], expect={0, 3, 4, 5})
        c.done()
    # symlinked "other files" in an HCT folder pointing outside
    c = Case(1, "decode-symlinked-other-files")
    src = copy_fix(c, "tiny_hct_lossless", "in")
    write(c.p("store", "secret.txt"), "secret\n")
    os.symlink("../store/secret.txt", os.path.join(src, "notes.txt"))
    os.symlink("../store", os.path.join(src, "storedir"))
    dec = c.p("dec")
    r = c.tool(["convert", "decode", src, dec, "-q"], owned=[dec], expect={0})
    if r.rc == 0 and os.path.islink(os.path.join(dec, "notes.txt")):
        c.fail("(e) symlink reproduced in decode output instead of read through")
    c.done()


def item2():
    """files.path from the index escaping entries/."""
    bad = ["../decoy.txt", "/ABS/decoy.txt", "entries/../../decoy.txt",
           "entries/MODEL/../../../decoy.txt", "entries/MODEL/x\x00/../../../decoy.txt",
           "rootdecoy.txt", "entries/" + "a" * 5000, "entries/MODEL", "index.db", "entries/MODEL/."]
    cmds = [["warm", "SRC"], ["warm", "SRC", "--force"], ["verify", "--repair"],
            ["verify", "--deep", "--repair"], ["evict", "--all"], ["evict", "--model", "src"],
            ["gc"], ["ls", "--entries"]]
    for bi, path in enumerate(bad):
        for cmd in cmds if not G.quick else cmds[::2]:
            c = Case(2, f"files.path-{bi}-{cmd[0]}{'-'.join(cmd[1:])}")
            src, cache = warmed(c)
            write(c.p("decoy.txt"), "decoy\n")
            write(os.path.join(cache, "rootdecoy.txt"), "decoy in cache root\n")
            p = path.replace("/ABS", c.dir).replace("MODEL", "src")
            db_exec(cache, "UPDATE files SET path=? WHERE id=(SELECT MIN(id) FROM files)", (p,))
            c.tool(["cache", "--cache-dir", cache] + [a.replace("SRC", src) for a in cmd],
                   owned=[cache], expect={0, 1, 5})
            if not os.path.exists(os.path.join(cache, "rootdecoy.txt")):
                c.fail("(b) file in the cache root named by files.path was deleted")
            if not os.path.exists(os.path.join(cache, "index.db")):
                c.fail("(b) index.db deleted through files.path")
            c.verify_consistent(cache)
            c.done()
    # entries/<model> replaced by a symlink to an outside folder
    for cmd in (["evict", "--all"], ["gc"], ["verify", "--repair"], ["warm", "SRC", "--force"]):
        c = Case(2, f"entries-model-symlink-{cmd[0]}")
        src, cache = warmed(c)
        md = os.path.join(cache, "entries", "src")
        shutil.move(md, c.p("elsewhere"))
        os.symlink(c.p("elsewhere"), md)
        c.tool(["cache", "--cache-dir", cache] + [a.replace("SRC", src) for a in cmd],
               owned=[cache], expect={0, 1, 5})
        c.done()


def item3():
    """Decode / convert outputs overlapping the input, however spelled."""
    for sp in ("H", "./H", "H/", "H/.", "ABS", "link", "H/../H"):
        c = Case(3, f"decode-H-H-force-{sp}")
        h = copy_fix(c, "tiny_hct_lossless", "H")
        os.symlink("H", c.p("link"))
        out = {"ABS": h}.get(sp, sp)
        c.tool(["convert", "decode", "H", out, "--force", "-q"], expect={2})
        c.done()
    for sp in ("DIR", "./DIR", "DIR/", "dlink"):
        c = Case(3, f"decode-file-into-its-folder-{sp}")
        d = copy_fix(c, "tiny_hct_lossless", "DIR")
        write(os.path.join(d, "keep.txt"), "user file\n")
        os.symlink("DIR", c.p("dlink"))
        f = os.path.relpath(hct_file(d), c.dir)
        c.tool(["convert", "decode", f, sp, "--force", "-q"], expect={2})
        c.done()
    for sp in ("out", "./out", "out/", "ABS", "olink"):
        c = Case(3, f"convert-file-into-its-folder-{sp}")
        os.makedirs(c.p("out"))
        shutil.copy(os.path.join(FIX["tiny"], "model.safetensors"), c.p("out", "model.safetensors"))
        os.symlink("out", c.p("olink"))
        dst = c.p("out") if sp == "ABS" else sp
        c.tool(["convert", "out/model.safetensors", dst, "--force", "-q"], expect={2})
        c.done()
    for sp in ("in/sub", "./in/sub", "in/sub/", "ilink/sub", "in"):
        c = Case(3, f"convert-output-inside-input-{sp}")
        copy_fix(c, "tiny", "in")
        os.symlink("in", c.p("ilink"))
        c.tool(["convert", "in", sp, "--force", "-q"], expect={2})
        c.done()


def item4():
    """--report at inputs and outputs; a user model.hct.index.json in the input."""
    for tgt in ("in/model.safetensors", "in/config.json", "out/x.json", "out", "in",
                "./in/../in/model.safetensors", "rlink"):
        for force in ([], ["--force"]):
            c = Case(4, f"report-{tgt}{'-force' if force else ''}")
            copy_fix(c, "tiny", "in")
            os.symlink("in/model.safetensors", c.p("rlink"))
            c.tool(["convert", "in", "out", "-q", "--report", tgt] + force, owned=[c.p("out")],
                   expect={2})
            c.done()
    c = Case(4, "report-existing-no-force")
    copy_fix(c, "tiny", "in")
    write(c.p("r.json"), "mine\n")
    c.tool(["convert", "in", "out", "-q", "--report", "r.json"], owned=[c.p("out")], expect={8})
    c.done()
    c = Case(4, "user-model.hct.index.json-in-input")
    copy_fix(c, "tiny", "in")
    write(c.p("in", "model.hct.index.json"), '{"user": "data"}\n')
    r = c.tool(["convert", "in", "out", "-q"], owned=[c.p("out")])
    if r.rc == 0 and b"model.hct.index.json" not in r.err + r.out:
        c.fail("(e) user model.hct.index.json in the input silently replaced in the output "
               f"(rc 0, no message); output index starts {open(c.p('out', 'model.hct.index.json')).read(60)!r}")
    c.done()


def item5():
    """F32 values near the float max, inf, nan: decodable or the convert fails."""
    rng = random.Random(G.seed + 5)
    specs = [("2.2e37", 2.2e37), ("1e38", 1e38), ("3.4e38", 3.4e38), ("1.5e37", 1.5e37),
             ("inf", float("inf")), ("nan", float("nan")), ("-inf", float("-inf")),
             ("denorm", 1e-44), ("mixed-big", None)]
    opts = [[], ["--max-error", "0.01"], ["--transform", "none"], ["--entropy", "zstd"],
            ["--retention", "0.5"]]
    for label, v in specs:
        for o in (opts if not G.quick else opts[:2]):
            c = Case(5, f"f32-{label}-{'_'.join(o) or 'default'}")
            vals = [rng.uniform(-1, 1) * (v if v is not None and v == v and abs(v) != float("inf")
                                       else 1.0) for _ in range(64 * 64)]
            if v is None:
                vals[7] = 3.3e38
            elif v != v or abs(v) == float("inf"):
                vals[5] = v
            ts = [("model.layers.0.mlp.up_proj.weight", "F32", [64, 64], f32(vals))]
            write(c.p("in", "model.safetensors"), st_bytes(ts))
            out, dec = c.p("out"), c.p("dec")
            r = c.tool(["convert", "in", out, "-q"] + o, owned=[out], expect={0, 1, 5})
            if r.rc == 0:
                r2 = c.tool(["convert", "decode", out, dec, "-q"], owned=[dec], expect={0})
                ins = c.tool(["convert", "inspect", out, "--json"], expect={0})
                idx = hct_read(hct_file(out))[2]
                for t in idx["tensors"]:
                    for k, pv in t.get("codec_params", {}).items():
                        if pv is None or (isinstance(pv, float) and pv != pv):
                            c.fail(f"(e) convert exit 0 wrote codec_params.{k}={pv!r} (not finite)")
                if r2.rc == 0:
                    got = st_parse(os.path.join(dec, "model.safetensors"))
                    dv = struct.unpack("<4096f", got["model.layers.0.mlp.up_proj.weight"][2])
                    fin = [(a, b) for a, b in zip(vals, dv) if a == a and abs(a) != float("inf")]
                    num = sum((a - b) ** 2 for a, b in fin)
                    den = sum(a * a for a, _ in fin) or 1.0
                    if not (num / den <= 1.0):
                        c.fail(f"(e) decoded values wrong: rel MSE {num / den}")
                cache = c.p("cache")
                c.tool(["cache", "--cache-dir", cache, "warm", out], owned=[cache], expect={0})
            elif os.path.exists(out):
                c.fail("(e) failed convert left an output folder")
            c.done()


def item6():
    """Checksum-valid crafted HCT chunks with huge sizes and shapes."""
    crafts = []

    def mk(label, fn):
        crafts.append((label, fn))

    def chunk0(idx):
        t = next(t for t in idx["tensors"] if t["chunks"])
        return t, t["chunks"][0]

    def big_dec(idx, v):
        t, ch = chunk0(idx)
        t["decoded_size"] += v - ch["decoded_size"]
        ch["decoded_size"] = v

    for v in (2 ** 40, 2 ** 32, 2 ** 32 + 1, 2 ** 63, 2 ** 64 - 1, 0):
        mk(f"decoded_size-{v}", lambda idx, v=v: big_dec(idx, v))

    def big_shape(idx, n):
        t, ch = chunk0(idx)
        t["shape"] = [n]
        t["chunks"] = [ch]
        ch["elem_offset"], ch["elem_count"] = 0, n
        esz = {"F32": 4, "BF16": 2, "F16": 2}.get(t["dtype"], 4)
        ch["decoded_size"] = t["decoded_size"] = n * esz
        t["decoded_xxh3"] = tensor_hash(t["chunks"])

    for n in (2 ** 33, 2 ** 31, 2 ** 62):
        mk(f"shape-{n}-one-chunk", lambda idx, n=n: big_shape(idx, n))

    def shape_overflow(idx):
        t, _ = chunk0(idx)
        t["shape"] = [2 ** 32, 2 ** 32, 2]

    mk("shape-overflow", shape_overflow)

    def rows_big(idx):
        t = next(t for t in idx["tensors"] if "rows" in t.get("codec_params", {}))
        t["codec_params"]["rows"] = 2 ** 40
        t["codec_params"]["rows_per_chunk"] = 2 ** 40

    mk("dctq-rows-2^40", rows_big)

    def tile_big(idx):
        t = next(t for t in idx["tensors"] if "tile_r" in t.get("codec_params", {}))
        t["codec_params"]["tile_r"] = t["codec_params"]["tile_c"] = 4096

    mk("dctq-tile-4096", tile_big)

    def step_bad(idx, v):
        t = next(t for t in idx["tensors"] if "step" in t.get("codec_params", {}))
        t["codec_params"]["step"] = v

    for v in (None, 0, -1.0, 1e300):
        mk(f"dctq-step-{v}", lambda idx, v=v: step_bad(idx, v))
    for src_name in ("tiny_hct", "tiny_hct_lossless"):
        for label, fn in crafts:
            c = Case(6, f"{src_name}-{label}")
            src = copy_fix(c, src_name, "in")
            f = hct_file(src)
            b, ioff, idx = hct_read(f)
            try:
                fn(idx)
            except StopIteration:
                shutil.rmtree(c.dir, ignore_errors=True)
                continue
            write(f, hct_rewrite_index(b, ioff, idx))
            dec, cache = c.p("dec"), c.p("cache")
            c.tool(["convert", "inspect", src], expect={5})
            c.tool(["convert", "decode", src, dec, "-q"], owned=[dec], expect={5})
            c.tool(["cache", "--cache-dir", cache, "warm", src], owned=[cache], expect={5})
            c.done()
    for argv, exp in ((["convert", "demo-model", "D", "--vocab", "2147483647"], {2, 4}),
                      (["convert", "demo-model", "D", "--vocab", "99999999999999999999"], {2}),
                      (["convert", "demo-model", "D", "--hidden", "2147483647"], {2, 4})):
        c = Case(6, "demo-model-" + "_".join(argv[3:]))
        c.tool(argv, owned=[c.p("D")], expect=exp, timeout=60)
        c.done()
    for thr in ("100000", "4294967296", "0"):
        c = Case(6, f"warm-threads-{thr}")
        src = copy_fix(c, "tiny_hct", "src")
        cache = c.p("cache")
        c.tool(["cache", "--cache-dir", cache, "warm", src, "--threads", thr], owned=[cache],
               expect={0, 2})
        c.done()


def item7():
    """Throughput: safetensors header parse and 100k small tensors."""
    sizes = [1, 8] if G.quick else [1, 8, 50]
    for mb in sizes:
        c = Case(7, f"header-metadata-{mb}MB")
        meta = {"k%d" % i: "v" * 1000 for i in range(mb * 1000)}
        raw = json.dumps({"__metadata__": meta, "w": {"dtype": "F32", "shape": [1],
                                                      "data_offsets": [0, 4]}}).encode()
        write(c.p("m.safetensors"), st_bytes([("w", "F32", [1], f32([1.0]))], raw_header=raw))
        r = c.tool(["convert", "inspect", "m.safetensors", "--json"], expect={0}, timeout=120)
        TIMINGS[f"inspect safetensors, {len(raw) / 1e6:.1f} MB header (metadata strings)"] = (
            r.dt, len(raw) / 1e6 / max(r.cpu, 1e-9), r.cpu)
        c.done()
    n = 20000 if G.quick else 100000
    c = Case(7, f"{n}-small-tensors")
    ts = [(f"t.{i}", "F32", [4], f32([i, 1, 2, 3])) for i in range(n)]
    write(c.p("in", "model.safetensors"), st_bytes(ts))
    hdr = struct.unpack("<Q", open(c.p("in", "model.safetensors"), "rb").read(8))[0]
    r = c.tool(["convert", "inspect", "in/model.safetensors", "--json"], expect={0}, timeout=120)
    TIMINGS[f"inspect safetensors, {n} tensors ({hdr / 1e6:.1f} MB header)"] = (
        r.dt, hdr / 1e6 / max(r.cpu, 1e-9), r.cpu)
    out, dec = c.p("out"), c.p("dec")
    r = c.tool(["convert", "in", out, "-q", "--lossless"], owned=[out], expect={0}, timeout=300)
    TIMINGS[f"convert {n} tensors --lossless"] = (r.dt, None, r.cpu)
    if r.rc == 0:
        r = c.tool(["convert", "inspect", out, "--json"], expect={0}, timeout=120)
        TIMINGS[f"inspect HCT with {n} tensors (target < 2 s CPU for 100k)"] = (r.dt, None, r.cpu)
        r = c.tool(["convert", "decode", out, dec, "-q"], owned=[dec], expect={0}, timeout=300)
        TIMINGS[f"decode HCT with {n} tensors (target < 2 s CPU for 100k)"] = (r.dt, None, r.cpu)
        # Judged on CPU time (user + sys) of the tool, one core: on the shared 2-core machine
        # the wall time follows the load average (3.64 s wall at load 9 for 1.0 s of CPU).
        if r.rc == 0 and n == 100000 and r.cpu > 2.0:
            c.fail(f"(f) decode of 100k tensors took {r.cpu:.2f} s CPU (target < 2 s)")
    c.done()


def item8():
    """Safetensors header: NUL-trailing, deep, large, odd."""
    rng = random.Random(G.seed + 8)
    good = st_bytes([("w", "F32", [2], f32([1.0, 2.0]))])
    n = struct.unpack("<Q", good[:8])[0]
    hdr = good[8:8 + n].rstrip(b" ")
    variants = {
        "nul-garbage": hdr + b"\x00garbage",
        "nul-padding": hdr + b"\x00" * 8,
        "trailing-spaces": hdr + b" " * 16,  # valid
        "trailing-garbage": hdr + b"xyz",
        "deep-array-100k": b'{"__metadata__":{"a":"b"},"x":' + b"[" * 100000 + b"]" * 100000 + b"}",
        "deep-object-10k": b'{"x":' + b'{"a":' * 10000 + b"1" + b"}" * 10000 + b"}",
        "dup-key": hdr[:-1] + b',"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
        "bad-utf8": b'{"\xff\xfe":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
        "huge-number": b'{"w":{"dtype":"F32","shape":[1e400],"data_offsets":[0,8]}}',
        "neg-shape": b'{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}',
        "offsets-reversed": b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}',
        "offsets-beyond": b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,80000000000]}}',
        "shape-mismatch": b'{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}',
        "empty": b"",
        "not-object": b"[1,2]",
        "bom": b"\xef\xbb\xbf" + hdr,
        "escaped-nul-name (expect 0 or 5)": b'{"w\\u0000x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
    }
    for label, h in variants.items():
        c = Case(8, f"header-{label}")
        write(c.p("in", "model.safetensors"), struct.pack("<Q", len(h)) + h + f32([1.0, 2.0]))
        exp = {0} if label == "trailing-spaces" else {0, 5} if "expect 0 or 5" in label else {5}
        out, cache = c.p("out"), c.p("cache")
        c.tool(["convert", "inspect", "in/model.safetensors"], expect=exp, ctl_check=True)
        c.tool(["convert", "in", out, "-q"], owned=[out], expect=exp)
        c.tool(["cache", "--cache-dir", cache, "warm", "in"], owned=[cache], expect=exp | {3})
        c.done()
    for label, declared in (("declared-100MB+1", 100 * 2 ** 20 + 1), ("declared-2^63", 2 ** 63),
                            ("declared-2^64-1", 2 ** 64 - 1), ("declared-beyond-file", 4096)):
        c = Case(8, f"header-{label}")
        write(c.p("m.safetensors"), struct.pack("<Q", declared) + b"{}")
        c.tool(["convert", "inspect", "m.safetensors"], expect={5})
        c.done()
    if not G.quick:
        c = Case(8, "header-98MB-valid")
        meta = {"k%d" % i: "v" * 1000 for i in range(97000)}  # < the 100,000,000-byte limit
        raw = json.dumps({"__metadata__": meta, "w": {"dtype": "F32", "shape": [1],
                                                      "data_offsets": [0, 4]}}).encode()
        write(c.p("m.safetensors"), st_bytes([("w", "F32", [1], f32([1.0]))], raw_header=raw))
        r = c.tool(["convert", "inspect", "m.safetensors", "--json"], expect={0}, timeout=120)
        TIMINGS[f"inspect safetensors, {len(raw) / 1e6:.1f} MB header"] = (
            r.dt, len(raw) / 1e6 / max(r.cpu, 1e-9), r.cpu)
        c.done()


def item9():
    """A shard truncated while it is being converted (and warmed)."""
    rng = random.Random(G.seed + 9)
    nel = 8 * 2 ** 20  # 32 MiB of F32
    blob = bytes(rng.getrandbits(8) for _ in range(1 << 16)) * (nel * 4 // (1 << 16))
    data = st_bytes([("model.layers.0.mlp.up_proj.weight", "F32", [2048, nel // 2048], blob)])
    delays = (0.05, 0.3) if G.quick else (0.02, 0.1, 0.3, 0.6)
    for tool in ("convert", "warm"):
        for d in delays:
            for cut in (64, len(data) // 2):
                c = Case(9, f"truncate-{tool}-{d}s-to-{cut}")
                write(c.p("in", "model.safetensors"), data)
                out = c.p("out") if tool == "convert" else c.p("cache")
                exe = [G.convert, "in", out, "-q", "--lossless"] if tool == "convert" else \
                    [G.cache, "--cache-dir", out, "warm", "in"]
                pr = subprocess.Popen(exe, cwd=c.dir, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
                time.sleep(d)
                os.truncate(c.p("in", "model.safetensors"), cut)
                try:
                    o, e = pr.communicate(timeout=G.timeout)
                    rc = pr.returncode
                except subprocess.TimeoutExpired:
                    pr.kill()
                    o, e = pr.communicate()
                    rc = "timeout"
                c.cmds.append(f"cd {c.dir} && {' '.join(map(shlex.quote, exe))} & sleep {d}; "
                              f"truncate -s {cut} in/model.safetensors")
                if rc == "timeout" or rc < 0 or rc not in VALID_RC:
                    c.fail(f"(a) rc={rc} after truncation at {d}s: stderr={e[-300:]!r}")
                if temps(c.dir):
                    c.fail(f"(c) temporaries left: {temps(c.dir)[:3]}")
                if tool == "convert" and rc != 0 and os.path.exists(out):
                    c.fail("(e) failed convert left an output")
                if tool == "warm":
                    c.verify_consistent(out)
                c.done()


def _mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True)
    return r.returncode == 0


def _fill(path):
    try:
        with open(path, "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    except OSError:
        pass


def item10():
    """A full filesystem: evict and gc must still work."""
    fsmode = None
    cmds = [["evict", "--all"], ["gc"], ["evict", "--model", "src"], ["evict", "--max-size", "0"],
            ["stat"], ["ls"], ["verify"], ["config", "--max-size", "1M"], ["warm", "SRC", "--force"]]
    expect = {"evict": {0}, "gc": {0}, "stat": {0}, "ls": {0}, "verify": {0, 1}, "config": {0, 4, 7},
              "warm": {0, 4, 7}}
    for cmd in cmds:
        c = Case(10, f"fullfs-{'-'.join(cmd)}")
        fs = c.p("fs")
        mounted = _mount_tmpfs(fs, "8m")
        fsmode = "tmpfs 8 MiB" if mounted else "RLIMIT_FSIZE"
        try:
            src = copy_fix(c, "tiny_hct", "src")
            cache = os.path.join(fs, "cache")
            c.tool(["cache", "--cache-dir", cache, "warm", src], owned=[cache], expect={0})
            pre = None
            if mounted:
                _fill(os.path.join(fs, "filler"))
            else:
                def pre():
                    import resource
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                    resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))
            r = c.tool(["cache", "--cache-dir", cache] + [a.replace("SRC", src) for a in cmd],
                       owned=[cache], expect=expect[cmd[0]], preexec=pre)
            if mounted and cmd[0] in ("evict", "gc"):
                os.unlink(os.path.join(fs, "filler"))
                c.verify_consistent(cache)
        finally:
            if mounted:
                subprocess.run(["umount", "-l", fs])
        c.done()
    c = Case(10, "fullfs-convert")
    fs = c.p("fs")
    mounted = _mount_tmpfs(fs, "4m")
    try:
        copy_fix(c, "tiny", "in")
        if mounted:
            _fill(os.path.join(fs, "filler"))
        out = os.path.join(fs, "out")
        pre = None
        if not mounted:
            def pre():
                import resource
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))
        c.tool(["convert", "in", out, "-q"], owned=[out], expect={4, 7}, preexec=pre)
        if os.path.exists(out):
            c.fail("(e) failed convert on a full disk left an output")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", fs])
    c.done()
    TIMINGS["item 10 full-filesystem mode"] = (0, fsmode)


def item11():
    """verify --deep must see index.db and entry-header corruption."""
    def flip_name(cache):
        con = sqlite3.connect(os.path.join(cache, "index.db"))
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        p = os.path.join(cache, "index.db")
        b = bytearray(open(p, "rb").read())
        i = b.find(b"model.layers.0.mlp.up_proj.weight")
        b[i + 6] ^= 0x01  # 'l' -> 'm' in one copy of the name
        write(p, bytes(b))

    def entry_hdr(cache):
        ent = os.path.join(cache, "entries", "src")
        for f in sorted(os.listdir(ent)):
            p = os.path.join(ent, f)
            b = bytearray(open(p, "rb").read())
            i = b.find(b'"F32"')
            if i > 0:
                b[i + 1:i + 4] = b"I32"
                write(p, bytes(b))
                return

    def flip_data(cache):
        ent = os.path.join(cache, "entries", "src")
        p = os.path.join(ent, sorted(os.listdir(ent))[0])
        b = bytearray(open(p, "rb").read())
        b[-3] ^= 0x40
        write(p, bytes(b))

    muts = {
        "db-bitflip-tensor-name": flip_name,
        "row-dtype": lambda c: db_exec(c, "UPDATE tensors SET dtype='I32' WHERE id=1"),
        "row-shape": lambda c: db_exec(c, "UPDATE tensors SET shape='[1,2,3]' WHERE id=1"),
        "row-length": lambda c: db_exec(c, "UPDATE tensors SET length=length+4 WHERE id=1"),
        "row-offset": lambda c: db_exec(c, "UPDATE tensors SET offset=offset+4 WHERE id=1"),
        "row-name": lambda c: db_exec(c, "UPDATE tensors SET name='zz' WHERE id=1"),
        "entry-header-F32-to-I32": entry_hdr,
        "entry-data-bitflip": flip_data,
        "entry-deleted": lambda c: os.unlink(os.path.join(
            c, "entries", "src", sorted(os.listdir(os.path.join(c, "entries", "src")))[0])),
        "row-xxh3": lambda c: db_exec(c, "UPDATE tensors SET xxh3=xxh3+1 WHERE id=1"),
    }
    for label, fn in muts.items():
        c = Case(11, label)
        src, cache = warmed(c)
        fn(cache)
        c.verify_consistent(cache, expect_problem=label)
        if label.startswith("db-"):
            r = c.tool(["cache", "--cache-dir", cache, "verify", "--quick"], owned=[cache],
                       expect={1, 5})
        c.done()


def item12():
    """Two source files with the same stem in a model index."""
    c = Case(12, "same-stem-a-b")
    rng = random.Random(G.seed + 12)
    os.makedirs(c.p("h"))
    for sub, prefix in (("a", "model"), ("b", "model2")):
        write(c.p("st", sub, "model.safetensors"), st_bytes(tiny_tensors(rng, 2, 16, prefix)))
        c.tool(["convert", os.path.join("st", sub), os.path.join("h", sub + "_tmpout"), "-q"],
               owned=[c.p("h", sub + "_tmpout")], expect={0})
        os.makedirs(c.p("h", sub), exist_ok=True)
        shutil.move(c.p("h", sub + "_tmpout", "model.hct"), c.p("h", sub, "model.hct"))
        shutil.rmtree(c.p("h", sub + "_tmpout"))
    files, wm = [], {}
    for sub in ("a", "b"):
        f = f"{sub}/model.hct"
        idx = hct_read(c.p("h", f))[2]
        files.append({"file": f, "num_tensors": len(idx["tensors"]),
                      "size": os.path.getsize(c.p("h", f)),
                      "decoded_size": sum(t["decoded_size"] for t in idx["tensors"])})
        wm.update({t["name"]: f for t in idx["tensors"]})
    write(c.p("h", "model.hct.index.json"), json.dumps(
        {"format": "hct-model", "version": 1, "files": files, "weight_map": wm, "metadata": {}}))
    cache = c.p("cache")
    counts = []
    for force in ([], [], ["--force"], ["--force"]):
        r = c.tool(["cache", "--cache-dir", cache, "--json", "warm", "h"] + force, owned=[cache],
                   expect={0})
        ls = c.tool(["cache", "--cache-dir", cache, "--json", "ls", "--entries"], owned=[cache],
                    expect={0})
        try:
            w = json.loads(r.out)
            n = len(json.loads(ls.out))
            counts.append(n)
            if force and w["entries_written"] != n:
                c.fail(f"(e) warm --force wrote {w['entries_written']} entries, {n} indexed")
            if not force and len(counts) == 2 and w["entries_written"] != 0:
                c.fail(f"(e) second warm rewrote {w['entries_written']} entries (flip)")
        except (ValueError, KeyError) as ex:
            c.fail(f"(e) unparsable JSON: {ex}")
    if len(set(counts)) > 1:
        c.fail(f"(e) indexed entry count changes between warms: {counts}")
    c.verify_consistent(cache)
    c.done()


def _spawn(c, args):
    e = dict(os.environ, HOME=c.p("home"))
    e.pop("HCT_CACHE_DIR", None)
    return subprocess.Popen([G.cache] + args, cwd=c.dir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=e)


def _wait(p):
    try:
        o, e = p.communicate(timeout=G.timeout)
        return p.returncode, o, e
    except subprocess.TimeoutExpired:
        p.kill()
        o, e = p.communicate()
        return "timeout", o, e


def _conc_model(c):
    rng = random.Random(G.seed + 13)
    write(c.p("src", "model.safetensors"), st_bytes(tiny_tensors(rng, 8, 32)))
    return c.p("src")


def item13_15():
    trials = 4 if G.quick else 12
    for t in range(trials):  # 13: two concurrent evict --model M
        c = Case(13, f"concurrent-evict-model-{t}")
        src = _conc_model(c)
        cache = c.p("cache")
        c.tool(["cache", "--cache-dir", cache, "warm", src], owned=[cache], expect={0})
        before = snapshot(c.dir, [cache])
        ps = [_spawn(c, ["--cache-dir", cache, "--json", "evict", "--model", "src"]) for _ in range(2)]
        for rc, o, e in map(_wait, ps):
            if rc != 0:
                c.fail(f"(e) concurrent evict --model src: rc={rc} stderr={e[-200:]!r} out={o[-100:]!r}")
        c.cmds.append(f"hct-cache --cache-dir {cache} --json evict --model src  (x2 concurrently)")
        d = snap_diff(before, snapshot(c.dir, [cache]))
        if d:
            c.fail("(b) " + "; ".join(d[:4]))
        c.verify_consistent(cache)
        c.done()
    for t in range(trials):  # 14: two concurrent evict --max-size
        c = Case(14, f"concurrent-evict-max-size-{t}")
        src = _conc_model(c)
        cache = c.p("cache")
        c.tool(["cache", "--cache-dir", cache, "warm", src], owned=[cache], expect={0})
        ps = [_spawn(c, ["--cache-dir", cache, "--json", "evict", "--max-size", "0"]) for _ in range(2)]
        c.cmds.append(f"hct-cache --cache-dir {cache} --json evict --max-size 0  (x2 concurrently)")
        for rc, o, e in map(_wait, ps):
            if rc != 0:
                c.fail(f"(e) concurrent evict --max-size 0, no reader: rc={rc} out={o[-200:]!r} err={e[-150:]!r}")
        c.verify_consistent(cache)
        c.done()
    for t in range(trials):  # 15: verify during evict --all
        c = Case(15, f"verify-during-evict-all-{t}")
        src = _conc_model(c)
        cache = c.p("cache")
        c.tool(["cache", "--cache-dir", cache, "warm", src], owned=[cache], expect={0})
        ev = _spawn(c, ["--cache-dir", cache, "evict", "--all"])
        vf = _spawn(c, ["--cache-dir", cache, "--json", "verify"] + (["--deep", "--repair"] if t % 2 else []))
        c.cmds.append(f"hct-cache --cache-dir {cache} evict --all & hct-cache --cache-dir {cache} "
                      f"--json verify {'--deep --repair' if t % 2 else ''}")
        rce, _, ee = _wait(ev)
        rcv, ov, ev_ = _wait(vf)
        if rce != 0:
            c.fail(f"(e) evict --all rc={rce} {ee[-200:]!r}")
        if rcv != 0:
            c.fail(f"(e) verify during evict --all rc={rcv}: {ov[-300:]!r}")
        c.done()
    # kill -9 trials across warm / evict / gc / verify
    rng = random.Random(G.seed + 15)
    ops = [["warm", "SRC", "--force"], ["evict", "--all"], ["gc"], ["verify", "--deep"],
           ["evict", "--max-size", "100K"], ["verify", "--repair"]]
    for t in range(10 if G.quick else 40):
        c = Case(15, f"kill9-{t}")
        src = _conc_model(c)
        cache = c.p("cache")
        c.tool(["cache", "--cache-dir", cache, "warm", src], owned=[cache], expect={0})
        before = snapshot(c.dir, [cache])
        ps = []
        for _ in range(3):
            op = [a.replace("SRC", src) for a in rng.choice(ops)]
            ps.append((op, _spawn(c, ["--cache-dir", cache] + op)))
        time.sleep(rng.uniform(0.0, 0.15))
        victim = rng.randrange(3)
        try:
            ps[victim][1].send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        c.cmds.append(f"{[' '.join(p[0]) for p in ps]} concurrently; kill -9 #{victim}")
        for i, (op, p) in enumerate(ps):
            rc, o, e = _wait(p)
            if i == victim and rc == -9:
                continue
            if rc == "timeout" or rc < 0 or rc not in VALID_RC:
                c.fail(f"(a) {' '.join(op)} rc={rc} {e[-200:]!r}")
        d = snap_diff(before, snapshot(c.dir, [cache]))
        if d:
            c.fail("(b) " + "; ".join(d[:4]))
        c.tool(["cache", "--cache-dir", cache, "gc"], owned=[cache], expect={0})
        c.verify_consistent(cache)
        r = c.tool(["cache", "--cache-dir", cache, "verify", "--deep", "--repair"], owned=[cache],
                   expect={0})
        c.done()


def item16():
    """Bad option values must be usage errors (exit 2)."""
    conv = [["--chunk-size", v] for v in ("-1", "18446744073709551615", "0", "abc", "",
                                          "1G1", "99999999999999999999K", "2G")]
    conv += [["--tile", v] for v in ("4294967312", "0", "65", "-1", "16x0", "x", "16x", "")]
    conv += [["--threads", v] for v in ("-5", "abc", "", "99999999999999999999")]
    conv += [["--bits", v] for v in ("-1", "nan", "inf", "0", "abc", "")]
    conv += [["--max-error", v] for v in ("-1", "nan", "0", "inf")]
    conv += [["--dead-zone", v] for v in ("0.5", "-0.1", "nan")]
    conv += [["--zstd-level", v] for v in ("100", "-1000000", "x")]
    conv += [["--retention", v] for v in ("0", "2", "nan")]
    conv += [["--transform", "fft"], ["--chunk-size", "1.5"], ["--entropy", "gzip"], ["--bits", "3", "--max-error", "0.1"]]
    for o in conv:
        c = Case(16, "convert " + " ".join(o))
        copy_fix(c, "tiny", "in")
        c.tool(["convert", "in", "out", "-q"] + o, owned=[c.p("out")], expect={2})
        c.done()
    cache_opts = [["config", "--max-size", v] for v in ("", "10000P", "-1", "1.5.5", "abc", "1X",
                                                         "18446744073709551616", "nan", "1e3")]
    cache_opts += [["evict", "--max-size", v] for v in ("", "-1", "abc", "99999999999P")]
    cache_opts += [["warm", "SRC", "--threads", v] for v in ("-5", "abc", "")]
    cache_opts += [["verify", "--threads", "-1"], ["verify", "--quick", "--deep"],
                   ["evict"], ["evict", "--all", "--model", "x"], ["bogus"], ["warm"]]
    for o in cache_opts:
        c = Case(16, "cache " + " ".join(o))
        src = copy_fix(c, "tiny_hct", "src")
        cache = c.p("cache")
        c.tool(["cache", "--cache-dir", cache] + [a.replace("SRC", src) for a in o], owned=[cache],
               expect={2})
        c.done()
    for o in (["--cache-dir", "", "stat"], ["--cache-dir", "", "warm", "SRC"]):
        c = Case(16, "cache " + " ".join(o).replace("''", "EMPTY") + "-empty")
        src = copy_fix(c, "tiny_hct", "src")
        c.tool(["cache"] + [a.replace("SRC", src) for a in o], expect={2})
        if os.path.exists(c.p("home", ".cache", "hct")):
            c.fail("(e) --cache-dir '' fell back to the home cache")
        c.done()


def item17():
    """Clearer errors: odd names, broken cache indexes, loops, control characters."""
    names = {"empty-name": "", "metadata-name": "__metadata__", "ctl-name": "w\x1b[2J\x07x",
             "newline-name": "a\nb", "del-name": "a\x7fb", "long-name": "n" * 70000}
    for label, nm in names.items():
        c = Case(17, f"tensor-{label}")
        if nm == "__metadata__":
            raw = json.dumps({"__metadata__": {"dtype": "F32", "shape": [2],
                                               "data_offsets": [0, 8]}}).encode()
            data = st_bytes([("x", "F32", [2], f32([1, 2]))], raw_header=raw)
        else:
            data = st_bytes([(nm, "F32", [2], f32([1, 2])),
                             ("model.layers.0.w", "F32", [2], f32([1, 2]))])
        write(c.p("in", "model.safetensors"), data)
        out, cache = c.p("out"), c.p("cache")
        exp = {5} if label in ("empty-name", "metadata-name") else {0, 5}
        c.tool(["convert", "inspect", "in/model.safetensors"], expect=exp, ctl_check=True)
        r = c.tool(["convert", "in", out], owned=[out], expect=exp, ctl_check=True)
        c.tool(["cache", "--cache-dir", cache, "warm", "in"], owned=[cache], expect=exp,
               ctl_check=True)
        if r.rc == 0:
            c.tool(["cache", "--cache-dir", cache, "ls", "--tensors"], owned=[cache],
                   expect={0}, ctl_check=True)
        c.done()
    broken = {
        "config-abc": lambda ca: db_exec(ca, "INSERT OR REPLACE INTO config VALUES('max_size','abc')"),
        "config-neg": lambda ca: db_exec(ca, "INSERT OR REPLACE INTO config VALUES('max_size','-5')"),
        "drop-tensors": lambda ca: db_exec(ca, "DROP TABLE tensors"),
        "drop-files": lambda ca: db_exec(ca, "DROP TABLE files"),
        "drop-config": lambda ca: db_exec(ca, "DROP TABLE config"),
        "zero-byte-db": lambda ca: (os.unlink(os.path.join(ca, "index.db")),
                                    write(os.path.join(ca, "index.db"), b"")),
        "text-db": lambda ca: (os.unlink(os.path.join(ca, "index.db")),
                               write(os.path.join(ca, "index.db"), b"hello, not sqlite\n" * 10)),
        "user_version-99": lambda ca: db_exec(ca, "PRAGMA user_version=99"),
        "shape-not-json": lambda ca: db_exec(ca, "UPDATE tensors SET shape='[[' WHERE id=1"),
        "ctl-model-name": lambda ca: db_exec(ca, "UPDATE models SET name='m\x1b[31m'"),
    }
    for label, fn in broken.items():
        for cmd in (["stat"], ["ls", "--tensors"], ["verify"], ["evict", "--max-size", "1K"],
                    ["gc"], ["warm", "SRC"]):
            c = Case(17, f"cache-{label}-{cmd[0]}")
            src, cache = warmed(c)
            for ext in ("-wal", "-shm"):
                if os.path.exists(os.path.join(cache, "index.db" + ext)) and label in (
                        "zero-byte-db", "text-db"):
                    os.unlink(os.path.join(cache, "index.db" + ext))
            fn(cache)
            r = c.tool(["cache", "--cache-dir", cache] + [a.replace("SRC", src) for a in cmd],
                       owned=[cache], expect={0, 1, 5} if label != "user_version-99" else {5},
                       ctl_check=True)
            if r.rc not in (0, 1) and b"stoull" in r.err and b"max_size" not in r.err:
                c.fail(f"(e) unclear error: {r.err[-200:]!r}")
            if label in ("drop-tensors", "drop-files", "zero-byte-db", "text-db") and r.rc == 0 \
                    and cmd[0] in ("ls", "verify"):
                c.fail(f"(e) {cmd[0]} exit 0 on a broken index ({label})")
            c.done()
    for loop in ("self", "pair", "dangling"):
        c = Case(17, f"symlink-{loop}-in-model-folder")
        copy_fix(c, "tiny", "in")
        if loop == "self":
            os.symlink("loop", c.p("in", "loop"))
        elif loop == "pair":
            os.symlink("b", c.p("in", "a"))
            os.symlink("a", c.p("in", "b"))
        else:
            os.symlink("nowhere", c.p("in", "dangling"))
        out, cache = c.p("out"), c.p("cache")
        r1 = c.tool(["convert", "in", out, "-q"], owned=[out], expect={0, 5})
        r2 = c.tool(["cache", "--cache-dir", cache, "warm", "in"], owned=[cache], expect={0, 5})
        if (r1.rc == 0) != (r2.rc == 0):
            c.fail(f"(e) convert rc {r1.rc} and warm rc {r2.rc} disagree on an unrelated {loop} link")
        c.done()
    for argv, exp in ((["convert", "IN", ""], {2}), (["convert", "decode", "H", ""], {2}),
                      (["convert", "", "out"], {2}), (["convert", "inspect", ""], {2})):
        c = Case(17, "empty-path-" + "_".join(a or "EMPTY" for a in argv[1:]))
        copy_fix(c, "tiny", "IN")
        copy_fix(c, "tiny_hct", "H")
        c.tool(argv, expect=exp)
        c.done()


# ----------------------------------------------------------------------------- mutation
def mutate_bytes(rng, b, lo=0, hi=None):
    b = bytearray(b)
    hi = hi or len(b)
    op = rng.randrange(5)
    if op == 0:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(lo, hi)
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:
        i = rng.randrange(lo, hi)
        b[i] = rng.choice([0, 0xff, 0x7f, 0x80, ord("{"), ord('"'), ord("9")])
    elif op == 2:
        b = b[:rng.randrange(lo, hi)]
    elif op == 3:
        i = rng.randrange(lo, hi)
        b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
    else:
        i = rng.randrange(lo, hi)
        del b[i:i + rng.randint(1, 64)]
    return bytes(b)


def mutate_json_value(rng, obj):
    """Replace one random scalar of a JSON object with a hostile value."""
    paths = []

    def walk(o, p):
        if isinstance(o, dict):
            for k, v in o.items():
                walk(v, p + [k])
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, p + [i])
        else:
            paths.append(p)
    walk(obj, [])
    p = rng.choice(paths)
    o = obj
    for k in p[:-1]:
        o = o[k]
    o[p[-1]] = rng.choice([0, 1, -1, 2 ** 32, 2 ** 40, 2 ** 63, 2 ** 64 - 1, 2 ** 64, 1.5, 1e308,
                           None, "", "x", "../x", [], {}, True, "ffffffffffffffff"])
    return obj


def mutants():
    n = 60 if G.quick else 300
    rng = random.Random(G.seed + 100)
    src_hct = hct_file(FIX["tiny_hct_lossless"])
    orig = st_parse(os.path.join(FIX["tiny"], "model.safetensors"))
    hb, hioff, hidx = hct_read(src_hct)
    for k in range(n):
        c = Case("mut-hct", f"hct-{k}")
        src = copy_fix(c, "tiny_hct_lossless", "in")
        f = hct_file(src)
        kind = rng.randrange(3)
        if kind == 0:
            data = mutate_bytes(rng, hb)
        elif kind == 1:  # inside the index, checksums re-fixed
            raw = bytes(hb[hioff:len(hb) - 48])
            data = hct_rewrite_index(hb, hioff, raw=mutate_bytes(rng, raw))
        else:
            data = hct_rewrite_index(hb, hioff, mutate_json_value(rng, json.loads(json.dumps(hidx))))
        write(f, data)
        dec, cache = c.p("dec"), c.p("cache")
        c.tool(["convert", "inspect", src, "--json"])
        r = c.tool(["convert", "decode", src, dec, "-q"], owned=[dec])
        if r.rc == 0:
            for fn in os.listdir(dec):
                if fn.endswith(".safetensors"):
                    try:
                        got = st_parse(os.path.join(dec, fn))
                    except Exception as ex:
                        c.fail(f"(d) decode exit 0 wrote an unreadable {fn}: {ex}")
                        continue
                    for name, (dt, sh, bts) in got.items():
                        if name in orig and orig[name][0] == dt and orig[name][2] != bts:
                            c.fail(f"(d) decode exit 0 served wrong bytes for {name}")
        if k % 3 == 0:
            c.tool(["cache", "--cache-dir", cache, "warm", src], owned=[cache])
            if os.path.exists(os.path.join(cache, "index.db")):
                c.verify_consistent(cache)
        c.done()
    sb = open(os.path.join(FIX["tiny"], "model.safetensors"), "rb").read()
    hn = struct.unpack("<Q", sb[:8])[0]
    for k in range(n // 2):
        c = Case("mut-st", f"safetensors-{k}")
        copy_fix(c, "tiny", "in")
        data = mutate_bytes(rng, sb, 0, 8 + hn) if k % 4 else mutate_bytes(rng, sb)
        write(c.p("in", "model.safetensors"), data)
        out = c.p("out")
        c.tool(["convert", "inspect", "in/model.safetensors"])
        c.tool(["convert", "in", out, "-q", "--lossless", "--verify"], owned=[out])
        c.done()
    dbsrc = os.path.join(FIX["cache"], "index.db")
    con = sqlite3.connect(dbsrc)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    db = open(dbsrc, "rb").read()
    for k in range(n // 2):
        c = Case("mut-db", f"index.db-{k}")
        src, cache = warmed(c)
        con = sqlite3.connect(os.path.join(cache, "index.db"))
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        p = os.path.join(cache, "index.db")
        cur = open(p, "rb").read()
        write(p, mutate_bytes(rng, cur, 100 if k % 2 else 0))
        write(c.p("decoy.txt"), "decoy\n")
        r = c.tool(["cache", "--cache-dir", cache, "--json", "verify", "--deep"], owned=[cache])
        if r.rc == 0:
            tmp = c.p("copy.db")
            shutil.copy(p, tmp)
            try:
                ic = sqlite3.connect(tmp).execute("PRAGMA integrity_check").fetchall()
                ok = ic == [("ok",)]
            except sqlite3.DatabaseError as ex:
                ok, ic = False, str(ex)
            os.unlink(tmp)
            if not ok:
                c.fail(f"(d) verify --deep exit 0 while PRAGMA integrity_check fails: {str(ic)[:120]}")
        c.tool(["cache", "--cache-dir", cache, "ls", "--entries"], owned=[cache])
        c.tool(["cache", "--cache-dir", cache, "evict", "--all"], owned=[cache])
        c.tool(["cache", "--cache-dir", cache, "gc"], owned=[cache])
        c.done()


# ----------------------------------------------------------------------------- main
ITEMS = {"1": item1, "2": item2, "3": item3, "4": item4, "5": item5, "6": item6, "7": item7,
         "8": item8, "9": item9, "10": item10, "11": item11, "12": item12, "13-15": item13_15,
         "16": item16, "17": item17, "mut": mutants}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-cc"))
    ap.add_argument("--work", default="/tmp/hct-campaign")
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--items", default=",".join(ITEMS))
    ap.add_argument("--timeout", type=float, default=30.0, help="per tool run, seconds")
    ap.add_argument("--keep", action="store_true", help="keep passing case dirs too")
    ap.add_argument("--json", help="write all results as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(namespace=G)
    G.convert = os.path.join(a.build, "convert", "hct-convert")
    G.cache = os.path.join(a.build, "cache", "hct-cache")
    G.work = os.path.abspath(a.work)
    for exe in (G.convert, G.cache):
        if not os.access(exe, os.X_OK):
            sys.exit(f"missing {exe}")
    os.makedirs(G.work, exist_ok=True)
    t0 = time.time()
    fixtures()
    for it in a.items.split(","):
        t = time.time()
        ITEMS[it]()
        print(f"item {it}: {time.time() - t:.1f} s", flush=True)
    total = time.time() - t0
    by = {}
    for r in RESULTS:
        s = by.setdefault(str(r["item"]), [0, 0, 0])
        s[0] += 1
        s[1 if r["ok"] else 2] += 1
    print(f"\n{'item':>8} {'cases':>6} {'passed':>7} {'failed':>7}")
    for k, (n, p, f) in by.items():
        print(f"{k:>8} {n:>6} {p:>7} {f:>7}")
    print(f"{'total':>8} {len(RESULTS):>6} {sum(v[1] for v in by.values()):>7} "
          f"{sum(v[2] for v in by.values()):>7}   ({total:.0f} s, seed {a.seed}"
          f"{', quick' if a.quick else ''})")
    print("\nitem-7 timings (machine shared with other builds; load average %s):"
          % " ".join("%.2f" % x for x in os.getloadavg()))
    for k, (dt, rate, *cpu) in TIMINGS.items():
        print(f"  {k}: " + (f"{cpu[0]:.3f} s CPU, " if cpu else "") + (f"{dt:.3f} s wall" if dt else "") +
              (f", {rate:.1f} MB/s CPU" if isinstance(rate, float) else (f" {rate}" if rate else "")))
    print("\nslowest cases:")
    for r in sorted(RESULTS, key=lambda r: -r["slowest_tool"])[:8]:
        print(f"  {r['slowest_tool']:7.2f} s  [{r['item']}] {r['case']}")
    fails = [r for r in RESULTS if not r["ok"]]
    print(f"\nfailures ({len(fails)}):")
    for r in fails:
        print(f"- [{r['item']}] {r['case']}  (dir {r['dir']})")
        for f in r["failures"][:4]:
            print(f"    {f[:400]}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(results=RESULTS, timings=TIMINGS, seconds=total, seed=a.seed,
                           quick=a.quick), f, indent=1, default=str)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
