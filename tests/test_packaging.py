"""Packaging: `toolchain` is a library that installs with only what it needs (the farm's server
stack is in extras), and its wheel carries every file it reads at run time. Checked by building
the wheel from the working tree and running `armgym prepare` and `armgym verify` on a baseline
from a non-editable install in a fresh venv that can import nothing else: not the checkout, not
fastapi, celery or sqlalchemy.

The fresh venv gets the core's dependencies from this venv (each distribution of their closure
linked into one directory on its path) instead of downloading them again, and a fresh cache, so
the spawn helper, the execution guard and the harness are built from the wheel's own sources
(only the qemu plugin API header, a download and not package data, is copied in)."""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from conftest import HONEST, baseline
from packaging.requirements import Requirement

from deploy import lock
from toolchain.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
# What the verification core may require; everything else is the farm's, in extras.
CORE = {"numpy", "tqdm", "ziglang", "osaca", "pydantic", "pydantic-settings"}
# Cache entries made by the tools alone, reused (each built from a package file is not).
REUSED = ("baselines", "perf-baselines", "mca", "osaca")
SERVER = {"fastapi", "uvicorn", "sqlalchemy", "psycopg", "alembic", "celery", "kombu",
          "tenacity", "limits", "cachetools", "redis", "flower", "prometheus-client",
          "matplotlib", "pyarrow"}


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                         **kw)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{argv}: {out.stdout[-2000:]}{out.stderr[-4000:]}"
    return out


def tracked() -> list[str]:
    """The working tree's files as git sees them (committed or not, ignored ones left out)."""
    out = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO).stdout
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the working tree (a build in place would leave build/
    and *.egg-info behind), without build isolation: setuptools is this venv's."""
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in tracked():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(src)])
    (found,) = dist.glob("armgym_farm-*.whl")
    return found


def requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(zf.read(name))
    return [Requirement(r) for r in meta.get_all("Requires-Dist") or []]


def test_the_core_requires_only_what_it_imports(wheel: Path) -> None:
    plain = {r.name.lower() for r in requires(wheel) if r.marker is None}
    assert plain == CORE, plain
    extras = {r.name.lower() for r in requires(wheel) if r.marker is not None}
    assert extras >= SERVER, SERVER - extras


def test_the_wheel_carries_every_file_the_core_reads(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        inside = set(zf.namelist())
    data = [f for f in tracked() if f.startswith("toolchain/") and not f.endswith(".py")
            and Path(f).name not in ("Dockerfile",)]
    assert {"toolchain/spawn_helper.c", "toolchain/gates/performance/calibration.json"} <= \
        set(data)
    missing = [f for f in data if f not in inside]
    assert not missing, f"package data missing from the wheel: {missing}"
    assert not [n for n in inside if n.startswith(("tests/", "bench/", "build/"))]


def closure_dirs(target: Path) -> None:
    """Link every distribution the core's dependencies need (their installed files' top-level
    entries) into `target`, which the fresh venv puts on its path."""
    with open(REPO / "pyproject.toml", "rb") as f:
        roots = [Requirement(r) for r in tomllib.load(f)["project"]["dependencies"]]
    for name in lock.closure(roots):
        dist = metadata.distribution(name)
        base = Path(str(dist.locate_file("")))
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            if top not in ("..", "__pycache__") and (base / top).exists() and \
                    not (target / top).exists():
                (target / top).symlink_to(base / top)


@pytest.fixture(scope="module")
def fresh(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("fresh")
    venv, deps = root / "venv", root / "deps"
    deps.mkdir()
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)])
    closure_dirs(deps)
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                        "['purelib'])"]).stdout.strip())
    (site / "armgym-core-deps.pth").write_text(f"{deps}\n")
    # A cache the sandbox user can read, holding only what no package file makes: the qemu
    # plugin API header (a download), compiled baselines and cost-model results. The spawn
    # helper, the guard plugin and the harness are built again from the wheel's sources.
    main = get_settings().cache_dir
    cache = Path(tempfile.mkdtemp(prefix="packaging-", dir=main))
    os.chmod(cache, 0o755)
    for name in ("qemu-plugin-api", *REUSED):
        if (main / name).is_dir():
            shutil.copytree(main / name, cache / name, symlinks=True)
    yield {"venv": venv, "cache": cache, "root": root}
    shutil.rmtree(cache, ignore_errors=True)


def in_fresh(fresh: dict[str, Path], *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARMGYM_", "PYTHON"))}
    env |= {"ARMGYM_CACHE_DIR": str(fresh["cache"]), "ARMGYM_VERDICT_CACHE": "0"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                          cwd=fresh["root"], env=env)


def test_a_non_editable_install_verifies_a_baseline(fresh: dict[str, Path]) -> None:
    python, armgym = fresh["venv"] / "bin" / "python", fresh["venv"] / "bin" / "armgym"
    where = in_fresh(fresh, str(python), "-c", "import toolchain; print(toolchain.__file__)")
    assert where.returncode == 0 and str(fresh["venv"]) in where.stdout, where
    for server in ("fastapi", "celery", "sqlalchemy", "psycopg", "matplotlib", "pyarrow"):
        assert in_fresh(fresh, str(python), "-c", f"import {server}").returncode != 0, server
    prepared = in_fresh(fresh, str(armgym), "prepare")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    (fresh["root"] / "kernel.s").write_text(baseline(HONEST))
    out = in_fresh(fresh, str(armgym), "verify", HONEST, "kernel.s", "--seed", "7", "--json")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    verdict = json.loads(out.stdout)
    assert verdict["passed"] and verdict["sandbox"] == "bwrap", verdict
