"""Batches through the whole farm: 200 mixed submissions in one request all get the verdicts they
must, stored exactly once with their gate results; resending changes nothing; a worker killed
with SIGKILL mid-batch loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, Row, func, select

from api import process
from store.models import Assembly, Attempt, Batch, BatchItem, GateResultRow

from .conftest import FARM, Api, Workers, start_api, wait_batch
from .mix import INFINITE, VARIANTS, WRONG, Case, honest, mixed

pytestmark = FARM


def outcome(result: dict) -> str:
    return "pass" if result["passed"] else str(result["error_kind"])


def test_mixed_batch_of_200(api: Api) -> None:
    client, run = api.client(), f"mix-{uuid.uuid4()}"
    cases = mixed(200)
    items = [{"variant_id": c.variant_id, "assembly": c.assembly, "seed": i,
              "idempotency_key": f"{run}-{i}", "meta": {"label": c.label}}
             for i, c in enumerate(cases)]
    start = time.monotonic()
    accepted = client.post("/batches", json={"run_id": run, "step": 3, "model": "m",
                                             "idempotency_key": run, "attempts": items})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["created"] == 200
    batch_id = accepted.json()["batch_id"]
    body = wait_batch(client, batch_id)
    elapsed = time.monotonic() - start
    assert body["complete"] and body["done"] == 200 and body["infra_errors"] == 0, body
    results = body["results"]
    wrong = [(c.label, outcome(r)) for c, r in zip(cases, results, strict=True)
             if outcome(r) not in c.expect]
    assert not wrong, wrong
    assert [r["seed"] for r in results] == list(range(200))
    print(f"\n{api.mode}: 200 mixed attempts in {elapsed:.1f} s ({200 / elapsed:.1f}/s)")

    engine = api.engine()
    with engine.connect() as conn:
        ids = [r["attempt_id"] for r in results]
        assert conn.scalar(select(func.count()).select_from(Attempt)
                           .where(Attempt.run_id == run)) == 200
        gates = dict(conn.execute(select(GateResultRow.attempt_id, func.count())
                                  .where(GateResultRow.attempt_id.in_(ids))
                                  .group_by(GateResultRow.attempt_id)).all())
        assert all(gates[r["attempt_id"]] == len(r["verdict"]["gates"]) for r in results)
        shas = {r["assembly_sha256"] for r in results}
        assert conn.scalar(select(func.count()).select_from(Assembly)
                           .where(Assembly.sha256.in_(shas))) == len(shas) < 200

    # Resending: the same batch key returns the same batch, nothing written.
    again = client.post("/batches", json={"run_id": run, "idempotency_key": run,
                                          "attempts": items}).json()
    assert again["batch_id"] == batch_id and again["batch_reused"] and again["created"] == 0
    # The same attempt keys in a new batch: a new batch of references, no new attempts.
    resent = client.post("/batches", json={"run_id": run, "attempts": items}).json()
    assert resent["created"] == 0 and resent["existing"] == 200
    assert [a["attempt_id"] for a in resent["attempts"]] == ids
    second = wait_batch(client, resent["batch_id"])
    assert [r["verdict"] for r in second["results"]] == [r["verdict"] for r in results]
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Attempt)
                           .where(Attempt.run_id == run)) == 200
        assert conn.scalar(select(func.count()).select_from(Batch)
                           .where(Batch.run_id == run)) == 2
    engine.dispose()


def kill_mix(run: str) -> tuple[list[Case], list[dict]]:
    """20 attempts: every fourth an endless loop (over a second each, so a kill lands
    mid-verification rather than between two tasks), the others honest or wrong."""
    cases = [Case("endless", VARIANTS[0], INFINITE[1], INFINITE[2]) if i % 4 == 0 else
             Case(WRONG[0][0], VARIANTS[i % len(VARIANTS)], WRONG[0][1], WRONG[0][2]) if i % 2
             else Case("honest", VARIANTS[i % len(VARIANTS)],
                       honest(VARIANTS[i % len(VARIANTS)], "gcc"), ("pass",))
             for i in range(20)]
    items = [{"variant_id": c.variant_id, "assembly": c.assembly, "idempotency_key": f"{run}-{i}"}
             for i, c in enumerate(cases)]
    return cases, items


def running_slow(engine: Engine, accepted: dict, cases: list[Case], worker: str) -> str:
    """Wait until `worker` runs one of the endless loops; its attempt id."""
    slow = [a["attempt_id"] for a, c in zip(accepted["attempts"], cases, strict=True)
            if c.label == "endless"]
    deadline = time.monotonic() + 90
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            found = conn.scalar(select(Attempt.id).where(
                Attempt.id.in_(slow), Attempt.status == "running",
                Attempt.worker.like(f"{worker}%")))
            conn.rollback()
            if found:
                return str(found)
            time.sleep(0.02)
    raise AssertionError(f"{worker} never picked up a slow attempt")


def check_complete_once(server: Api, engine: Engine, batch_id: str, cases: list[Case],
                        victim_attempt: str) -> Row:
    """Every attempt done with the verdict it must have, stored once with its gate results;
    returns the victim attempt's row."""
    client = server.client()
    body = wait_batch(client, batch_id, timeout=120)
    assert body["complete"] and body["done"] == len(cases) and body["infra_errors"] == 0, body
    wrong = [(c.label, outcome(r)) for c, r in zip(cases, body["results"], strict=True)
             if outcome(r) not in c.expect]
    assert not wrong, wrong
    with engine.connect() as conn:
        rows = conn.execute(select(Attempt.id, Attempt.tries, Attempt.worker)
                            .join(BatchItem, BatchItem.attempt_id == Attempt.id)
                            .where(BatchItem.batch_id == batch_id)).all()
        per_attempt = dict(conn.execute(
            select(GateResultRow.attempt_id, func.count(GateResultRow.position))
            .where(GateResultRow.attempt_id.in_([r.id for r in rows]))
            .group_by(GateResultRow.attempt_id)).all())
    assert len(rows) == len(cases) == len({r.id for r in rows})
    assert all(per_attempt[r["attempt_id"]] == len(r["verdict"]["gates"])
               for r in body["results"])
    return next(r for r in rows if r.id == victim_attempt)


def test_worker_killed_mid_batch(farm_server: Api, celery_workers: Workers) -> None:
    """SIGKILL one of the two Celery workers (main process and pool child) while it verifies;
    Redis hands its unacknowledged message to the other after the visibility timeout."""
    run = f"kill-{uuid.uuid4()}"
    cases, items = kill_mix(run)
    accepted = farm_server.client().post("/batches", json={"run_id": run, "attempts": items})
    engine = farm_server.engine()
    try:
        victim_attempt = running_slow(engine, accepted.json(), cases,
                                      celery_workers.node("w1") + "@")
        celery_workers.kill("w1")
        victim = check_complete_once(farm_server, engine, accepted.json()["batch_id"], cases,
                                     victim_attempt)
        assert victim.tries >= 2, victim
        assert victim.worker.startswith(celery_workers.node("w2") + "@"), victim
    finally:
        engine.dispose()
        celery_workers.start("w1")
        celery_workers.wait_ready()


def pool_processes(pid: int) -> list[int]:
    """The embedded API's pool processes (its spawned children, not the resource tracker)."""
    children = [c for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return [int(c) for c in children
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_embedded_pool_process_killed_mid_batch(embedded_server: Api) -> None:
    """The embedded analogue: SIGKILL a pool process mid-verification; the pool is rebuilt and
    every unfinished attempt runs again, none is stored twice."""
    run = f"kill-{uuid.uuid4()}"
    cases, items = kill_mix(run)
    accepted = embedded_server.client().post("/batches", json={"run_id": run,
                                                               "attempts": items})
    engine = embedded_server.engine()
    try:
        victim_attempt = running_slow(engine, accepted.json(), cases, "embedded@")
        with engine.connect() as conn:
            worker = conn.scalar(select(Attempt.worker).where(Attempt.id == victim_attempt))
        victim_pid = int(str(worker).rsplit(":", 1)[1])
        assert victim_pid in pool_processes(embedded_server.proc.pid)
        os.kill(victim_pid, signal.SIGKILL)
        victim = check_complete_once(embedded_server, engine, accepted.json()["batch_id"],
                                     cases, victim_attempt)
        assert victim.tries >= 2 and victim.worker != worker, victim
    finally:
        engine.dispose()


def test_embedded_pool_ends_with_the_api(request: pytest.FixtureRequest, tmp_path: Path,
                                         logs: Path) -> None:
    """No process left behind: pool processes end with the API, whether it is stopped or
    killed with SIGKILL (then each notices its parent is gone within a second)."""
    for stop in (process.stop, lambda p: os.kill(p.pid, signal.SIGKILL)):
        server = start_api("embedded", tmp_path, logs, request)
        server.client().post("/step", json={"variant_id": VARIANTS[0],
                                            "assembly": WRONG[0][1]})
        pool = pool_processes(server.proc.pid)
        assert pool
        stop(server.proc)
        server.proc.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in pool) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pool if Path(f"/proc/{pid}").exists()]
