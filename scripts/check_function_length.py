#!/usr/bin/env python3
"""Prints the C++/CUDA functions longer than a limit (default 120 lines) in the given folders.

Usage: scripts/check_function_length.py [--max N] [DIR_OR_FILE ...]   (default: runtime cache)
Prints `path:first-last  N lines  name` for each offender and exits 1 when there is one, 0 when
there is none, 2 on bad usage. A function is a brace block whose opening `{` follows a `)` (after
qualifiers such as const, override, noexcept, -> type, or a constructor's initializer list) and
that is not a control statement (if/for/while/switch/catch) nor a lambda; lambdas count toward
the function that holds them. Comments, strings and character literals are skipped; lines are
counted from the line of the signature's name to the closing brace.
"""
import argparse
import os
import re
import sys

EXTS = (".cc", ".cpp", ".cu", ".h", ".hpp", ".cuh")
CONTROL = {"if", "for", "while", "switch", "catch", "return", "sizeof", "decltype",
           "alignof", "static_assert", "defined"}


def strip(text):
    """Text with comments, string and char literals blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i) and (i == 0 or not text[i - 1].isalnum()):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            end = text.find(")" + (m.group(1) if m else "") + '"', i)
            j = n if end < 0 or not m else end + len(m.group(1)) + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c in "\"'":
            if c == "'" and i > 0 and text[i - 1].isalnum():  # digit separator 1'000
                out.append(c)
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + " " * (j - i - 2) + c if j - i >= 2 else text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_paren_back(s, close):
    """Index of the '(' matching the ')' at `close`, or -1."""
    depth = 0
    for k in range(close, -1, -1):
        if s[k] == ")":
            depth += 1
        elif s[k] == "(":
            depth -= 1
            if depth == 0:
                return k
    return -1


def function_name(s, brace):
    """The name of the function whose body opens at `brace`, or None when it is not one."""
    k = brace - 1
    head = s[max(0, brace - 2000):brace]
    # Skip qualifiers and a trailing return type / initializer list back to the parameter list.
    m = re.search(r"\)\s*(?:const|override|final|noexcept|mutable|volatile|&|&&|\s)*"
                  r"(?:->\s*[\w:<>,\s*&]+)?\s*$", head)
    if not m:
        # A constructor's initializer list: `) : a_(x), b_{y} {`
        m2 = re.search(r"\)\s*(?:noexcept\s*)?:\s*[\w:]+\s*[({][^;{}]*[)}]"
                       r"(?:\s*,\s*[\w:]+\s*[({][^;{}]*[)}])*\s*$", head)
        if not m2:
            return None
        k = brace - (len(head) - m2.start())
    else:
        k = brace - (len(head) - m.start())
    if s[k] != ")":
        return None
    open_ = matching_paren_back(s, k)
    if open_ < 0:
        return None
    before = s[:open_].rstrip()
    nm = re.search(r"([~\w:]+(?:<[^<>;{}]*>)?|operator\s*[^\s(]+)\s*$", before)
    if not nm:
        return None  # e.g. a lambda `](...) {`
    name = nm.group(1)
    last = name.split("::")[-1]
    if last in CONTROL or not re.match(r"[~A-Za-z_]", last):
        return None
    prefix = before[:nm.start()].rstrip()
    if prefix.endswith("]") or prefix.endswith("="):
        return None
    return name, nm.start()


def functions(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        s = strip(f.read())
    line_of = [0] * (len(s) + 1)
    ln = 1
    for i, c in enumerate(s):
        line_of[i] = ln
        if c == "\n":
            ln += 1
    line_of[len(s)] = ln
    stack = []  # (index of '{', function name or None, name position)
    inside = 0  # how many function bodies are open
    for i, c in enumerate(s):
        if c == "{":
            fn = function_name(s, i) if inside == 0 else None
            stack.append((i, fn))
            if fn:
                inside += 1
        elif c == "}" and stack:
            start, fn = stack.pop()
            if fn:
                inside -= 1
                first = line_of[fn[1]]
                yield fn[0], first, line_of[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=120)
    ap.add_argument("paths", nargs="*", default=["runtime", "cache"])
    a = ap.parse_args()
    files = []
    for p in a.paths:
        if os.path.isfile(p):
            files.append(p)
        elif os.path.isdir(p):
            for root, _, names in os.walk(p):
                files += [os.path.join(root, x) for x in sorted(names) if x.endswith(EXTS)]
        else:
            print(f"{p}: no such file or folder", file=sys.stderr)
            return 2
    bad = 0
    for path in sorted(files):
        for name, first, last in functions(path):
            n = last - first + 1
            if n > a.max:
                bad += 1
                print(f"{path}:{first}-{last}  {n} lines  {name}")
    print(f"{bad} function(s) over {a.max} lines in {len(files)} file(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
