"""Several attempts per Celery message (ARMGYM_DISPATCH_CHUNK) on the real farm (PostgreSQL,
Redis, a Celery worker): a message's attempts are each verified once and stored; an infra_error
in the middle of one sends only that attempt again; the sweeper's view of the broker lists every
id of every message, and the single-id messages of an earlier release too. Killing a worker
mid-message is in tests/faults (test_pool_process_killed_mid_chunk)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from store.models import Attempt
from store.settings import FarmSettings
from workers.celery_app import TASK_NAME
from workers.dispatch import CeleryDispatcher, chunks

from .conftest import FARM, Api, start_api, wait_batch, wrapped_worker
from .flaky_worker import MARK
from .mix import VARIANTS, WRONG, honest

pytestmark = FARM
FLAKY = Path(__file__).with_name("flaky_worker.py")
CHUNK = 3


@dataclass
class ChunkFarm:
    api: Api
    log: Path

    def results(self, since: int) -> list[str]:
        """The return values of the messages the worker finished, after byte `since` of its log."""
        text = self.log.read_bytes()[since:].decode(errors="replace")
        return re.findall(r"verify_attempt\[[^\]]+\] succeeded in [^:]+: '([^']*)'", text)

    def mark(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


@pytest.fixture(scope="module")
def chunk_farm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               logs: Path, farm_env: dict[str, str]) -> Iterator[ChunkFarm]:
    """The API sending CHUNK attempts per message and one flaky worker with one pool process
    (so the messages are finished one after another) on a queue of their own."""
    from api import process

    queue = f"{farm_env['ARMGYM_QUEUE_NAME']}-chunk"
    env = {**farm_env, "ARMGYM_QUEUE_NAME": queue, "ARMGYM_DISPATCH_CHUNK": str(CHUNK)}
    seen = tmp_path_factory.mktemp("flaky")
    log = logs / "chunk-worker.log"
    with wrapped_worker(FLAKY, seen, f"chunk-{queue}", env, log):
        server = start_api("farm", tmp_path_factory.mktemp("api-chunk"), logs, request,
                           ARMGYM_QUEUE_NAME=queue, ARMGYM_DISPATCH_CHUNK=str(CHUNK))
        try:
            yield ChunkFarm(server, log)
        finally:
            process.stop(server.proc)


def _submit(farm: ChunkFarm, texts: list[tuple[str, str]]) -> tuple[dict, list[Attempt]]:
    """Submit (variant, text) pairs in one batch and wait for it; the results and the rows."""
    client = farm.api.client()
    run = f"chunk-{uuid.uuid4()}"
    sent = client.post("/batches", json={"run_id": run, "attempts": [
        {"variant_id": v, "assembly": f"{t}\n// {run} {i}\n"} for i, (v, t) in enumerate(texts)]})
    assert sent.status_code == 202, sent.text
    ids = [a["attempt_id"] for a in sent.json()["attempts"]]
    body = wait_batch(client, sent.json()["batch_id"], timeout=120)
    assert body["complete"], body
    engine = farm.api.engine()
    try:
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(select(Attempt).where(Attempt.id.in_(ids)))}
    finally:
        engine.dispose()
    return body, [rows[i] for i in ids]


def _wait_results(farm: ChunkFarm, since: int, count: int) -> list[str]:
    """The worker logs a message's result just after storing its last verdict."""
    deadline = time.monotonic() + 30
    while len(found := farm.results(since)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_a_chunk_is_verified_in_one_message_and_each_attempt_stored(chunk_farm) -> None:
    since = chunk_farm.mark()
    texts = [(v, honest(v, "gcc")) for v in VARIANTS[:3]] + [(VARIANTS[0], WRONG[0][1])] * 3
    body, rows = _submit(chunk_farm, texts)
    outcomes = ["pass" if r["passed"] else r["error_kind"] for r in body["results"]]
    assert outcomes == ["pass"] * 3 + ["wrong_output"] * 3, outcomes
    assert [(r.status, r.tries) for r in rows] == [("done", 1)] * 6
    assert _wait_results(chunk_farm, since, 2) == ["3 stored", "3 stored"]


def test_an_infra_error_mid_chunk_sends_only_that_attempt_again(chunk_farm) -> None:
    since = chunk_farm.mark()
    flaky = honest(VARIANTS[1], "clang") + MARK
    texts = [(VARIANTS[0], honest(VARIANTS[0], "clang")), (VARIANTS[1], flaky),
             (VARIANTS[2], honest(VARIANTS[2], "clang"))]
    body, rows = _submit(chunk_farm, texts)
    assert [r["passed"] for r in body["results"]] == [True] * 3, body["results"]
    assert body["infra_errors"] == 0
    # The neighbours were verified once, by the chunk; the flaky one twice: once in the chunk,
    # once in its own message, sent with the retry count and backoff.
    assert [(r.status, r.tries) for r in rows] == [("done", 1), ("done", 2), ("done", 1)]
    assert _wait_results(chunk_farm, since, 2) == ["2 stored, 1 retried", "1 stored"]


def test_in_flight_lists_every_id_of_every_message(farm_env: dict[str, str]) -> None:
    queue = f"{farm_env['ARMGYM_QUEUE_NAME']}-unconsumed-{uuid.uuid4().hex[:8]}"
    settings = FarmSettings.from_env({**farm_env, "ARMGYM_QUEUE_NAME": queue,
                                      "ARMGYM_DISPATCH_CHUNK": str(CHUNK)})
    dispatcher = CeleryDispatcher(settings)
    try:
        ids = [str(uuid.uuid4()) for _ in range(7)]
        dispatcher.enqueue(ids)
        assert dispatcher.redis.llen(queue) == 3  # 2 + 2 + 3, nobody consumes this queue
        # A message of an earlier release: the task's argument is one id, not a list.
        dispatcher.app.send_task(TASK_NAME, args=["single-id"], queue=queue)
        assert dispatcher.in_flight() == {*ids, "single-id"}
    finally:
        dispatcher.redis.delete(queue)
        dispatcher.close()


def test_chunks_are_even_and_keep_the_order() -> None:
    ids = [str(i) for i in range(10)]
    assert [len(c) for c in chunks(ids, 8)] == [5, 5]
    assert [len(c) for c in chunks(ids, 4)] == [3, 3, 4]
    assert [a for c in chunks(ids, 3) for a in c] == ids
    assert chunks(ids, 1) == [[i] for i in ids]
    assert chunks([], 4) == []
