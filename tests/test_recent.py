"""The writer of duplicates answered from memory (api/recent.py), on a real SQLite store: it
stores what it was given, in order, under the ids the answers carried; a full queue sends the
caller back to the database path; closing stores what is still queued."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import recent
from api.observation import observation
from api.recent import RecentVerdicts, Recorder
from api.routes.gym import verdict_body, verdict_response
from store import attempts, db, keys
from store.models import Attempt
from store.settings import FarmSettings

# A real stored verdict (verifier 0.6.3's, as tests/test_verdict_model.py loads them).
STORED = json.loads((Path(__file__).parent / "data" / "stored_verdicts.json").read_text())
VERDICT = next(s["verdict"] for s in STORED if s["verdict"].get("error_kind") == "wrong_output")


def test_a_full_queue_refuses_and_closing_stores_what_is_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'farm.sqlite'}"
    db.upgrade(url)
    made = db.sessions(db.make_engine(url, pool_size=1))
    with made() as session, session.begin():
        key_id = keys.ensure(session, "t", "agk_test_recent_key", ("submit",)).id
    gate = threading.Event()

    def stalled() -> Session:  # the writer's first store waits until the test lets it go
        gate.wait(30)
        return made()

    settings = FarmSettings(record_queue=1, data_dir=str(tmp_path))
    recorder = Recorder(settings, stalled)
    item = attempts.NewAttempt(variant_id="vec_add_n64_float32", assembly="ret",
                               template="vec_add", seed=1, content_key="k")
    ids, refused = [], 0
    for _ in range(200):  # the writer takes what comes in its linger and stalls; then the
        found = recorder.record(key_id, item, attempts.Answer.of(VERDICT), run_id="r", step=1,
                                model=None)
        if found is None:  # queue of one fills, and the next is refused
            refused += 1
            break
        ids.append(found)
        time.sleep(0.02)
    assert refused == 1 and len(ids) >= 2 and all(ids)
    assert all(i in recorder for i in ids)
    gate.set()
    recorder.close()
    assert not any(i in recorder for i in ids)
    with made() as session:
        rows = session.scalars(select(Attempt).where(Attempt.run_id == "r")).all()
    assert sorted(r.id for r in rows) == sorted(ids)
    assert all(r.status == "done" and r.worker == "verdict-cache" and r.verdict["cached"]
               for r in rows)


def test_recent_verdicts_keep_no_infrastructure_failure_and_mark_the_rest_cached() -> None:
    recent = RecentVerdicts(2)
    recent.put("a", {**VERDICT, "error_kind": "infra_error"})
    assert recent.get("a") is None
    recent.put("b", VERDICT)
    found = recent.get("b")
    assert found is not None and found.verdict == {**VERDICT, "cached": True}
    assert found.columns["error_kind"] == "wrong_output" and found.gates  # worked out once
    for k in ("c", "d"):
        recent.put(k, VERDICT)
    assert recent.get("b") is None  # bounded: the least recent went
    off = RecentVerdicts(0)
    off.put("b", VERDICT)
    assert not off.enabled and off.get("b") is None


def test_a_remembered_verdict_is_rendered_once_per_profile_and_anew_once_replaced() -> None:
    """The body of a duplicate's answer (verdict, observation; the attempt id last) is what the
    verdict and its observation make, kept per profile for that verdict only: an Answer put
    again under the key is rendered afresh."""
    recent = RecentVerdicts(4)
    recent.put("k", VERDICT)
    answer = recent.get("k")
    assert answer is not None
    made: list[str] = []

    def body(profile: str) -> bytes:
        assert answer is not None
        return recent.rendered("k", answer.verdict, profile, lambda: (
            made.append(profile), verdict_body(answer.verdict, profile))[1])

    for profile in ("additive", "binary_plus_speedup", "additive"):
        reply = verdict_response(answer.verdict, "id-1", body=body(profile))
        doc = json.loads(reply.body)
        assert doc == {**answer.verdict, "reward_detail": answer.verdict.get("reward"),
                       **observation(answer.verdict, profile), "attempt_id": "id-1"}
        assert list(doc)[-1] == "attempt_id" and reply.media_type == "application/json"
    assert made == ["additive", "binary_plus_speedup"]
    recent.put("k", {**VERDICT, "message": "another run"})
    answer = recent.get("k")
    assert answer is not None
    assert json.loads(body("additive"))["message"] == "another run"
    assert made == ["additive", "binary_plus_speedup", "additive"]


def test_an_answer_recorded_without_waking_is_stored_once_woken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/step records a duplicate unwoken and wakes the writer once its answer is sent: until
    then the attempt waits (the writer's own look is 30 s off here), then it is stored under
    the id it was answered with."""
    monkeypatch.setattr(recent, "WAKE_S", 30.0)
    url = f"sqlite:///{tmp_path / 'farm.sqlite'}"
    db.upgrade(url)
    made = db.sessions(db.make_engine(url, pool_size=1))
    with made() as session, session.begin():
        key_id = keys.ensure(session, "t", "agk_test_recent_wake", ("submit",)).id
    recorder = Recorder(FarmSettings(data_dir=str(tmp_path)), made)
    time.sleep(0.1)  # the writer is asleep
    item = attempts.NewAttempt(variant_id="vec_add_n64_float32", assembly="ret",
                               template="vec_add", seed=1, content_key="k")
    found = recorder.record(key_id, item, attempts.Answer.of(VERDICT), run_id="w", step=1,
                            model=None, wake=False)
    assert found is not None
    time.sleep(0.3)
    assert found in recorder  # not woken, not stored
    recorder.wake()
    recorder.settle(found, 10)
    assert found not in recorder
    with made() as session:
        rows = session.scalars(select(Attempt).where(Attempt.run_id == "w")).all()
    assert [r.id for r in rows] == [found] and rows[0].status == "done"
    recorder.close()


def test_an_address_is_worked_out_once_per_content_and_within_its_bound() -> None:
    memory = RecentVerdicts(10)
    calls: list[int] = []

    def work(seed: int) -> Callable[[], tuple[int, str]]:
        def address() -> tuple[int, str]:
            calls.append(seed)
            return seed, f"key{seed}"
        return address

    assert memory.address(("v", "ret", False, 1), work(1)) == (1, "key1")
    assert memory.address(("v", "ret", False, 1), work(99)) == (1, "key1")  # remembered
    assert memory.address(("v", "ret", False, 2), work(2)) == (2, "key2")  # other content
    assert calls == [1, 2]
    huge = ("v", "x" * recent.ADDRESS_BYTES, False, 3)
    assert memory.address(huge, work(3)) == memory.address(huge, work(3)) == (3, "key3")
    assert calls == [1, 2, 3, 3]  # too large to keep: worked out each time
    off = RecentVerdicts(0)
    off.address(("v", "ret", False, 1), work(1))
    off.address(("v", "ret", False, 1), work(1))
    assert calls[-2:] == [1, 1]
