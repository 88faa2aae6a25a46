"""Check that batchsr's modules import one way: no cycles, function-level imports included.

    python tools/import_graph.py [--print]

Reads every module of the package with ``ast`` (nothing is imported), takes each
``import batchsr.x`` / ``from batchsr import x`` / ``from batchsr.x import y``
wherever it stands (module level or inside a function), and fails, naming
them, if the graph has a cycle. ``--print`` lists each module's imports.
Run by the test suite (tests/test_layout.py).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "batchsr"


def _modules(package: Path) -> dict[str, Path]:
    """Dotted name below ``batchsr`` -> source file; a subpackage is named by its folder."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if parts and parts != ("__main__",):
            out[".".join(parts)] = path
    return out


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module name -> the package modules it imports anywhere in its source."""
    files = _modules(package)
    out: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    parts = a.name.split(".")
                    if parts[0] == "batchsr" and len(parts) > 1:
                        deps.add(".".join(parts[1:]))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "batchsr":
                below = ".".join(node.module.split(".")[1:])
                if below:
                    deps.add(below)
                for a in node.names:  # from batchsr[.pkg] import module
                    candidate = f"{below}.{a.name}" if below else a.name
                    if candidate in files:
                        deps.add(candidate)
        deps.discard(name)
        out[name] = {d for d in deps if d in files}
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tools/import_graph.py", description=__doc__.splitlines()[0])
    ap.add_argument("--print", action="store_true", help="list each module's imports")
    a = ap.parse_args(argv)
    g = graph()
    if a.print:
        for name, deps in g.items():
            print(f"{name:14s} -> {', '.join(sorted(deps)) or '-'}")
    found = cycles(g)
    for c in found:
        print("import cycle: " + " <-> ".join(c), file=sys.stderr)
    if not found:
        print(f"{len(g)} modules, no import cycle")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
