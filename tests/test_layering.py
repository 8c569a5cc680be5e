"""The core's module graph: no import cycle, and the gates share machinery, not each other.

Read from the source: module-level imports, those under TYPE_CHECKING included (a cycle there is
a cycle of the design, which only the guard keeps from failing at run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "toolchain"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The core modules `path` imports when it runs (a `from package import name` counts as
    the submodule when there is one, else as the package)."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    body = [n for top in tree.body for n in ([top, *top.body] if isinstance(top, ast.If)
                                              else [top])]
    for node in body:  # module level only: function-level imports run later
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif base in modules:
                    found.add(base)
    return found - {name}


def graph() -> dict[str, set[str]]:
    paths = sorted(CORE.rglob("*.py"))
    modules = {_module(p) for p in paths}
    return {_module(p): _imports(p, modules) for p in paths}


def test_the_core_has_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_the_graph_sees_imports() -> None:
    """The check above can fail: it sees the edges it is about."""
    edges = graph()
    assert "toolchain.execution.runs" in edges["toolchain.gates.correctness.gate"] or \
        "toolchain.execution" in edges["toolchain.gates.correctness.gate"]
    assert "toolchain.gates.performance.measurement" in edges[
        "toolchain.gates.performance.gate"]


def test_the_performance_gate_uses_the_execution_machinery_not_correctness_internals() -> None:
    perf = {m for name, deps in graph().items()
            if name.startswith("toolchain.gates.performance") for m in deps}
    internals = {m for m in perf if m.startswith("toolchain.gates.correctness.")}
    assert not internals, internals
