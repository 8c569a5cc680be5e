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
        flower = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
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
