"""Faults with 512 attempts in flight: every attempt is stored exactly once, with the verdict it
must get, within RECOVER_S of the fault ending; workers carry on without a restart (except the
one whose main process was killed, which a supervisor restarts).

The attempts are small but real, each through the whole pipeline (claim, verify, store the
verdict and its gate rows): every one is distinct (the verdict cache is off, and each text
differs); 1/64 are honest compiler output that must pass, 1/64 a kernel that returns at once
(wrong_output, through the emulator), a quarter hostile input that GNU as or the object checks
refuse (in the sandbox), the rest refused by the source scan (forbidden directives). That keeps
a test's verification work to seconds, so what is measured is the farm's recovery.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from farm.mix import HOSTILE, VARIANTS, Case, asm, honest

from api import process

from .conftest import CLUSTER_PREFIX, Farm, Postgres, kill, record, stop_orphaned_clusters

pytestmark = pytest.mark.xdist_group("faults")
N = 512
FAULT_AT = 64  # inject the fault once this many are done
RECOVER_S = 300.0  # stated bound: every attempt done this long after the fault ended (busy machine)
ASSEMBLED = [h for h in HOSTILE if h[2][0] in ("object_rejected", "assemble_error")]
SCANNED = [h for h in HOSTILE if h[2] == ("forbidden_directive",)]


def cases(tag: str, n: int = N) -> list[Case]:
    out = []
    for i in range(n):
        variant, mark = VARIANTS[i % len(VARIANTS)], f"\n// {tag} {i}\n"
        if i % 64 == 0:
            compiler = "gcc" if i % 128 else "clang"
            out.append(Case(f"{compiler} -O3", variant, honest(variant, compiler) + mark,
                            ("pass",)))
        elif i % 64 == 1:
            out.append(Case("returns at once", variant, asm("    ret") + mark, ("wrong_output",)))
        else:
            pool = ASSEMBLED if i % 4 == 2 else SCANNED
            label, text, expect = pool[i // 4 % len(pool)]
            out.append(Case(label, variant, text + mark, expect))
    return out


def body(tag: str, batch: list[Case]) -> dict[str, Any]:
    return {"run_id": f"faults-{tag}", "idempotency_key": f"batch-{tag}",
            "attempts": [{"variant_id": c.variant_id, "assembly": c.assembly,
                          "idempotency_key": f"{tag}-{i}"} for i, c in enumerate(batch)]}


def progress(farm: Farm, batch_id: str) -> int | None:
    """Attempts done so far; None while the API cannot answer (its database is down)."""
    try:
        with farm.client() as client:
            reply = client.get(f"/batches/{batch_id}", params={"results": "false"}, timeout=10)
    except httpx.TransportError:
        return None
    if reply.status_code == 503:
        assert "Retry-After" in reply.headers
        return None
    assert reply.status_code == 200, reply.text
    return int(reply.json()["done"])


def wait_done(farm: Farm, batch_id: str, at_least: int, timeout: float) -> float:
    """Seconds until `at_least` attempts are done; fails after `timeout`."""
    start = time.monotonic()
    done = None
    while time.monotonic() - start < timeout:
        done = progress(farm, batch_id)
        if done is not None and done >= at_least:
            return time.monotonic() - start
        time.sleep(0.5)
    pytest.fail(f"{done}/{at_least} done after {timeout} s; logs in {farm.logs}")


def submit(farm: Farm, tag: str, batch: list[Case]) -> str:
    with farm.client() as client:
        reply = client.post("/batches", json=body(tag, batch))
    assert reply.status_code == 202, reply.text
    return str(reply.json()["batch_id"])


def check(farm: Farm, request: pytest.FixtureRequest, tag: str, batch: list[Case],
          fault: str, recover_s: float, total_s: float) -> None:
    """Exactly one stored attempt per submitted one, each done with the verdict it must get,
    no infra_error, gate results stored once; then the row of the matrix."""
    rows = farm.query(
        "SELECT idempotency_key, status, error_kind, passed, tries, verdict IS NOT NULL, "
        "(SELECT count(*) FROM gate_results g WHERE g.attempt_id = a.id), "
        "json_array_length((verdict->'gates')::json) "
        "FROM attempts a WHERE run_id = :run", run=f"faults-{tag}")
    keys = [r[0] for r in rows]
    by_key = {r[0]: r for r in rows}
    assert len(keys) == len(set(keys)) == N, (len(keys), len(set(keys)))
    wrong = []
    for i, case in enumerate(batch):
        key, status, kind, passed, _tries, has_verdict, gates, want_gates = by_key[f"{tag}-{i}"]
        outcome = "pass" if passed else kind
        if status != "done" or not has_verdict or outcome not in case.expect \
                or gates != want_gates:
            wrong.append((key, case.label, status, outcome, gates, want_gates))
    assert not wrong, wrong[:10]
    infra = sum(1 for r in rows if r[2] == "infra_error")
    assert infra == 0
    record(request, {"fault": fault, "attempts": N, "stored": len(rows),
                     "done": sum(1 for r in rows if r[1] == "done"),
                     "duplicates": len(keys) - len(set(keys)), "infra_error": infra,
                     "reruns": sum(r[4] - 1 for r in rows if r[4] > 1),
                     "recover_s": round(recover_s, 1), "total_s": round(total_s, 1)})


def run_fault(farm: Farm, request: pytest.FixtureRequest, tag: str, fault: str,
              inject: Callable[[], None], **api_env: str) -> None:
    """Submit 512, inject the fault after FAULT_AT are done, wait for all, check."""
    batch = cases(tag)
    farm.start_api(**api_env)
    start = time.monotonic()
    batch_id = submit(farm, tag, batch)
    wait_done(farm, batch_id, FAULT_AT, 120)
    inject()
    ended = time.monotonic()
    wait_done(farm, batch_id, N, RECOVER_S)
    check(farm, request, tag, batch, fault, time.monotonic() - ended, time.monotonic() - start)


def still_serving(farm: Farm, tag: str, n: int = 16) -> None:
    """A new batch after the fault is verified by the same workers (none was restarted)."""
    batch = cases(tag, n)
    batch_id = submit(farm, tag, batch)
    wait_done(farm, batch_id, n, 90)


def test_no_fault(farm: Farm, request: pytest.FixtureRequest) -> None:
    run_fault(farm, request, "none", "none", lambda: None)


def test_pool_process_killed(farm: Farm, request: pytest.FixtureRequest) -> None:
    def inject() -> None:
        _, children = farm.worker_pids()
        kill(children[0])

    run_fault(farm, request, "pool", "SIGKILL of a pool process", inject)
    still_serving(farm, "pool-after")


def test_pool_process_killed_mid_chunk(farm: Farm, request: pytest.FixtureRequest) -> None:
    """Eight attempts per message: the killed process held one message, some of its attempts
    stored, one running, the rest not started. The message comes back (the process's death
    rejects it, or the visibility timeout restores it) and the redelivery skips what is done,
    takes over the running one and verifies the rest; `check` sees each stored once. Meanwhile
    the sweeper leaves the unstarted ones alone: the broker reports every id of a message."""
    def inject() -> None:
        _, children = farm.worker_pids()
        kill(children[0])

    run_fault(farm, request, "chunk", "SIGKILL of a pool process, 8 attempts per message",
              inject, ARMGYM_DISPATCH_CHUNK="8")
    still_serving(farm, "chunk-after")


def test_worker_main_process_killed(farm: Farm, request: pytest.FixtureRequest) -> None:
    def inject() -> None:
        main, _ = farm.worker_pids()
        kill(main)  # its pool processes finish what they run, then exit with it
        farm.workers.procs.pop("w").wait(10)
        farm.workers.start("w", concurrency=2)  # what a supervisor does

    run_fault(farm, request, "main", "SIGKILL of the worker's main process", inject)


def test_redis_restart_without_persistence(farm: Farm, request: pytest.FixtureRequest) -> None:
    """Twice within two seconds: losing the connection again while reconnecting is what made
    Celery 5.2-5.3 workers stop consuming for good (celery/celery#8030, #8091; fixed by
    celery/kombu#2007 in kombu 5.4). still_serving checks that the same worker consumes."""
    def inject() -> None:
        for _ in range(2):
            farm.redis.kill()
            time.sleep(0.5)
            farm.redis.start()
            time.sleep(1.0)

    run_fault(farm, request, "redis", "Redis restart, no persistence (x2)", inject)
    still_serving(farm, "redis-after")


def test_postgres_restart(farm: Farm, request: pytest.FixtureRequest) -> None:
    run_fault(farm, request, "pgrestart", "PostgreSQL restart", farm.pg.restart)
    still_serving(farm, "pgrestart-after")


def test_postgres_down_30s(farm: Farm, request: pytest.FixtureRequest) -> None:
    def inject() -> None:
        farm.pg.stop()
        time.sleep(30)
        farm.pg.start()

    run_fault(farm, request, "pgdown", "PostgreSQL down 30 s", inject)
    still_serving(farm, "pgdown-after")


def test_api_killed_between_storing_and_queueing(farm: Farm,
                                                 request: pytest.FixtureRequest) -> None:
    """The API dies right after the batch is stored (ARMGYM_FAULT_KILL_BEFORE_ENQUEUE): nothing
    was queued. Two API processes come back; the client resends the same batch, which queues
    the stuck attempts again at once; the two sweepers never queue one twice over."""
    tag, batch = "api", cases("api")
    farm.start_api(ARMGYM_FAULT_KILL_BEFORE_ENQUEUE="1")
    start = time.monotonic()
    with farm.client() as client, pytest.raises(httpx.TransportError):
        client.post("/batches", json=body(tag, batch))
    farm.apis.pop().wait(10)
    [(stored, queued)] = farm.query("SELECT count(*), count(*) FILTER (WHERE status = 'queued') "
                                    "FROM attempts WHERE run_id = 'faults-api'")
    assert stored == queued == N  # stored, and nobody will send them
    other = farm.start_api()
    farm.start_api()
    ended = time.monotonic()
    with farm.client(other) as client:
        reply = client.post("/batches", json=body(tag, batch))
    assert reply.status_code == 202, reply.text
    assert reply.json()["batch_reused"] and reply.json()["created"] == 0
    wait_done(farm, reply.json()["batch_id"], N, RECOVER_S)
    check(farm, request, tag, batch, "SIGKILL of the API between storing and queueing",
          time.monotonic() - ended, time.monotonic() - start)


def test_orphaned_cluster_is_stopped_and_its_port_freed(tmp_path: Path) -> None:
    """A cluster whose test process died (an interrupted run) is stopped and removed by the next
    run instead of holding its port; a live owner's cluster is left alone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan_root = Path(tempfile.mkdtemp(prefix=f"{CLUSTER_PREFIX}{gone.pid}-gw9-"))
    live_root = Path(tempfile.mkdtemp(prefix=f"{CLUSTER_PREFIX}{os.getpid()}-gw9-"))
    orphan = Postgres(orphan_root, process.free_port())
    orphan.start()
    try:
        with socket.create_connection(("127.0.0.1", orphan.port), timeout=5):
            pass
        stopped = stop_orphaned_clusters()
        assert orphan_root in stopped and live_root not in stopped
        assert not orphan_root.exists() and live_root.exists()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", orphan.port), 2):
            pass
    finally:
        if orphan_root.exists():
            with contextlib.suppress(Exception):
                orphan.stop(mode="immediate")
            shutil.rmtree(orphan_root, ignore_errors=True)
        shutil.rmtree(live_root, ignore_errors=True)
