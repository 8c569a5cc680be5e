"""Resubmitted identical attempts are answered from the content-addressed cache, over HTTP, in
both modes: the stored verdict of the first is reused, marked cached, and nothing is queued."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import FARM, MODES, Api, start_api
from .mix import VARIANTS, asm, honest

pytestmark = FARM


@pytest.fixture(scope="module", params=MODES)
def cached_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               logs: Path) -> Iterator[Api]:
    from api import process

    server = start_api(request.param, tmp_path_factory.mktemp(f"cache-{request.param}"), logs,
                       request, ARMGYM_VERDICT_CACHE="1",
                       ARMGYM_SEED_SECRET=secrets.token_hex(8))
    yield server
    process.stop(server.proc)


def test_resubmitted_step_is_answered_from_the_cache(cached_api: Api) -> None:
    client = cached_api.client()
    variant = VARIANTS[1]
    body = {"variant_id": variant, "assembly": honest(variant, "gcc")}
    first = client.post("/step", json=body).json()
    second = client.post("/step", json=body).json()
    assert first["passed"] is True and "cached" not in first
    assert second["cached"] is True and second["attempt_id"] != first["attempt_id"]
    assert second["seed"] == first["seed"]  # no seed sent: derived from the content
    for field in ("passed", "error_kind", "message", "gates", "reward", "versions"):
        assert second[field] == first[field], field
    stored = client.get(f"/attempts/{second['attempt_id']}").json()
    assert stored["status"] == "done" and stored["worker"] == "verdict-cache"
    metrics = client.get("/metrics").text
    assert any(line.startswith("armgym_attempts_cached_total") and float(line.split()[-1]) >= 1
               for line in metrics.splitlines())


def test_wrong_and_hostile_verdicts_are_reused_and_a_new_seed_is_not(cached_api: Api) -> None:
    client = cached_api.client()
    variant = VARIANTS[0]
    for text, kind in ((asm("    ret"), "wrong_output"),
                       (asm("    mov x8, #93\n    svc #0\n    ret"), "object_rejected")):
        first = client.post("/step", json={"variant_id": variant, "assembly": text}).json()
        again = client.post("/step", json={"variant_id": variant, "assembly": text}).json()
        assert first["error_kind"] == again["error_kind"] == kind and again["cached"] is True
        fresh = client.post("/step", json={"variant_id": variant, "assembly": text,
                                           "seed": first["seed"] ^ 1}).json()
        assert fresh["error_kind"] == kind and "cached" not in fresh


def _stored(client: httpx.Client, attempt_id: str) -> dict:
    reply = client.get(f"/attempts/{attempt_id}")
    assert reply.status_code == 200, reply.text  # at once: the row is stored before GET reads
    return reply.json()


def test_a_duplicate_from_memory_is_answered_and_stored_as_through_the_database(
        cached_api: Api) -> None:
    """The second /step (no idempotency key) is answered from the API's memory and stored just
    after; the third, with an idempotency key, goes through the database. Their answers and
    their stored attempts are the same but for the id."""
    client = cached_api.client()
    variant, run = VARIANTS[2], f"memory-{secrets.token_hex(4)}"
    body = {"variant_id": variant, "assembly": honest(variant, "clang"), "run_id": run,
            "step": 3, "model": "m"}
    first = client.post("/step", json=body).json()
    from_memory = client.post("/step", json=body).json()
    through_db = client.post("/step", json={**body, "idempotency_key": "k-1"}).json()
    assert first["passed"] is True and from_memory["cached"] is True
    ids = {first["attempt_id"], from_memory["attempt_id"], through_db["attempt_id"]}
    assert len(ids) == 3
    strip = {"attempt_id"}
    assert {k: v for k, v in from_memory.items() if k not in strip} == \
        {k: v for k, v in through_db.items() if k not in strip}
    rows = [_stored(client, a) for a in (from_memory["attempt_id"], through_db["attempt_id"])]
    drop = {"id", "attempt_id", "idempotency_key", "created_at", "started_at", "finished_at"}
    assert {k: v for k, v in rows[0].items() if k not in drop} == \
        {k: v for k, v in rows[1].items() if k not in drop}
    assert rows[0]["worker"] == "verdict-cache" and rows[0]["run_id"] == run
    history = client.get("/attempts", params={"run_id": run}).json()["attempts"]
    assert sorted(a["attempt_id"] for a in history) == sorted(ids)
    again = client.post("/step", json={**body, "idempotency_key": "k-1"}).json()
    assert again["attempt_id"] == through_db["attempt_id"]  # a key still names one attempt
    for profile in ("binary_plus_speedup", "additive"):  # bodies rendered once per profile
        mine = client.post("/step", params={"profile": profile}, json=body).json()
        keyed = client.post("/step", params={"profile": profile},
                            json={**body, "idempotency_key": "k-1"}).json()
        assert mine["profile"] == profile and mine["attempt_id"] not in ids
        assert {k: v for k, v in mine.items() if k not in strip} == \
            {k: v for k, v in keyed.items() if k not in strip}


def test_every_duplicate_answered_from_memory_is_stored(
        tmp_path: Path, logs: Path, request: pytest.FixtureRequest) -> None:
    """Forty duplicates answered from memory, then the API stopped (SIGTERM; its lifespan
    stores what is still queued): every one is in the database, with the id it was answered
    with; a bad request among them is refused as before, not stored."""
    from sqlalchemy import text

    from api import process

    server = start_api("embedded", tmp_path, logs, request, ARMGYM_VERDICT_CACHE="1")
    try:
        client = server.client()
        variant = VARIANTS[0]
        body = {"variant_id": variant, "assembly": asm("    ret"), "run_id": "shutdown"}
        assert client.post("/step", json=body).json()["error_kind"] == "wrong_output"
        answered = [client.post("/step", json=body).json() for _ in range(40)]
        assert all(a["cached"] is True for a in answered)
        bad = client.post("/step", json={**body, "step": 2**40})
        assert bad.status_code == 422, bad.text
    finally:
        process.stop(server.proc)
    assert server.proc.returncode == -15  # uvicorn re-raises SIGTERM after a clean shutdown
    with server.engine().connect() as conn:
        stored = set(conn.scalars(text("SELECT id FROM attempts WHERE run_id = 'shutdown'")))
    assert {a["attempt_id"] for a in answered} <= stored and len(stored) == 41


def test_a_resubmitted_batch_is_answered_at_once_and_every_attempt_stored(
        cached_api: Api) -> None:
    """A batch, then the same batch again with a keyed duplicate and a fresh attempt among it:
    the duplicates are done as soon as the batch is stored, with the first verdicts marked
    cached, each under an id of its own; GET /batches/{id}, served from the stored JSON,
    is what BatchOut would have made of it."""
    from api.schemas import BatchOut

    client = cached_api.client()
    variant, run = VARIANTS[3], f"batch-{secrets.token_hex(4)}"
    texts = [honest(variant, "gcc"), asm("    ret"), asm("    mov x8, #93\n    svc #0\n    ret")]
    first = client.post("/batches", json={"run_id": run, "attempts": [
        {"variant_id": variant, "assembly": t} for t in texts]}).json()
    done = client.get(f"/batches/{first['batch_id']}", params={"wait": 120}).json()
    assert done["complete"], done
    again = client.post("/batches", json={"run_id": run, "attempts": [
        *({"variant_id": variant, "assembly": t} for t in texts),
        {"variant_id": variant, "assembly": texts[1], "idempotency_key": f"{run}-k"},
        {"variant_id": variant, "assembly": asm("    nop\n    ret")}]}).json()
    assert again["created"] == 5
    reply = client.get(f"/batches/{again['batch_id']}")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert BatchOut.model_validate(body).model_dump(mode="json") == body
    results = body["results"]
    assert [r["status"] for r in results[:4]] == ["done"] * 4  # no wait: answered when stored
    assert len({r["attempt_id"] for r in results} | {r["attempt_id"] for r in done["results"]}) \
        == 8
    for dup, orig in zip(results[:4], [*done["results"], done["results"][1]], strict=True):
        assert dup["worker"] == "verdict-cache" and dup["verdict"]["cached"] is True
        assert {k: v for k, v in dup["verdict"].items() if k != "cached"} == \
            {k: v for k, v in orig["verdict"].items() if k != "cached"}
        assert dup["error_kind"] == orig["error_kind"] and dup["reward"] == orig["reward"]
    assert results[3]["idempotency_key"] == f"{run}-k"
    assert client.get(f"/attempts/{results[3]['attempt_id']}").json()["idempotency_key"] == \
        f"{run}-k"
    assert results[4]["worker"] != "verdict-cache"
