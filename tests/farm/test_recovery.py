"""The store's side of recovery: leases, the sweep's choice of attempts to queue again, claims
that leave a live lease alone, and two sweeps at once (PostgreSQL row locks)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from store import attempts, db, keys
from store.models import DONE, QUEUED, Attempt, utcnow
from toolchain.errors import ErrorKind, GateName
from toolchain.verdict import GateResult
from toolchain.verify import verdict_of

from .conftest import FARM
from .mix import VARIANTS, asm
from .test_store import empty_db  # noqa: F401  (the fixture: an empty database per backend)

pytestmark = FARM


@pytest.fixture
def store(empty_db: str) -> Iterator[tuple[sessionmaker[Session], int, str]]:  # noqa: F811
    db.upgrade(empty_db)
    engine = db.make_engine(empty_db, pool_size=4)
    sessions = db.sessions(engine)
    with sessions() as session, session.begin():
        key = keys.ensure(session, "alice", "agk_recovery", keys.DEFAULT_SCOPES)
    yield sessions, key.id, engine.dialect.name
    engine.dispose()


def submit(sessions: sessionmaker[Session], key_id: int, n: int, lease_s: float = 60.0,
           prefix: str = "k") -> list[str]:
    items = [attempts.NewAttempt(VARIANTS[0], asm(f"    ret // {prefix}{i}"),
                                 idempotency_key=f"{prefix}{i}", seed=i) for i in range(n)]
    with sessions() as session:
        return attempts.submit(session, key_id, items, lease_s=lease_s).attempt_ids


def expire(sessions: sessionmaker[Session], ids: list[str]) -> None:
    with sessions() as session, session.begin():
        session.execute(update(Attempt).where(Attempt.id.in_(ids))
                        .values(lease_until=utcnow() - timedelta(seconds=1)))


def status(sessions: sessionmaker[Session], attempt_id: str) -> tuple[str, object]:
    with sessions() as session:
        row = session.get(Attempt, attempt_id)
        assert row is not None
        return row.status, row.lease_until


def recover(sessions: sessionmaker[Session], held: set[str] | None = None,
            ids: list[str] | None = None) -> list[str]:
    with sessions() as session:
        return attempts.recover(session, lambda: held or set(), lease_s=30, limit=100, ids=ids)


def test_sweep_takes_only_expired_leases_the_broker_lost(store) -> None:
    sessions, key_id, _ = store
    ids = submit(sessions, key_id, 4)
    assert recover(sessions) == []  # fresh leases: left to the broker
    expire(sessions, ids)
    assert sorted(recover(sessions, held={ids[0]})) == sorted(ids[1:])
    assert recover(sessions) == []  # the sweep renewed every lease it looked at
    state, lease = status(sessions, ids[0])
    assert state == QUEUED and lease > utcnow() + timedelta(seconds=20)


def test_running_past_its_lease_is_queued_again_whatever_the_broker_says(store) -> None:
    sessions, key_id, _ = store
    [one] = submit(sessions, key_id, 1)
    with sessions() as session:
        assert attempts.claim(session, one, "w1", lease_s=100) is not None
    expire(sessions, [one])
    assert recover(sessions, held={one}) == [one]
    assert status(sessions, one)[0] == QUEUED


def test_a_live_lease_keeps_a_duplicate_message_away(store) -> None:
    sessions, key_id, _ = store
    [one] = submit(sessions, key_id, 1)
    with sessions() as session:
        assert attempts.claim(session, one, "w1", lease_s=100, takeover=False) is not None
    with sessions() as session:  # a duplicate first delivery: the holder finishes it
        assert attempts.claim(session, one, "w2", takeover=False) is None
    with sessions() as session:  # a re-delivery after the holder was lost takes over
        job = attempts.claim(session, one, "w2", takeover=True)
    assert job is not None and job.tries == 2
    with sessions() as session:
        attempts.release(session, one, 10)
    assert status(sessions, one)[0] == QUEUED
    with sessions() as session:
        wrong = verdict_of(VARIANTS[0], 1, [GateResult.fail(GateName.correctness,
                                                             ErrorKind.wrong_output, "x")],
                           {}, "test")
        assert attempts.finish(session, one, wrong.to_json(), "w2")
    assert status(sessions, one) == (DONE, None)
    expire(sessions, [one])
    assert recover(sessions) == []  # done is never swept


def test_resubmitting_a_stuck_key_finds_it(store) -> None:
    sessions, key_id, _ = store
    ids = submit(sessions, key_id, 3)
    items = [attempts.NewAttempt(VARIANTS[0], asm(f"    ret // k{i}"), idempotency_key=f"k{i}",
                                 seed=i) for i in range(3)]
    with sessions() as session:
        again = attempts.submit(session, key_id, items)
    assert again.created == [] and sorted(again.pending) == sorted(ids)
    # a resubmission looks at queued attempts before their lease ends, and the broker decides
    assert sorted(recover(sessions, held={ids[0]}, ids=again.pending)) == sorted(ids[1:])


def test_a_mixed_batch_gives_each_attempt_its_own_row(store) -> None:
    """Keyed and unkeyed attempts interleaved, some keys new and one used before: every position
    gets the row stored with its own content (an unkeyed attempt once got a keyed one's id)."""
    sessions, key_id, _ = store
    (old,) = submit(sessions, key_id, 1, prefix="old")
    texts = [f"    ret // mixed{i}" for i in range(5)]
    keys_ = ["new0", None, "old0", None, "new4"]
    items = [attempts.NewAttempt(VARIANTS[0], asm(t), idempotency_key=k, seed=i)
             for i, (t, k) in enumerate(zip(texts, keys_, strict=True))]
    with sessions() as session:
        done = attempts.submit(session, key_id, items)
    ids = done.attempt_ids
    assert len(set(ids)) == 5 and ids[2] == old and old not in done.created
    assert sorted(done.created) == sorted(ids[:2] + ids[3:])
    with sessions() as session:
        rows = {r.id: r for r in session.scalars(select(Attempt).where(Attempt.id.in_(ids)))}
    assert [rows[a].idempotency_key for a in ids] == ["new0", None, "old0", None, "new4"]
    assert [rows[a].seed for a in ids] == [0, 1, 0, 3, 4]
    assert [rows[a].assembly_sha256 for a in ids[:2] + ids[3:]] == \
        [attempts.sha256(asm(texts[i])) for i in (0, 1, 3, 4)]


def test_cached_answers_read_one_verdict_per_key_in_one_statement_per_200(store) -> None:
    """250 content keys, each done twice (the second a stored duplicate), one of them only as
    infra_error, one never done: 249 Answers, each its key's verdict marked cached with its
    columns and gate rows, in two SELECTs."""
    sessions, key_id, _ = store
    fail = {kind: verdict_of(VARIANTS[0], 1, [GateResult.fail(GateName.correctness, kind, "x")],
                             {}, "test").to_json()
            for kind in (ErrorKind.wrong_output, ErrorKind.infra_error)}
    keys_ = [f"content-{i:03d}" for i in range(251)]
    items = [attempts.NewAttempt(VARIANTS[0], asm(f"    ret // c{i}"), seed=i, content_key=k)
             for i, k in enumerate(keys_[:250])]
    with sessions() as session:
        ids = attempts.submit(session, key_id, items).attempt_ids
    for i, a in enumerate(ids):
        with sessions() as session:
            assert attempts.claim(session, a, "w") is not None
        kind = ErrorKind.infra_error if i == 7 else ErrorKind.wrong_output
        with sessions() as session:
            assert attempts.finish(session, a, fail[kind], "w")
    again = {k: attempts.Answer.of(fail[ErrorKind.wrong_output]) for k in keys_[:250]}
    with sessions() as session:  # the duplicates, stored done (none of the infra_error one)
        attempts.submit(session, key_id, items[:7] + items[8:], cached=again)
    selects: list[str] = []
    with sessions() as session:
        listen = lambda *a: selects.append(a[2])  # noqa: E731 (conn, cursor, statement, ...)
        event.listen(session.get_bind(), "before_cursor_execute", listen)
        try:
            found = attempts.cached_answers(session, [*keys_, *keys_[:10]])
        finally:
            event.remove(session.get_bind(), "before_cursor_execute", listen)
    assert sorted(found) == sorted(k for i, k in enumerate(keys_) if i not in (7, 250))
    assert len([q for q in selects if q.lstrip().upper().startswith("SELECT")]) == 2
    answer = found[keys_[0]]
    assert answer.verdict == {**fail[ErrorKind.wrong_output], "cached": True}
    assert answer.columns["error_kind"] == "wrong_output" and len(answer.gates) == 1


# Row locks are PostgreSQL's: SQLite has one writer at a time anyway.
@pytest.mark.parametrize("empty_db", ["postgresql"], indirect=True)
def test_two_sweeps_at_once_never_take_the_same_attempt(store) -> None:
    sessions, key_id, dialect = store
    assert dialect == "postgresql"
    ids = submit(sessions, key_id, 6)
    expire(sessions, ids)
    first = sessions()
    first.begin()
    locked = first.execute(select(Attempt.id).where(Attempt.id.in_(ids[:3]))
                           .with_for_update()).scalars().all()
    assert len(locked) == 3
    try:  # another sweep meanwhile skips the locked rows instead of waiting for them
        assert sorted(recover(sessions)) == sorted(ids[3:])
    finally:
        first.rollback()
        first.close()
    assert sorted(recover(sessions)) == sorted(ids[:3])
    assert recover(sessions) == []
    assert {status(sessions, a)[0] for a in ids} == {QUEUED}


def test_both_dispatchers_take_one_retry_decision() -> None:
    """workers.pipeline.retry_after decides for the Celery task and the embedded pool alike:
    back off exponentially (capped), and after max_retries give up with one reason."""
    from store.settings import FarmSettings
    from workers import pipeline

    settings = FarmSettings(max_retries=3, retry_backoff_s=1.0)
    boom = OSError("disk full")
    delays = [pipeline.retry_after(r, boom, settings) for r in range(5)]
    assert delays == [1.0, 2.0, 4.0, None, None]
    assert [pipeline.is_final(r, settings) for r in range(5)] == [False, False, False, True, True]
    assert pipeline.give_up_reason(3, boom) == \
        "verification failed after 4 tries: OSError: disk full"
    assert pipeline.retry_after(10, boom, FarmSettings(max_retries=20, retry_backoff_s=1.0)) \
        == 60.0
