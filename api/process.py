"""Run the API as a separate process (uvicorn) and wait until it answers: used by the demo
command and by the integration tests, which talk to it over real HTTP."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

FARM_VARIABLES = ("ARMGYM_DATABASE_URL", "ARMGYM_BROKER_URL")
# uvicorn's HTTP parser wherever the API is started (deploy/entrypoints.py, scripts/farm.sh
# spell it out; tests/test_deploy.py checks they agree): httptools parses a request in a
# fraction of h11's time, which was a third of the server's time on a duplicate /step.
HTTP = ("--http", "httptools")


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for a child that must not outlive whoever started it: a demo or a test run
    that is killed (Ctrl-C twice, a CI timeout) would otherwise leave its servers running and
    holding their ports. Linux only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def embedded_env(data_dir: str | Path, **extra: str) -> dict[str, str]:
    """The environment of an embedded API: no broker or database configured."""
    env = {k: v for k, v in os.environ.items() if k not in FARM_VARIABLES}
    return {**env, "ARMGYM_DATA_DIR": str(data_dir), **extra}


def start(env: Mapping[str, str], port: int, log: Path | None = None,
          timeout: float = 60.0, log_level: str = "warning") -> subprocess.Popen[bytes]:
    """Start `uvicorn --factory api.app:create_app` and return once GET /health answers."""
    argv = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app",
            *HTTP, "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
    with open(log or os.devnull, "ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API exited with {proc.returncode}; log: {log or 'none'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code in (200, 503):
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"API did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (uvicorn shuts down cleanly), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
