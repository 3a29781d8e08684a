#!/usr/bin/env python3
"""Draws the module graph of the service crate and checks its layering rule.

Every top-level module of crates/uponai/src may use only the modules below it in LAYERS (one
line a layer, top first); modules on one line may not use each other. A `crate::x` path
anywhere in a module's files (including `use crate::{x::…, y}` groups and `#[cfg(test)]` code)
counts as a use; comments do not. Prints the graph as `a -> b, c` lines, then every use that
breaks the rule with its file and line, and exits non-zero if there is one.

Usage: scripts/layers.py [--dot]   (--dot prints the graph in Graphviz form instead)
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "crates", "uponai", "src")

# Top first. The wiring at the top may use anything below it.
LAYERS = [
    ["main", "cli_batch", "demo"],
    ["cli_simulate"],
    ["startup"],
    ["config", "telemetry"],
    ["api"],
    ["sim"],
    ["dispatch"],
    ["calls"],
    ["hosted"],
    ["llm"],
    ["admission"],
    ["webhooks"],
    ["view"],
    ["store"],
    ["egress"],
    ["domain"],
]
RANK = {module: rank for rank, layer in enumerate(LAYERS) for module in layer}


def module_of(path):
    rel = os.path.relpath(path, SRC)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def strip_comments(text):
    # Line comments (doc comments included) name modules in prose; they are not uses.
    return re.sub(r"//[^\n]*", "", text)


def uses(text):
    """(line number, module) of every `crate::module` in `text`, groups expanded."""
    found = []
    for match in re.finditer(r"\bcrate::", text):
        line = text.count("\n", 0, match.start()) + 1
        rest = text[match.end():]
        if not rest.startswith("{"):
            name = re.match(r"[a-z_][a-z0-9_]*", rest)
            if name:
                found.append((line, name.group(0)))
            continue
        # `crate::{a::b::{c, d}, e}`: the first name of each item at depth one (a and e).
        depth, expecting = 0, False
        for token in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*|[{},]", rest):
            value = token.group(0)
            if value == "{":
                depth += 1
                expecting = depth == 1
            elif value == "}":
                depth -= 1
                if depth == 0:
                    break
            elif value == ",":
                expecting = depth == 1
            elif expecting:
                if value not in ("self", "super"):
                    found.append((line, value))
                expecting = False
    return found


def main():
    graph, broken, unknown = {}, [], set()
    for dirpath, _, files in os.walk(SRC):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            module = module_of(path)
            if module == "lib":
                continue
            text = strip_comments(open(path, encoding="utf-8").read())
            for line, used in uses(text):
                if used == module:
                    continue
                if used not in RANK or module not in RANK:
                    unknown.add(used if used not in RANK else module)
                    continue
                graph.setdefault(module, set()).add(used)
                if RANK[used] <= RANK[module]:
                    broken.append(f"{os.path.relpath(path, ROOT)}:{line}: {module} uses {used}")
    if "--dot" in sys.argv:
        print("digraph uponai {")
        for module in sorted(graph, key=RANK.get):
            for used in sorted(graph[module], key=RANK.get):
                print(f'  "{module}" -> "{used}";')
        print("}")
    else:
        for module in sorted(graph, key=RANK.get):
            print(f"{module} -> {', '.join(sorted(graph[module], key=RANK.get))}")
    for module in sorted(unknown):
        broken.append(f"module `{module}` is in no layer of scripts/layers.py")
    for line in broken:
        print(f"layering: {line}")
    if broken:
        print(f"{len(broken)} uses break the layering rule (see ARCHITECTURE.md, Layers)")
        return 1
    print("layering: every module uses only the layers below it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
