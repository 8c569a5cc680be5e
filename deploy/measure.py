"""Measure a real Celery worker for the sizing figures in docs/operations.md: start the farm the
way the containers do (`deploy.entrypoints` migrate, worker, api) on this machine's PostgreSQL
and Redis, submit distinct realistic attempts through the API, and sample the resident memory of
the worker's processes (main, pool children, and the tools they run) while it verifies them.

  .venv/bin/python -m deploy.measure [--attempts 200] [--concurrency 2] [--variants 16]

Needs PostgreSQL and Redis (./scripts/services.sh); uses a database and a queue of its own and
drops them afterwards. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from api import process
from store import admin
from store.keys import new_plaintext
from toolchain import baselines, kernels
from toolchain.demo import CASES
from toolchain.settings import Settings, get_settings

from .entrypoints import command

# The server the bench's databases are made on (a role that may create databases);
# $ARMGYM_BENCH_POSTGRES overrides it, without the database name.
POSTGRES = os.environ.get("ARMGYM_BENCH_POSTGRES", "postgresql+psycopg://armgym:armgym@127.0.0.1:5432"
                          ).rstrip("/") + "/armgym_measure_{pid}"
REDIS = "redis://127.0.0.1:6379/0"


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
        return found
    except OSError:
        return []


class Sampler(threading.Thread):
    """RSS of the worker's main process, each pool process, and the largest tool process (as,
    ld, qemu, llvm-mca... run by a pool process), every `period` seconds. It runs on the
    machine it measures: at 0.1 s its walks of the worker's process tree (the pool processes'
    threads, reference servers and tool runs) took 6% of a core from the farm it timed; at
    0.5 s a fifth of that. A tool process's peak is a sample either way (most live a few
    tens of milliseconds)."""

    def __init__(self, main_pid: int, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.main_pid, self.period = main_pid, period
        self.main: list[float] = []
        self.pool: dict[int, list[float]] = {}
        self.tools_max = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.main.append(rss_mib(self.main_pid))
            for child in children(self.main_pid):
                self.pool.setdefault(child, []).append(rss_mib(child))
                stack = children(child)
                while stack:
                    tool = stack.pop()
                    self.tools_max = max(self.tools_max, rss_mib(tool))
                    stack += children(tool)
            time.sleep(self.period)


def attempts(n: int, variants: int, settings: Settings) -> list[dict[str, object]]:
    """Distinct attempts (own seed each): honest clang and gcc baselines over a spread of
    variants, which run every gate, and one in five from the demo's broken kernels."""
    suite = kernels.filter_variants(None)
    spread = suite[:: max(1, len(suite) // variants)][:variants]
    broken = [c for c in CASES if c.expect != "pass"]
    out = []
    for i in range(n):
        if i % 5 == 4:
            case = broken[(i // 5) % len(broken)]
            variant, text = case.variant_id, case.make(settings)
        else:
            variant = spread[i % len(spread)].id
            compiler = ("clang", "gcc")[i % 2]
            text = baselines.get(kernels.get(variant), compiler, settings=settings).assembly
        out.append({"variant_id": variant, "assembly": text, "seed": 1000 + i,
                    "idempotency_key": f"measure-{i}"})
    return out


def start_role(role: str, env: dict[str, str], logs: Path, *extra: str
               ) -> subprocess.Popen[bytes]:
    """One farm process as its container would run it (`deploy.entrypoints <role>`), its
    output in logs/<role>.log."""
    with open(logs / f"{role}.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "deploy.entrypoints", role, *extra],
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def start_farm(env: dict[str, str], logs: Path, port: int, procs: list[subprocess.Popen[bytes]]
               ) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Migrate, start a Celery worker and the API (appended to `procs`, for `stop_all`), and
    return (worker, api) once both answer their readiness checks."""
    subprocess.run(command("migrate"), env=env, check=True, capture_output=True)
    worker = start_role("worker", env, logs)
    procs.append(worker)
    api = start_role("api", env, logs, "--host", "127.0.0.1", "--port", str(port))
    procs.append(api)
    for what, extra in (("api", ["--port", str(port)]), ("worker", [])):
        subprocess.run([sys.executable, "-m", "deploy.entrypoints", "check", what,
                        "--wait", "90", *extra], env=env, check=True)
    return worker, api


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to all, then SIGKILL to any still running after 30 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def summary(values: list[float]) -> dict[str, float]:
    return {"first": round(values[0], 1), "last": round(values[-1], 1),
            "max": round(max(values), 1)} if values else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.measure", description=__doc__)
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--variants", type=int, default=16)
    args = parser.parse_args(argv)

    db_url = POSTGRES.format(pid=os.getpid())
    key, port = new_plaintext(), process.free_port()
    logs = Path(tempfile.mkdtemp(prefix="armgym-measure-"))
    env = {**os.environ, "ARMGYM_DATABASE_URL": db_url, "ARMGYM_BROKER_URL": REDIS,
           "ARMGYM_QUEUE_NAME": f"armgym-measure-{os.getpid()}", "ARMGYM_API_KEYS": key,
           "ARMGYM_WORKER_CONCURRENCY": str(args.concurrency)}
    admin.drop(db_url)
    admin.create(db_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        worker, api = start_farm(env, logs, port, procs)
        sampler = Sampler(worker.pid)
        sampler.start()
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=180,
                              headers={"Authorization": f"Bearer {key}"})
        started = time.perf_counter()
        batch = client.post("/batches", json={"run_id": "measure", "attempts":
                                              attempts(args.attempts, args.variants,
                                                       get_settings())})
        batch.raise_for_status()
        batch_id = batch.json()["batch_id"]
        while not (body := client.get(f"/batches/{batch_id}", params={"wait": 60}).json()
                   )["complete"]:
            pass
        wall = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        kinds: dict[str, int] = {}
        for res in body["results"]:
            kind = "pass" if res["passed"] else str(res["error_kind"])
            kinds[kind] = kinds.get(kind, 0) + 1
        pool = [summary(v) for v in sampler.pool.values() if len(v) > 5]
        print(json.dumps({
            "attempts": args.attempts, "concurrency": args.concurrency, "cpus": os.cpu_count(),
            "wall_s": round(wall, 1), "per_s": round(args.attempts / wall, 2),
            "outcomes": kinds,
            "worker_main_rss_mib": summary(sampler.main),
            "pool_process_rss_mib": pool,
            "largest_tool_process_rss_mib": round(sampler.tools_max, 1),
            "api_rss_mib": round(rss_mib(api.pid), 1),
        }, indent=2))
        return 0
    finally:
        stop_all(procs)
        admin.drop(db_url)


if __name__ == "__main__":
    raise SystemExit(main())
