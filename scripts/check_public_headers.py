#!/usr/bin/env python3
"""Checks that the public headers (include/hct/*.h, not include/hct/detail/) hide the internals.

Usage: scripts/check_public_headers.py [HEADER ...]   (default: include/hct/*.h)
Prints `path:line: reason` for each problem and exits 1 when there is one, 0 when there is none.
A public header must not
  - include or name nlohmann::json (JSON crosses the API as text: codec params, reports);
  - include an internal header (hct/detail/..., or a component's <name>/detail/...);
  - define anything in namespace detail: forward declarations of an opaque type that a
    private member points to (`class ReadFile;`) are all it may hold there;
  - declare test hooks (names ending in ForTest/ForTesting, or *TestHook*): they live in the
    component's detail/ headers.
Comments and string literals are not looked at.
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The one rule for blanking comments and literals, shared with the function-length check.
from check_function_length import strip  # noqa: E402


def detail_blocks(code):
    """(start line, body) of each `namespace detail {` block (nested braces followed)."""
    for m in re.finditer(r"\bnamespace\s+(?:hct::)?detail\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        yield code.count("\n", 0, m.start()) + 1, code[m.end():j - 1]


def check(path):
    text = open(path, encoding="utf-8").read()
    code = strip(text)  # blanks include paths too: they are read from the original line
    problems = []
    for no, (line, orig) in enumerate(zip(code.splitlines(), text.splitlines()), 1):
        if re.search(r"#\s*include\s*<nlohmann/", line) or "nlohmann::" in line:
            problems.append((no, "nlohmann::json in a public header"))
        m = re.search(r'#\s*include\s*"([^"]+)"', orig) if "#" in line else None
        if m and "/detail/" in m.group(1):
            problems.append((no, "includes the internal header " + m.group(1)))
        if re.search(r"\b\w*(ForTest|ForTesting|TestHooks?)\b", line):
            problems.append((no, "a test hook in a public header"))
    for start, body in detail_blocks(code):
        rest = re.sub(r"\b(class|struct)\s+\w+\s*;", "", body)
        if rest.strip():
            problems.append((start, "namespace detail holds more than opaque forward declarations"))
    return problems


def main(argv):
    paths = argv[1:] or sorted(glob.glob(os.path.join(ROOT, "include", "hct", "*.h")))
    if not paths:
        print("no headers found", file=sys.stderr)
        return 2
    bad = 0
    for p in paths:
        for no, why in check(p):
            print(f"{os.path.relpath(p, ROOT)}:{no}: {why}")
            bad += 1
    print(f"{bad} problem(s) in {len(paths)} public header(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
