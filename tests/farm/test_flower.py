"""Flower, started the way scripts/farm.sh starts it, lists the running Celery workers through
its own HTTP API."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from api import process

from .conftest import FARM, Workers

pytestmark = FARM


def test_flower_api_lists_the_workers(celery_workers: Workers, farm_env: dict[str, str],
                                      logs: Path) -> None:
    port = process.free_port()
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower",
            "--address=127.0.0.1", f"--port={port}"]
    env = {**farm_env, "FLOWER_UNAUTHENTICATED_API": "true"}
    with open(logs / "flower.log", "ab") as log:
        flower = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=process.die_with_parent)
    try:
        names: set[str] = set()
        want = {celery_workers.node("w1"), celery_workers.node("w2")}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not want <= names:
            try:
                res = httpx.get(f"http://127.0.0.1:{port}/api/workers", timeout=10)
                if res.status_code == 200:
                    names = {name.split("@")[0] for name in res.json()}
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert want <= names, f"Flower saw {names}"
    finally:
        flower.terminate()
        flower.wait(20)


def test_flower_forgets_a_worker_that_went_away(celery_workers: Workers,
                                               farm_env: dict[str, str], logs: Path) -> None:
    """Flower as the deployment starts it (deploy.entrypoints, --purge_offline_workers) drops a
    killed worker's flower_worker_* series once it is offline for the purge time, so a
    scale-down leaves no "worker offline" behind; here with the purge time shortened to 2 s."""
    from deploy import entrypoints

    argv = entrypoints.command("flower")
    assert f"--purge_offline_workers={entrypoints.FLOWER_PURGE_OFFLINE_S}" in argv
    port = process.free_port()
    argv = [a for a in argv if not a.startswith(("--address", "--port", "--purge"))]
    argv += ["--address=127.0.0.1", f"--port={port}", "--purge_offline_workers=2"]
    celery_workers.start("gone")
    node = celery_workers.node("gone")
    with open(logs / "flower-purge.log", "ab") as log:
        flower = subprocess.Popen(argv, env=farm_env, stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=process.die_with_parent)

    def online() -> set[str]:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        except httpx.TransportError:
            return set()
        return {line.split('worker="')[1].split("@")[0] for line in text.splitlines()
                if line.startswith("flower_worker_online{")}

    try:
        deadline = time.monotonic() + 60
        while node not in online():
            assert time.monotonic() < deadline, "Flower never saw the worker"
            time.sleep(0.5)
        celery_workers.kill("gone")
        deadline = time.monotonic() + 60
        while node in online():
            assert time.monotonic() < deadline, "Flower kept the killed worker's series"
            time.sleep(0.5)
        assert celery_workers.node("w1") in online()  # the living stay
    finally:
        flower.terminate()
        flower.wait(20)
