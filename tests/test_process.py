"""Children started for a demo or a test run die with their starter (api/process.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

STARTER = """
import subprocess, sys
from api import process
child = subprocess.Popen(["sleep", "60"], preexec_fn=process.die_with_parent)
print(child.pid, flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_child_dies_when_its_starter_is_killed() -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    child = int(starter.stdout.readline())
    try:
        assert _alive(child)
        starter.kill()
        starter.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the child outlived its starter"
    finally:
        if _alive(child):
            os.kill(child, 9)
