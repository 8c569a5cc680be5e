"""Fault tests: a whole farm (the API, a Celery worker with two pool processes) on a PostgreSQL
cluster and a Redis server of this test process's own, which the tests kill and restart.

Nothing here touches the shared servers: the cluster is initdb'ed into a temporary directory and
both listen on free loopback ports, picked once per test process and kept across the restarts
(a server left behind by an interrupted run holds its own port, not the next run's: the Redis
dies with its parent, and a cluster whose test process is gone is stopped at the next start).
Every wait is bounded. Each test adds a row to the fault matrix printed at the end of the
run (and written to $ARMGYM_FAULT_MATRIX as JSON lines when that is set).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from farm.conftest import USER_KEY, Workers, base_env
from sqlalchemy import text

from api import process
from store import admin, db
from toolchain import scratch

from .matrix import MATRIX_PROPERTY

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
CLUSTER_PREFIX = "armgym-faults-pg-"


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql "
                    "(./scripts/setup.sh installs them)")
    return Path(found[-1])


class Postgres:
    """A throwaway cluster: trust authentication on loopback, no fsync (it is thrown away)."""

    def __init__(self, root: Path, port: int, init: bool = True) -> None:
        self.bin, self.root, self.port = _pg_bin(), root, port
        self.data, self.log = root / "data", root / "server.log"
        self.user = "postgres" if os.getuid() == 0 else None  # initdb refuses to run as root
        if not init:
            return
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "armgym", "--auth=trust", "-N",
                  "--no-instructions")

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        argv = [str(self.bin / tool), *args]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        subprocess.run(argv, check=True, timeout=timeout, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://armgym@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                  "-t", "60", "start")

    @classmethod
    def attach(cls, root: Path) -> Postgres:
        """An existing cluster (its port is of no interest: pg_ctl finds it by directory)."""
        return cls(root, 0, init=False)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "restart")


class Redis:
    """redis-server without persistence: a restart loses every message it held."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no"], stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=process.die_with_parent)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private Redis did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def stop_orphaned_clusters() -> list[Path]:
    """Stop and remove the clusters of earlier test processes that are gone (pg_ctl daemonizes
    the server, so it does not die with its parent). A cluster's directory names its owner."""
    stopped = []
    for root in Path(tempfile.gettempdir()).glob(f"{CLUSTER_PREFIX}*"):
        try:
            owner = int(root.name.removeprefix(CLUSTER_PREFIX).split("-")[0])
        except ValueError:
            continue
        if scratch.alive(owner):
            continue
        if (root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                Postgres.attach(root).stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)
        stopped.append(root)
    return stopped


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Postgres, Redis]]:
    stop_orphaned_clusters()
    root = Path(tempfile.mkdtemp(prefix=f"{CLUSTER_PREFIX}{os.getpid()}-{WORKER}-"))
    pg = Postgres(root, process.free_port())
    pg.start()
    rd = Redis(process.free_port(), tmp_path_factory.mktemp("redis") / "redis.log")
    rd.start()
    yield pg, rd
    rd.kill()
    try:
        pg.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# Short leases and sweeps (seconds, not minutes) so recovery fits a test; long enough task
# limits that a 30 s database outage is waited out inside one delivery.
FAULT_SETTINGS = {
    "ARMGYM_SWEEP_INTERVAL_S": "1", "ARMGYM_SWEEP_GRACE_S": "5",
    "ARMGYM_TASK_SOFT_TIME_LIMIT_S": "60", "ARMGYM_TASK_TIME_LIMIT_S": "70",
    "ARMGYM_VISIBILITY_TIMEOUT_S": "10", "ARMGYM_ALLOW_EARLY_REDELIVERY": "1",
    "ARMGYM_STORE_RETRY_MAX_WAIT_S": "2",
    "ARMGYM_VERDICT_CACHE": "0", "ARMGYM_RATE_LIMIT_PER_S": "0", "ARMGYM_POLL_INTERVAL_S": "0.5",
}


@dataclass
class Farm:
    pg: Postgres
    redis: Redis
    env: dict[str, str]
    logs: Path
    workers: Workers
    apis: list[subprocess.Popen[bytes]] = field(default_factory=list)
    url: str = ""

    def start_api(self, **extra: str) -> str:
        port = process.free_port()
        self.apis.append(process.start({**self.env, **extra}, port,
                                       log=self.logs / f"api-{port}.log"))
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def client(self, url: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=url or self.url, headers={"X-API-Key": USER_KEY},
                            timeout=60)

    def worker_pids(self, name: str = "w") -> tuple[int, list[int]]:
        """The worker's main process and its pool processes."""
        main = self.workers.procs[name].pid
        children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
        return main, [int(c) for c in children]

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = db.make_engine(self.env["ARMGYM_DATABASE_URL"], pool_size=1)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params).all())
        finally:
            engine.dispose()

    def stop(self) -> None:
        for proc in self.apis:
            process.stop(proc)
        self.workers.stop_all()


@pytest.fixture
def farm(servers: tuple[Postgres, Redis], request: pytest.FixtureRequest,
         tmp_path: Path) -> Iterator[Farm]:
    pg, rd = servers
    name = f"faults_{request.node.name[5:40]}".lower().replace("[", "_").replace("]", "")
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    admin.drop(url)
    admin.create(url)
    db.upgrade(url)
    redis.Redis(port=rd.port).flushall()
    env = base_env(ARMGYM_DATABASE_URL=url, ARMGYM_BROKER_URL=rd.url,
                   ARMGYM_QUEUE_NAME=f"faults-{WORKER}", **FAULT_SETTINGS)
    logs = tmp_path / "logs"
    logs.mkdir()
    farm = Farm(pg, rd, env, logs, Workers(env, logs))
    try:
        farm.workers.start("w", concurrency=2)
        farm.workers.wait_ready()
        yield farm
    finally:
        farm.stop()
        for line in _tail(logs):
            print(line)
        with contextlib.suppress(Exception):  # the cluster may be down after a failed test
            admin.drop(url)


def _tail(logs: Path, lines: int = 15) -> list[str]:
    out = []
    for path in sorted(logs.glob("*.log")):
        out.append(f"--- {path.name}")
        out += path.read_text(errors="replace").splitlines()[-lines:]
    return out


def record(request: pytest.FixtureRequest, row: dict[str, Any]) -> None:
    """A row of the fault matrix: carried to the summary with the test's report (xdist runs
    the test elsewhere), and appended to $ARMGYM_FAULT_MATRIX when that is set."""
    request.node.user_properties.append((MATRIX_PROPERTY, row))
    target = os.environ.get("ARMGYM_FAULT_MATRIX")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps(row) + "\n")


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
