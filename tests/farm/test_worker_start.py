"""A starting worker prepares the verifier before it takes work (toolchain/prepare.py), and
refuses to start where it cannot, instead of failing every attempt as infra_error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from farm.conftest import TAG, Workers
from toolchain import sandbox
from toolchain.execution import guard
from toolchain.settings import get_settings


def test_worker_builds_the_guard_before_it_takes_work(farm_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    # A cache of its own holding only the plugin header (nothing is downloaded here) and the
    # spawn helper (a static musl build: in a new venv, zig builds its libc first, minutes).
    cache, shared = tmp_path / "cache", get_settings().cache_dir
    guard.prepare(shared)
    shutil.copytree(guard.header_dir(shared), guard.header_dir(cache))
    helper = sandbox.spawn_helper(shared)
    if helper is not None:
        shutil.copytree(Path(helper).parent, cache / Path(helper).parent.relative_to(shared))
    env = {**farm_env, "ARMGYM_CACHE_DIR": str(cache), "ARMGYM_QUEUE_NAME": f"prep-{TAG}"}
    workers = Workers(env, tmp_path)
    workers.start("prep")
    try:
        workers.wait_ready(180)  # answers once its init hooks are done; no task was sent
        assert list((cache / "qemu-guard").glob("*/guard.so")), "guard not built at start"
    finally:
        workers.stop_all()


def test_worker_that_cannot_prepare_refuses_to_start(farm_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    env = {**farm_env, "ARMGYM_CACHE_DIR": str(not_a_dir / "cache"),
           "ARMGYM_QUEUE_NAME": f"prep-bad-{TAG}"}
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            "-n", f"prep-bad-{TAG}@%h", "--concurrency", "1", "--without-mingle",
            "--without-gossip"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 78, (proc.returncode, proc.stderr[-2000:])
    assert "cannot run on this machine" in proc.stderr and str(not_a_dir) in proc.stderr
