"""Servers a test starts and stops itself, on free loopback ports: a PostgreSQL cluster of its own
(to stop it under a running API), a Redis, and a real Prometheus (the Debian binary)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api import process


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    for bin_dir in reversed(versions):
        if (bin_dir / name).exists():
            return str(bin_dir / name)
    pytest.fail(f"{name} not found (PostgreSQL server binaries; ./scripts/setup.sh)")


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to the `postgres` user there."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def own_postgres(logs: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fresh PostgreSQL cluster on a free port; yields (SQLAlchemy URL of database `armgym`,
    the server process). Trust authentication on 127.0.0.1 only. Its data lives in a directory
    of its own under /tmp (pytest's are private to root, and the server runs as `postgres`)."""
    tmp = Path(tempfile.mkdtemp(prefix="armgym-pg-"))
    os.chmod(tmp, 0o755)
    data = tmp / "data"
    data.mkdir()
    if os.geteuid() == 0:
        uid = pwd.getpwnam("postgres")
        os.chown(data, uid.pw_uid, uid.pw_gid)
    subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "armgym",
                                 "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True, timeout=120)
    port = process.free_port()
    argv = _as_postgres([_pg_bin("postgres"), "-D", str(data), "-p", str(port),
                         "-c", "listen_addresses=127.0.0.1",
                         "-c", f"unix_socket_directories={data}", "-c", "fsync=off"])
    with open(logs / "postgres.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"],
                         check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"own PostgreSQL did not start; log in {logs / 'postgres.log'}")
        time.sleep(0.2)
    subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "armgym",
                    "armgym"], check=True, timeout=60)
    try:
        yield f"postgresql+psycopg://armgym@127.0.0.1:{port}/armgym", proc
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def own_redis(tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = process.free_port()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=process.die_with_parent)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 30
    import redis

    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.RedisError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("own Redis did not start")
            time.sleep(0.1)
    try:
        yield url, proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Prometheus:
    """The real Prometheus server scraping `targets` every second (job name -> host:port list)."""

    def __init__(self, tmp: Path, targets: dict[str, list[str]],
                 rule_files: list[Path] | None = None) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed (Debian package prometheus; setup.sh)")
        self.port = process.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files or []],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                               for job, hosts in targets.items()],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        argv = [binary, f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.log = tmp / "prometheus.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=process.die_with_parent)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Prometheus did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def query(self, expr: str) -> list[dict[str, Any]]:
        res = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = res.json()
        assert body["status"] == "success", body
        return body["data"]["result"]  # type: ignore[no-any-return]

    def wait_for(self, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Poll an instant query until it returns a series (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.query(expr)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def wait_for_rules(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Every alerting rule once each has been evaluated at least once."""
        deadline = time.monotonic() + timeout
        while True:
            res = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()
            rules = [r for g in res["data"]["groups"] for r in g["rules"]]
            if (rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules)
                    and all(r.get("evaluationTime", 0) > 0 for r in rules)) \
                    or time.monotonic() > deadline:
                return rules
            time.sleep(0.5)

    def targets(self) -> list[dict[str, Any]]:
        res = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()
        return res["data"]["activeTargets"]  # type: ignore[no-any-return]

    def close(self) -> None:
        stop(self.proc)


def host_port(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    return f"{parsed.hostname}:{parsed.port}"


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1)[:3000]
