"""The farm's integration fixtures: a PostgreSQL database and a Redis database of their own, real
Celery worker processes, and the API as a uvicorn process, in embedded or farm mode.

PostgreSQL and Redis must be running (scripts/test.sh starts them: scripts/services.sh). Every
test module here is in the xdist group "farm" (`pytestmark = FARM`), so with `--dist loadgroup`
one pytest process owns these servers; where grouping does not happen (pytest-xdist 3.8 cannot
group under pytest 9) each process gets its own: databases, Redis database, queue and worker
names are all specific to the process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from api import process
from store import admin, db
from store.settings import FarmSettings
from toolchain import scratch
from workers.celery_app import make_celery

POSTGRES = os.environ.get("ARMGYM_TEST_POSTGRES",
                          "postgresql+psycopg://armgym:armgym@127.0.0.1:5432/postgres")
REDIS = os.environ.get("ARMGYM_TEST_REDIS", "redis://127.0.0.1:6379")
ADMIN_KEY = "agk_test_admin_key"
USER_KEY = "agk_test_alice_key"
OTHER_KEY = "agk_test_bob_key"
MODES = ("embedded", "farm")
FARM = pytest.mark.xdist_group("farm")
TAG = f"{os.getpid()}"


def database_url(name: str) -> str:
    return POSTGRES.rsplit("/", 1)[0] + "/" + name


def drop_stale_databases() -> list[str]:
    """Drop the armgym_test_<pid>[_...] databases of test sessions that were killed before
    they could drop their own: only those whose pid is no longer running on this host and
    that nobody is connected to (a live session's, or another host's sharing this server,
    has its pid running or a connection open, and is left alone)."""
    admin_engine = create_engine(database_url("postgres"), isolation_level="AUTOCOMMIT")
    dropped = []
    try:
        with admin_engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT datname, (SELECT count(*) FROM pg_stat_activity a "
                "WHERE a.datname = d.datname) FROM pg_database d "
                "WHERE datname LIKE 'armgym\\_test\\_%'")).all()
            for name, connections in rows:
                found = re.fullmatch(r"armgym_test_(\d+)(_\w*)?", name)
                if found and not connections and not scratch.alive(int(found.group(1))):
                    try:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                    except DBAPIError:  # someone connected meanwhile: not stale after all
                        continue
                    dropped.append(name)
    finally:
        admin_engine.dispose()
    return dropped


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("farm-logs")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of this session's own, migrated to head, dropped at the end."""
    url = database_url(f"armgym_test_{TAG}")
    try:
        drop_stale_databases()
        admin.drop(url)
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES} ({exc}); "
                    "start it with ./scripts/services.sh")
    admin.create(url)
    db.upgrade(url)
    yield url
    admin.drop(url)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw9")  # gw0 -> 1, gw1 -> 2, no xdist -> 10
    url = f"{REDIS}/{1 + int(worker.removeprefix('gw')) % 15}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS} ({exc}); start it with "
                    "./scripts/services.sh")
    yield url
    client.flushdb()


def base_env(**extra: str) -> dict[str, str]:
    """Settings every server and worker of the tests shares: keys, a short emulator timeout
    (the endless loops in the mix), quick retries and a short visibility timeout (so a killed
    worker's message comes back within seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in process.FARM_VARIABLES}
    return {**env, "ARMGYM_API_KEYS": f"alice:{USER_KEY},bob:{OTHER_KEY}",
            "ARMGYM_ADMIN_KEY": ADMIN_KEY, "ARMGYM_RUN_TIMEOUT_BASE_S": "1",
            "ARMGYM_MAX_RETRIES": "2", "ARMGYM_RETRY_BACKOFF_S": "0.2",
            "ARMGYM_VISIBILITY_TIMEOUT_S": "6", "ARMGYM_ALLOW_EARLY_REDELIVERY": "1",
            "ARMGYM_QUEUE_NAME": f"armgym-test-{TAG}",
            "ARMGYM_EMBEDDED_WORKERS": "2", **extra}


@pytest.fixture(scope="session")
def farm_env(pg_url: str, redis_url: str) -> dict[str, str]:
    return base_env(ARMGYM_DATABASE_URL=pg_url, ARMGYM_BROKER_URL=redis_url)


@dataclass
class Workers:
    """Celery worker processes, each in its own process group (main process + pool child)."""

    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Each worker's Prometheus endpoint (workers/metrics.py) on 127.0.0.1.
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def node(name: str) -> str:
        """The Celery node name of worker `name`: unique to this test process."""
        return f"{name}-{TAG}"

    def start(self, name: str, concurrency: int = 1) -> None:
        argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                "-n", f"{self.node(name)}@%h", "--concurrency", str(concurrency), "-E",
                "--without-mingle",
                "--without-gossip", "--loglevel", "info"]
        port = self.metrics_ports[name] = process.free_port()
        env = {**self.env, "ARMGYM_WORKER_METRICS_PORT": str(port),
               "ARMGYM_WORKER_METRICS_ADDRESS": "127.0.0.1"}
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(argv, env=env, stdout=log,
                                                stderr=subprocess.STDOUT,
                                                start_new_session=True,
                                                preexec_fn=process.die_with_parent)

    def wait_ready(self, timeout: float = 60) -> None:
        app = make_celery(FarmSettings.from_env(self.env))
        deadline = time.monotonic() + timeout
        want = {self.node(name) for name in self.procs}
        while time.monotonic() < deadline:
            try:
                replies = app.control.ping(timeout=1.0) or []
            except redis.RedisError:  # a Redis the tests just restarted: ask again
                time.sleep(0.5)
                continue
            seen = {next(iter(r)).split("@")[0] for r in replies}
            if want <= seen:
                return
        raise RuntimeError(f"workers {want} not ready; logs in {self.logs}")

    def kill(self, name: str) -> None:
        """SIGKILL the whole worker: its main process and the pool child running a task."""
        proc = self.procs.pop(name)
        self.metrics_ports.pop(name, None)  # its endpoint died with it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()
        self.metrics_ports.clear()


@contextmanager
def wrapped_worker(wrapper: Path, arg: Path, node: str, env: dict[str, str], log: Path,
                   concurrency: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """A Celery worker started through a test wrapper script (which takes `arg` first and then
    celery's own argv), logging to `log`; stopped on exit."""
    argv = [sys.executable, str(wrapper), str(arg), "-A", "workers.celery_app", "worker",
            "-n", f"{node}@%h", "--concurrency", str(concurrency), "--without-mingle",
            "--without-gossip", "--loglevel", "info"]
    with open(log, "ab") as out:
        worker = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=process.die_with_parent)
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()


@pytest.fixture(scope="session")
def celery_workers(farm_env: dict[str, str], logs: Path) -> Iterator[Workers]:
    workers = Workers(farm_env, logs)
    workers.start("w1")
    workers.start("w2")
    workers.wait_ready()
    yield workers
    workers.stop_all()


@dataclass
class Api:
    mode: str
    url: str
    db_url: str
    proc: subprocess.Popen[bytes]

    def client(self, key: str | None = USER_KEY) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=180)

    def engine(self) -> Engine:
        return db.make_engine(self.db_url, pool_size=1)


def start_api(mode: str, tmp: Path, logs: Path, request: pytest.FixtureRequest,
              **extra: str) -> Api:
    """An API process in `mode`; in farm mode it shares the session's database and workers."""
    port = process.free_port()
    if mode == "farm":
        env = {**request.getfixturevalue("farm_env"), **extra}
        request.getfixturevalue("celery_workers")
        url = env["ARMGYM_DATABASE_URL"]
    else:
        env = base_env(ARMGYM_DATA_DIR=str(tmp), **extra)
        url = f"sqlite:///{tmp / 'farm.sqlite'}"
    proc = process.start(env, port, log=logs / f"api-{mode}-{port}.log")
    return Api(mode, f"http://127.0.0.1:{port}", url, proc)


@pytest.fixture(scope="session")
def farm_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                logs: Path) -> Iterator[Api]:
    """The API in farm mode: PostgreSQL, Redis, two Celery worker processes."""
    server = start_api("farm", tmp_path_factory.mktemp("api-farm"), logs, request)
    yield server
    process.stop(server.proc)


@pytest.fixture(scope="session")
def embedded_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    logs: Path) -> Iterator[Api]:
    """The API in embedded mode: SQLite and the in-process pool, nothing else running."""
    server = start_api("embedded", tmp_path_factory.mktemp("api-embedded"), logs, request)
    yield server
    process.stop(server.proc)


@pytest.fixture(scope="session", params=MODES)
def api(request: pytest.FixtureRequest) -> Api:
    """The API in each mode: every test using this runs against both."""
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]


def wait_batch(client: httpx.Client, batch_id: str, timeout: float = 180) -> dict:
    """Long-poll a batch until it is complete; the results in submission order."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/batches/{batch_id}", params={"wait": 30}).json()
        if body["complete"] or time.monotonic() > deadline:
            return body
