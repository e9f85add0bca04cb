"""Layering: every module imports alone, and the import graph has no cycles.

The graph is read from the source (every ``import`` statement, at module level or inside a
function, except under ``if TYPE_CHECKING``), so a cycle hidden behind a lazy import counts too:
it is still a knot a reader has to untie.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import tritonstub

ROOT = Path(tritonstub.__file__).resolve().parent
PACKAGE = "tritonstub"


def modules():
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = modules()


def _is_type_checking(node) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path):
    """The tritonstub modules ``name`` imports (submodules named in ``from x import y`` too)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE:
                subs = [f"{target}.{a.name}" for a in node.names]
                if all(sub in MODULES for sub in subs):
                    found.update(subs)          # ``from . import x``: x, not the package
                else:
                    found.add(target)
                    found.update(sub for sub in subs if sub in MODULES)
        for child in ast.iter_child_nodes(node):
            visit(child)
    visit(tree)
    return {m for m in found if m in MODULES and m != name}


def graph():
    return {name: imports_of(name, path) for name, path in MODULES.items()}


def cycles(g):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_graph_reader_sees_lazy_imports():
    g = graph()
    assert "tritonstub.protocol" in g["tritonstub.protocol.requests"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def _import_alone(name: str):
    proc = subprocess.run([sys.executable, "-c", f"import importlib; importlib.import_module({name!r})"],
                          capture_output=True, text=True, timeout=120)
    return name, proc.returncode, proc.stderr[-2000:]


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = [n for n in MODULES if not n.endswith("__main__")]
    with ThreadPoolExecutor(4) as pool:
        failed = [(n, err) for n, rc, err in pool.map(_import_alone, names) if rc != 0]
    assert failed == []
