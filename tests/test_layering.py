"""The core's module graph: no import cycle, and the gates share machinery, not each other.

Read from the source: module-level imports, those under TYPE_CHECKING included (a cycle there is
a cycle of the design, which only the guard keeps from failing at run time).
"""

from __future__ import annotations

import ast
import re
import subprocess
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


# ----------------------------------------------------------------------------------- settings

# Who may read the process environment, and why (everything else is handed its settings).
ENVIRONMENT_READERS = {
    "toolchain/settings.py": "the core's settings (and the XDG cache directory they default to)",
    "store/settings.py": "the farm's settings (and the XDG data directory they default to)",
    "api/process.py": "starts an API process with a copy of the environment",
    "deploy/measure.py": "starts the services it measures with a copy of the environment",
    "toolchain/gates/performance/fidelity.py": "runs llvm-mca with a copy of it and LC_ALL=C",
    "workers/metrics.py": "PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads from there",
    "clients/python/armgym_client/client.py": "the trainer-side client's ARMGYM_URL and key",
    "clients/python/armgym_client/adapters/verl.py": "the client's ARMGYM_RUN_ID under verl",
    "examples/_farm.py": "the examples' ARMGYM_URL and key, as the client takes them",
}
# Where the process-wide settings (the core's get_settings(), the farm's get_farm_settings())
# may be fetched rather than handed in: the entry points a process starts at, each in one
# place. Everything beneath them, pool processes included, takes `settings` as an argument.
SETTINGS_ENTRY_POINTS = {
    "toolchain/cli.py": "the armgym command builds them once in main() and hands each "
                        "command (and its pool processes) that object",
}
PRODUCT_SETTINGS_ENTRY_POINTS = {
    **SETTINGS_ENTRY_POINTS,
    "api/demo.py": "python -m api.demo",
    "workers/celery_app.py": "the Celery app of a worker process",
    "store/admin.py": "python -m store.admin",
    "migrations/env.py": "alembic",
    "deploy/entrypoints.py": "a container's start-up steps",
    "deploy/measure.py": "python -m deploy.measure",
    "examples/simulated_run.py": "the simulated run",
}
PRODUCT = ("toolchain", "api", "workers", "store", "deploy", "reports", "clients", "examples",
           "migrations", "monitoring")


def _product_sources() -> list[Path]:
    return sorted(p for d in PRODUCT for p in (ROOT / d).rglob("*.py")
                  if "build" not in p.parts and ".venv" not in p.parts)


def test_no_module_reads_the_environment_but_the_settings() -> None:
    readers = {str(p.relative_to(ROOT)) for p in _product_sources()
               if re.search(r"\bos\.environ\b|\bgetenv\(|\benviron\.get\(", p.read_text())}
    assert readers - set(ENVIRONMENT_READERS) == set(), "read the environment outside the " \
        "settings (pass settings in, or document the exception here)"
    assert set(ENVIRONMENT_READERS) <= readers, "a documented reader no longer reads it"


def test_the_core_is_handed_its_settings() -> None:
    """No `settings or get_settings()` fallback (nor `or Settings()`) in the core, and
    get_settings() only at the entry points."""
    fallback = re.compile(r"settings or (get_settings\(\)|Settings\(\))")
    fetch = re.compile(r"\bget_settings\(\)")
    found = {str(p.relative_to(ROOT)): p.read_text() for p in sorted(CORE.rglob("*.py"))}
    assert [f for f, text in found.items() if fallback.search(text)] == []
    fetching = {f for f, text in found.items() if fetch.search(text)} - {"toolchain/settings.py"}
    assert fetching == set(SETTINGS_ENTRY_POINTS), fetching ^ set(SETTINGS_ENTRY_POINTS)


def _fetches(text: str) -> int:
    """How many places in a module's source fetch the process-wide settings."""
    return sum(isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
               and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
               in ("get_settings", "get_farm_settings")
               for node in ast.walk(ast.parse(text)))


def test_an_entry_point_builds_the_settings_in_one_place() -> None:
    """An entry point fetches the settings once and hands them down: one that fetches them in
    its helpers too (as calibrate's functions each did) reads them in more places than it
    starts from, and a helper that a test or another entry point calls could not be handed
    other settings."""
    found = {str(p.relative_to(ROOT)): _fetches(p.read_text()) for p in _product_sources()}
    fetching = {f: n for f, n in found.items() if n}
    for defined in ("toolchain/settings.py", "store/settings.py"):
        fetching.pop(defined, None)
    assert set(fetching) == set(PRODUCT_SETTINGS_ENTRY_POINTS), \
        set(fetching) ^ set(PRODUCT_SETTINGS_ENTRY_POINTS)
    assert {f: n for f, n in fetching.items() if n > 1} == {}


def test_the_fetch_count_sees_every_call() -> None:
    """The count above can fail: a helper's second fetch is a second place."""
    assert _fetches("s = get_settings()\ndef f():\n    return settings.get_farm_settings()\n") \
        == 2


def test_the_input_limits_are_checked_in_one_place() -> None:
    """Only toolchain/limits.py compares a submission with the source limits (the API and the
    input gate both call it); elsewhere they are declared (settings) or keyed (verdict cache)."""
    readers = {str(p.relative_to(ROOT)) for p in _product_sources()
               if re.search(r"max_source_(bytes|lines)", p.read_text())}
    assert readers == {"toolchain/limits.py", "toolchain/settings.py",
                       "toolchain/verdict_cache.py"}, readers


# Core functions that take the settings, and the position at which they may come positionally
# (None: keyword only); a call passing neither (nor **kwargs) fails only when it runs.
TAKES_SETTINGS = {("verify", None): None, ("baselines", "get"): None,
                  ("baselines", "build"): None, ("sandbox", "run"): None,
                  ("harness", "build"): 1, ("syntax", "assemble"): 2,
                  ("syntax", "check_input"): 1, ("object_checks", "check_object"): 2,
                  ("oc", "check_object"): 2, ("sandbox", "sandbox_mode"): 0}


def test_every_call_hands_the_core_its_settings() -> None:
    missing = []
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    for path in (ROOT / name for name in tracked):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            key = (func.id, None) if isinstance(func, ast.Name) else (
                (func.value.id, func.attr) if isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name) else None)
            if key not in TAKES_SETTINGS or any(k.arg in ("settings", None)
                                                for k in node.keywords):
                continue
            position = TAKES_SETTINGS[key]
            if position is None or len(node.args) <= position:
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not missing, f"calls without the settings: {missing}"
