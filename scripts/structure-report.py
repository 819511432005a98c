#!/usr/bin/env python3
"""Structure figures for a checkout: import circles between the modules of
each crate (read from `use crate::` / `crate::` paths), public items per
crate, and non-test files. Usage: scripts/structure-report.py [ROOT]"""
import os, re, sys
from itertools import chain

root = sys.argv[1] if len(sys.argv) > 1 else "."
crates_dir = os.path.join(root, "crates")

def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"

def top(mod):
    # Circles are counted between files' modules at one level below the
    # crate root (broker, store, handlers, ...), the unit a reader sees.
    return mod.split("::")[0] if mod != "crate" else "crate"

def strip_tests(text):
    # Drop `#[cfg(test)] mod tests { ... }` blocks: test code may import anything.
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)

def use_targets(text):
    for m in re.finditer(r"\bcrate::((?:\w+::)*\w+)", text):
        yield m.group(1).split("::")[0]
    for m in re.finditer(r"\bcrate::\{([^;]*)\}\s*;", text):
        for name in re.findall(r"(?:^|[,{]\s*)(\w+)", m.group(1)):
            yield name
    for m in re.finditer(r"\bsuper::(\w+)", text):
        yield "super:" + m.group(1)

def circles(edges):
    # Strongly connected components with more than one node (Tarjan).
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in list(edges):
        if v not in index: visit(v)
    return out

total_circles, total_pub = 0, 0
for crate in sorted(os.listdir(crates_dir)):
    src = os.path.join(crates_dir, crate, "src")
    if not os.path.isdir(src):
        continue
    edges, pub = {}, 0
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            text = strip_tests(open(path, encoding="utf-8").read())
            pub += len(re.findall(r"^\s*pub (?:async )?(?:fn|struct|enum|trait|type|const|static|mod|use) ", text, re.M))
            mod = module_of(src, path)
            here = top(mod)
            for t in use_targets(text):
                if t.startswith("super:"):
                    parent = mod.split("::")[:-1]
                    t = parent[0] if parent else t[6:]
                    if not parent:
                        continue
                if t in ("self", "{") or t == here:
                    continue
                edges.setdefault(here, set()).add(t)
            # Within a folder module, circles between its files count too.
            if "::" in mod:
                sub = mod
                for t in re.findall(r"\bsuper::(\w+)", text):
                    sibling = "::".join(mod.split("::")[:-1] + [t])
                    edges.setdefault(sub, set()).add(sibling)
                for t in re.findall(r"\bcrate::((?:\w+::)+\w+)", text):
                    p = t.split("::")
                    if p[0] == mod.split("::")[0]:
                        target = "::".join(p[:2])
                        if target != sub:
                            edges.setdefault(sub, set()).add(target)
    cs = circles(edges)
    total_circles += len(cs)
    total_pub += pub
    print(f"{crate:10} circles={len(cs)} pub_items={pub}" + "".join(f"\n    circle: {' <-> '.join(c)}" for c in cs))
print(f"total circles={total_circles} pub_items={total_pub}")
