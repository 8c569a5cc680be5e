"""Container entry points: one role per service of docker-compose.yml and k8s/.

Each role execs the command the farm already has (uvicorn on `api.app:create_app`, `celery -A
workers.celery_app worker`, `celery ... flower`, `alembic upgrade head`) after the start-up work
a container needs and a plain process does not: copying the baselines baked into the image into
the writable cache, sizing the worker pool from the container's CPU quota (Celery would count
the host's cores), and refusing to start with settings that cannot work or a worker that
cannot sandbox (it would only turn every attempt into infra_error). `check` is the health check
both orchestrators run.

  python -m deploy.entrypoints api|worker|flower [options passed on to uvicorn / celery]
  python -m deploy.entrypoints migrate
  python -m deploy.entrypoints check api|worker|flower|migrated [--port N] [--wait S]
  python -m deploy.entrypoints ROLE --dry-run [...]    print the command instead of running it
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from store.settings import FarmSettings

REPO = Path(__file__).resolve().parent.parent
API_PORT = 8000
FLOWER_PORT = 5555
WORKER_METRICS_PORT = 9808  # ARMGYM_WORKER_METRICS_PORT in compose and k8s/base/config.env
# Flower forgets a worker (and its flower_worker_* series) this long after it went offline, so a
# scale-down does not leave "worker offline" alerts behind.
FLOWER_PURGE_OFFLINE_S = 300
WORKER_NODE = "worker@%h"  # Celery expands %h to the host (pod / container) name
EX_CONFIG = 78  # sysexits.h: a configuration error, which restarting will not fix

# ARMGYM_* variables read here, not by FarmSettings: they configure the container, not the farm.
DEPLOY_VARIABLES = {
    "ARMGYM_CACHE_SEED": "baselines baked into the image, copied into ARMGYM_CACHE_DIR at start",
    "ARMGYM_WORKER_CONCURRENCY": "pool processes per worker container (default: its CPU quota "
                                 "plus one)",
}


class ContainerSettings(BaseSettings):
    """The container's own variables (DEPLOY_VARIABLES, and Flower's URL prefix), validated."""

    model_config = SettingsConfigDict(env_prefix="ARMGYM_", frozen=True, extra="ignore")
    cache_seed: str = ""
    worker_concurrency: int | None = Field(None, ge=1)
    flower_url_prefix: str = Field("", validation_alias="FLOWER_URL_PREFIX")


def container() -> ContainerSettings:
    return ContainerSettings()


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cpus


def seed_cache(seed: Path, cache: Path) -> int:
    """Copy every cache entry baked into the image (`<kind>/<key>/`, e.g. one baseline set per
    compiler, flags and version) that the cache lacks; return how many were copied. Each entry
    is published by one rename, so concurrent starts sharing a cache are harmless."""
    copied = 0
    for src in sorted(p for p in seed.glob("*/*") if p.is_dir()):
        dest = cache / src.parent.name / src.name
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".seed-", dir=dest.parent))
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, dest)
            copied += 1
        except OSError:  # another process published it first
            shutil.rmtree(tmp, ignore_errors=True)
    return copied


def _validated_settings() -> FarmSettings:
    """The farm's settings, built once for the role's start-up steps; exit with EX_CONFIG,
    saying which variable is wrong, when they cannot work: a service that started anyway would
    fail on its first request instead."""
    from pydantic import ValidationError

    from store.settings import get_farm_settings
    from toolchain.settings import SettingsError

    try:
        farm = get_farm_settings()
        container()
    except (SettingsError, ValidationError) as exc:
        print(f"entrypoint: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
    return farm


def _seed_from_image(farm: FarmSettings) -> None:
    seed = container().cache_seed
    if seed and Path(seed).is_dir():
        copied = seed_cache(Path(seed), farm.core.cache_dir)
        if copied:
            print(f"entrypoint: seeded {copied} cache entries from {seed}", file=sys.stderr)


def _require_sandbox(farm: FarmSettings) -> None:
    """Exit with EX_CONFIG when no sandbox can run, so the orchestrator shows a failing worker
    instead of a healthy one that answers every attempt with infra_error."""
    from toolchain import sandbox
    from toolchain.errors import InfraError

    try:
        mode = sandbox.sandbox_mode(farm.core)
    except InfraError as exc:
        print(f"entrypoint: worker refuses to start: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
    print(f"entrypoint: sandbox mode {mode}", file=sys.stderr)


def _api(extra: Sequence[str]) -> list[str]:
    # --http as api.process.HTTP (which imports httpx; this module must not)
    return ["-m", "uvicorn", "--factory", "api.app:create_app", "--http", "httptools",
            "--host", "0.0.0.0", "--port", str(API_PORT), "--timeout-graceful-shutdown", "30",
            *extra]


def default_concurrency() -> int:
    """Pool processes for this container: one more than its CPUs. A verification waits as well
    as computes (its tools' start-up, the database between two attempts, the next message), and
    with one process per CPU those waits left a CPU idle: on 2 CPUs 3 processes verified the
    bench mix x1.22 faster than 2 in alternated farms, 4 no faster than 3 (docs/benchmarks.md)."""
    return available_cpus() + 1


def _worker(extra: Sequence[str]) -> list[str]:
    concurrency = str(container().worker_concurrency or default_concurrency())
    return ["-m", "celery", "-A", "workers.celery_app", "worker", "-n", WORKER_NODE,
            "--concurrency", concurrency, "-E", "--without-mingle", "--without-gossip",
            "--loglevel", "INFO", *extra]


def _flower(extra: Sequence[str]) -> list[str]:
    return ["-m", "celery", "-A", "workers.celery_app", "flower", "--address=0.0.0.0",
            f"--port={FLOWER_PORT}", f"--purge_offline_workers={FLOWER_PURGE_OFFLINE_S}", *extra]


def _migrate(extra: Sequence[str]) -> list[str]:
    return ["-m", "alembic", "-c", str(REPO / "alembic.ini"), "upgrade", "head", *extra]


# role -> (start-up work after the settings are validated, the command's arguments after the
# interpreter)
ROLES: dict[str, tuple[tuple[Callable[[FarmSettings], None], ...],
                       Callable[[Sequence[str]], list[str]]]] = {
    "api": ((_seed_from_image,), _api),
    "worker": ((_seed_from_image, _require_sandbox), _worker),
    "flower": ((), _flower),
    "migrate": ((), _migrate),
}


def command(role: str, extra: Sequence[str] = ()) -> list[str]:
    """The full command a role runs (what --dry-run prints)."""
    return [sys.executable, *ROLES[role][1](extra)]


# --------------------------------------------------------------------------- health checks


def _http_ok(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.status == 200, f"{url}: {res.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code} {exc.read(300).decode(errors='replace')}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def _check_api(port: int, timeout: float) -> tuple[bool, str]:
    """GET /health: 200 only when the database and the broker answer."""
    return _http_ok(f"http://127.0.0.1:{port or API_PORT}/health", timeout)


def _check_flower(port: int, timeout: float) -> tuple[bool, str]:
    prefix = container().flower_url_prefix.strip("/")
    path = f"/{prefix}/healthcheck" if prefix else "/healthcheck"
    return _http_ok(f"http://127.0.0.1:{port or FLOWER_PORT}{path}", timeout)


def _check_worker(_port: int, timeout: float) -> tuple[bool, str]:
    """Celery ping of this host's worker through the broker: the main process answers while its
    pool is busy, so a long verification does not fail the probe."""
    from workers.celery_app import app

    node = WORKER_NODE.replace("%h", socket.gethostname())
    replies = app.control.ping(destination=[node], timeout=timeout) or []
    return bool(replies), f"{node}: {replies or 'no reply'}"


def _check_migrated(_port: int, timeout: float) -> tuple[bool, str]:
    """The database is at the newest Alembic revision (init containers wait for this, the way
    compose waits for the migrate service to complete)."""
    from alembic.script import ScriptDirectory

    from store import db
    from store.settings import FarmSettings

    url = FarmSettings.from_env().sqlalchemy_url  # a probe: fresh, never cached
    head = ScriptDirectory.from_config(db.alembic_config(url)).get_current_head()
    engine = db.make_engine(url, pool_size=1)
    try:
        ok, current = db.reachable(engine)
    finally:
        engine.dispose()
    return ok and current == head, f"database at {current}, head is {head}"


CHECKS: dict[str, Callable[[int, float], tuple[bool, str]]] = {
    "api": _check_api, "worker": _check_worker, "flower": _check_flower,
    "migrated": _check_migrated,
}


def check(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.entrypoints check",
                                     allow_abbrev=False)
    parser.add_argument("what", choices=sorted(CHECKS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--wait", type=float, default=0.0,
                        help="retry for this many seconds before failing")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            ok, detail = CHECKS[args.what](args.port, args.timeout)
        except Exception as exc:  # a probe reports, it does not crash with a traceback
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        if ok or time.monotonic() >= deadline:
            print(f"{args.what}: {'ok' if ok else 'FAILED'} ({detail})",
                  file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    role, rest = args[0], args[1:]
    if role == "check":
        return check(rest)
    if role not in ROLES:
        print(f"unknown role {role!r}; one of {', '.join([*ROLES, 'check'])}", file=sys.stderr)
        return 2
    dry_run = "--dry-run" in rest
    rest = [a for a in rest if a != "--dry-run"]
    argv_out = command(role, rest)
    if dry_run:
        print(shlex.join(argv_out))
        return 0
    if "--help" not in rest:
        farm = _validated_settings()
        for step in ROLES[role][0]:
            step(farm)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv_out)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
