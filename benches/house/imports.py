#!/usr/bin/env python3
"""The import graph of a crate's top-level modules, and its cycles.

Reads every `.rs` file under `<crate>/src`, maps each to its top-level module (`src/error/x.rs`
-> `error`, `src/lib.rs` -> the crate root, which is left out), and adds an edge A -> B for
each `crate::B` path written in A (in `use` items and in code). Prints the edges and every
strongly connected component with more than one module (an import cycle).

Usage: python3 benches/house/imports.py catga-core
"""

import pathlib
import re
import sys


def module_of(src, path):
    rel = path.relative_to(src)
    first = rel.parts[0]
    if len(rel.parts) == 1:
        name = first[:-3]
        return None if name in ("lib", "main") else name
    return first


def graph(crate):
    src = pathlib.Path(crate) / "src"
    edges = {}
    aliases = {"__private": "private"}
    for path in src.rglob("*.rs"):
        module = module_of(src, path)
        if module is None:
            continue
        module = aliases.get(module, module)
        text = path.read_text()
        # Leave out test modules: a test may use anything.
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
        text = re.sub(r"//.*", "", text)
        targets = set(re.findall(r"\bcrate::(\w+)", text))
        for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
            targets.update(re.findall(r"(?:^|,)\s*(\w+)", group))
        targets = {aliases.get(t, t) for t in targets}
        edges.setdefault(module, set()).update(t for t in targets if t != module)
    modules = set(edges) | {t for ts in edges.values() for t in ts}
    # Keep edges to modules only (a `crate::Item` re-exported at the root is not a module).
    files = {aliases.get(module_of(src, p), module_of(src, p)) for p in src.rglob("*.rs")}
    return {m: {t for t in ts if t in files} for m, ts in edges.items() if m in files}


def cycles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    crate = sys.argv[1] if len(sys.argv) > 1 else "catga-core"
    edges = graph(crate)
    for module in sorted(edges):
        print(f"{module} -> {', '.join(sorted(edges[module])) or '(nothing)'}")
    found = cycles(edges)
    if found:
        for component in found:
            print(f"cycle: {' <-> '.join(component)}")
        sys.exit(1)
    print("no import cycle")


if __name__ == "__main__":
    main()
