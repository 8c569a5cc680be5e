"""Writing attempts: submission (idempotent per client key) and the worker's claim and finish.

The API creates every attempt row before anything is queued, and a worker only ever updates the
row it was given, under a row lock, and only while it is not yet done. So a task delivered twice
(a worker died after verifying, a visibility timeout expired, a retry raced) can never store a
second attempt or a second set of gate results.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from toolchain.verdict import Verdict

from . import extract
from .models import (
    DONE,
    QUEUED,
    RUNNING,
    Assembly,
    Attempt,
    Batch,
    BatchItem,
    GateResultRow,
    utcnow,
)

# The tables the worker's hot statements address in SQL core (no ORM entities to build).
ATTEMPTS, ASSEMBLIES, GATES = Attempt.__table__, Assembly.__table__, GateResultRow.__table__

CHUNK = 500  # rows per statement: well inside SQLite's bound-parameter limit
KEYS_PER_LOOKUP = 200  # content keys per verdict cache query
ADMISSION_LOCK = 0x61726D67  # the advisory lock every API process admits under (PostgreSQL)


class QueueFull(Exception):
    """Storing a submission would take the outstanding attempts past the queue limit; nothing
    was stored."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} attempts waiting")
        self.waiting = waiting


def _seed(item: NewAttempt) -> int:
    """The seed is the caller's (the API's submission derives a missing one from the content:
    toolchain.verify.derive_seed); the store invents none, so there is one fallback."""
    if item.seed is None:
        raise ValueError("an attempt is stored with its seed (toolchain.verify.derive_seed "
                         "for one the client did not send)")
    return item.seed


@dataclass(frozen=True)
class NewAttempt:
    variant_id: str
    assembly: str
    template: str | None = None
    idempotency_key: str | None = None
    seed: int | None = None  # required when stored (_seed)
    completion: bool = False
    step: int | None = None
    meta: dict[str, Any] | None = None
    content_key: str | None = None  # the verdict cache's key, when the caller computed it
    id: str | None = None  # given by a caller that answered before storing (api/recent.py)
    seed_scope: str = "attempt"  # how the API derives a missing seed (toolchain.verify)


@dataclass
class Submitted:
    batch_id: str
    attempt_ids: list[str]
    # Attempts this request created; only these are queued (the others exist already)...
    created: list[str] = field(default_factory=list)
    batch_reused: bool = False
    # ...except those created done, with the verdict of an identical attempt (id -> verdict).
    answered: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Earlier attempts this request refers to (same keys) that are not done yet: the caller
    # checks whether they are stuck (recover(ids=...)), so resubmitting re-queues them.
    pending: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """What a worker needs to verify one attempt."""

    attempt_id: str
    variant_id: str
    assembly: str
    seed: int
    completion: bool
    tries: int


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _chunks(seq: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _upsert(session: Session, table: Any) -> Any:
    """INSERT ... ON CONFLICT for the session's backend (both support DO NOTHING + RETURNING)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _store_assemblies(session: Session, texts: Iterable[str]) -> None:
    rows = {sha256(t): t for t in texts}
    values = [{"sha256": h, "text": t, "size": len(t.encode()), "created_at": utcnow()}
              for h, t in rows.items()]
    for part in _chunks(values):
        session.execute(_upsert(session, Assembly).on_conflict_do_nothing(), list(part))


def _existing_by_key(session: Session, key_id: int, keys: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in _chunks(keys):
        rows = session.execute(select(Attempt.idempotency_key, Attempt.id).where(
            Attempt.api_key_id == key_id, Attempt.idempotency_key.in_(part))).all()
        found.update((str(k), str(v)) for k, v in rows)
    return found


def _batch_attempts(session: Session, batch_id: str) -> list[str]:
    return list(session.scalars(select(BatchItem.attempt_id)
                                .where(BatchItem.batch_id == batch_id)
                                .order_by(BatchItem.position)))


def _not_done(session: Session, ids: Sequence[str]) -> list[str]:
    found: list[str] = []
    for part in _chunks(sorted(set(ids))):
        found += session.scalars(select(Attempt.id).where(Attempt.id.in_(part),
                                                          Attempt.status != DONE)).all()
    return found


def submit(session: Session, key_id: int, items: Sequence[NewAttempt], *,
           run_id: str | None = None, step: int | None = None, model: str | None = None,
           batch_key: str | None = None, worker: str = "",
           cached: Mapping[str, Answer] | None = None,
           lease_s: float = 60.0, limit: int | None = None) -> Submitted:
    """Record a batch of attempts. An attempt whose idempotency key this API key has used before
    is not created again: the batch refers to the existing one. A batch whose own key was used
    before is returned as it is, and nothing is written. An attempt whose content key is in
    `cached` is created done, with that Answer's verdict, columns and gate rows, in the same
    transaction, and `worker` as the one that answered it. New queued attempts get a lease of
    `lease_s`: the sweeper leaves them to the broker that long. With `limit`, QueueFull (and
    nothing stored) when the new queued attempts would take the outstanding ones past it
    (an empty queue admits any batch)."""
    cached = cached or {}
    with session.begin():
        if batch_key:
            old = session.scalar(select(Batch.id).where(Batch.api_key_id == key_id,
                                                        Batch.idempotency_key == batch_key))
            if old:
                listed = _batch_attempts(session, old)
                return Submitted(old, listed, batch_reused=True,
                                 pending=_not_done(session, listed))
        _store_assemblies(session, (it.assembly for it in items))
        keyed = [it.idempotency_key for it in items if it.idempotency_key]
        ids = _existing_by_key(session, key_id, keyed)
        now, rows = utcnow(), []
        answers: dict[str, Answer] = {}  # new row id -> the answer it is created with
        lease = now + timedelta(seconds=lease_s)
        unkeyed: list[str | None] = []  # per item: its new row's id when it has no key
        for it in items:
            unkeyed.append(None)
            if it.idempotency_key and it.idempotency_key in ids:
                continue
            new_id = it.id or str(uuid.uuid4())
            if it.idempotency_key:
                ids[it.idempotency_key] = new_id
            else:
                unkeyed[-1] = new_id
            rows.append({
                "id": new_id, "api_key_id": key_id, "idempotency_key": it.idempotency_key,
                "run_id": run_id, "step": it.step if it.step is not None else step,
                "model": model, "meta": it.meta, "variant_id": it.variant_id,
                "template": it.template, "assembly_sha256": sha256(it.assembly),
                "completion": it.completion,
                "seed": _seed(it),
                "content_key": it.content_key,
                "status": QUEUED, "tries": 0, "created_at": now, "lease_until": lease,
                **_answer(cached.get(it.content_key or ""), worker, now),
            })
            if row_answer := cached.get(it.content_key or ""):
                answers[new_id] = row_answer
        created: list[str] = []
        for part in _chunks(rows):
            stmt = (_upsert(session, Attempt)
                    .on_conflict_do_nothing(index_elements=["api_key_id", "idempotency_key"])
                    .returning(Attempt.id))
            created += session.scalars(stmt, list(part)).all()
        lost = {r["idempotency_key"] for r in rows if r["id"] not in set(created)}
        if lost:  # a concurrent request created these keys between our lookup and insert
            ids.update(_existing_by_key(session, key_id, sorted(k for k in lost if k)))
        made = set(created)
        answered = {a: answer.verdict for a, answer in answers.items() if a in made}
        gates = [{"attempt_id": a, **g} for a in answered for g in answers[a].gates]
        for part in _chunks(gates):
            session.execute(insert(GateResultRow), list(part))
        # A keyed item's id is its key's (a concurrent winner's too), an unkeyed one's its row's.
        attempt_ids = [ids[it.idempotency_key] if it.idempotency_key else str(own)
                       for it, own in zip(items, unkeyed, strict=True)]
        batch_id = str(uuid.uuid4())
        session.add(Batch(id=batch_id, api_key_id=key_id, idempotency_key=batch_key,
                          run_id=run_id, step=step, model=model, total=len(items),
                          created_at=now))
        session.flush()
        for part in _chunks([{"batch_id": batch_id, "position": i, "attempt_id": a}
                             for i, a in enumerate(attempt_ids)]):
            session.execute(insert(BatchItem), list(part))
        if limit is not None:
            _admit(session, len(made) - len(answered), limit)
    earlier = [a for a in attempt_ids if a not in made]
    with session.begin():
        pending = _not_done(session, earlier) if earlier else []
    return Submitted(batch_id, attempt_ids, created, answered=answered, pending=pending)


def _admit(session: Session, queued: int, limit: int) -> None:
    """Exact backpressure however many API processes submit: the last step of a submission's
    transaction, its rows written, counts the outstanding attempts under a lock every
    submitter takes (PostgreSQL's transaction advisory lock; SQLite's single writer is one
    already) and held until commit, so each count sees every admission committed before it
    and no other in progress. Only the count and the commit are serialised."""
    if not queued:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK})
    waiting = outstanding(session) - queued
    if waiting and waiting + queued > limit:
        raise QueueFull(waiting)


def as_cached(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict as an identical attempt is answered with: a JSON copy, marked cached."""
    return extract.jsonable({**verdict, "cached": True})


@dataclass(frozen=True)
class Answer:
    """What an attempt answered from an identical one is stored with: the verdict (as_cached),
    its attempt columns and its gate rows. Worked out once per content key and shared by every
    duplicate of it (read-only), since doing it per stored row cost more than the insert."""

    verdict: dict[str, Any]
    columns: dict[str, Any]
    gates: list[dict[str, Any]]

    @classmethod
    def of(cls, verdict: Mapping[str, Any]) -> Answer:
        doc = as_cached(verdict)
        return cls(doc, extract.columns(doc), extract.gate_rows(doc))


def _answer(answer: Answer | None, worker: str, now: Any) -> dict[str, Any]:
    """The columns of a new attempt row: done with `answer`, or the verdict columns left empty
    (every row of one insert has the same columns)."""
    if answer is None:
        return {"verdict": None, "worker": None, "started_at": None, "finished_at": None,
                **dict.fromkeys(extract.COLUMNS)}
    return {"verdict": answer.verdict, "status": DONE, "worker": worker, "started_at": now,
            "lease_until": None, "finished_at": now, **answer.columns}


def cached_answers(session: Session, keys: Iterable[str]) -> dict[str, Answer]:
    """The Answer of a done attempt for each of `keys` that has one (never infra_error): the
    content-addressed verdict cache, shared by every API and worker through the database. One
    statement per KEYS_PER_LOOKUP keys, reading one row per key however many share it."""
    found: dict[str, Answer] = {}
    wanted = sorted({k for k in keys if k})
    with session.begin():
        for part in _chunks(wanted, KEYS_PER_LOOKUP):
            first = (select(func.min(Attempt.id))
                     .where(Attempt.content_key.in_(part), Attempt.status == DONE,
                            Attempt.error_kind.is_distinct_from("infra_error"))
                     .group_by(Attempt.content_key))
            rows = session.execute(select(Attempt.content_key, Attempt.verdict)
                                   .where(Attempt.id.in_(first))).all()
            found.update((str(k), Answer.of(v)) for k, v in rows if v)
    return found


def outstanding(session: Session) -> int:
    """Attempts queued or running: the queue depth that backpressure is measured against."""
    return session.scalar(select(func.count()).select_from(Attempt)
                          .where(Attempt.status != DONE)) or 0


def unfinished(session: Session) -> list[str]:
    return list(session.scalars(select(Attempt.id).where(Attempt.status != DONE)
                                .order_by(Attempt.created_at)))


def _param(name: str) -> Any:
    """A bound parameter typed as the attempts column `name` (it is named w_<column>: a
    column's own name is reserved for its SET value)."""
    return bindparam(f"w_{name}", type_=ATTEMPTS.c[name].type)


def _claim_statement(takeover: bool) -> Any:
    free = ATTEMPTS.c.status != DONE
    if not takeover:
        lease = ATTEMPTS.c.lease_until
        free = and_(free, or_(ATTEMPTS.c.status != RUNNING, lease.is_(None),
                              lease <= _param("started_at")))
    text_of = (select(ASSEMBLIES.c.text)
               .where(ASSEMBLIES.c.sha256 == ATTEMPTS.c.assembly_sha256).scalar_subquery())
    return (update(ATTEMPTS).where(ATTEMPTS.c.id == _param("id"), free)
            .values(status=RUNNING, worker=_param("worker"), started_at=_param("started_at"),
                    lease_until=_param("lease_until"), tries=ATTEMPTS.c.tries + 1)
            .returning(ATTEMPTS.c.variant_id, ATTEMPTS.c.seed, ATTEMPTS.c.completion,
                       ATTEMPTS.c.tries, text_of))


# The worker's statements, built once: a worker runs them between every two verifications.
_CLAIM = {takeover: _claim_statement(takeover) for takeover in (False, True)}
_STORED = ("verdict", "worker", "finished_at", *extract.COLUMNS)
_FINISH = (update(ATTEMPTS).where(ATTEMPTS.c.id == _param("id"), ATTEMPTS.c.status != DONE)
           .values({**{name: _param(name) for name in _STORED}, "status": DONE,
                    "lease_until": None}))
_GATES = insert(GATES)


def claim(session: Session, attempt_id: str, worker: str, *, lease_s: float = 210.0,
          takeover: bool = True) -> Job | None:
    """Mark an attempt running for `lease_s` and return its job; None when it is done (or
    unknown), or when another worker runs it under a lease that has not run out and `takeover`
    is false (a duplicate message: the holder finishes it, or the sweeper re-queues it once the
    lease expires). A message the broker re-delivered because its worker was lost takes over.

    One conditional UPDATE that returns the job and the attempt's text: it takes the row's
    lock, and a concurrent claimer or finisher waits for it, then sees the row as that one
    left it."""
    now = utcnow()
    with session.begin():
        found = session.execute(_CLAIM[takeover], {
            "w_id": attempt_id, "w_worker": worker, "w_started_at": now,
            "w_lease_until": now + timedelta(seconds=lease_s)}).first()
    if found is None:
        return None
    variant_id, seed, completion, tries, text = found
    return Job(attempt_id, variant_id, text or "", seed, completion, tries)


def finish(session: Session, attempt_id: str, verdict: Verdict | Mapping[str, Any],
           worker: str) -> bool:
    """Store a verdict and its gate results once; False when the attempt was already done.
    A typed Verdict (a worker's) is read for the columns as it is, not parsed again from JSON."""
    doc = extract.stored_json(verdict.to_json() if isinstance(verdict, Verdict) else verdict)
    values = {"verdict": doc, "worker": worker, "finished_at": utcnow(),
              **extract.columns(verdict if isinstance(verdict, Verdict) else doc)}
    with session.begin():
        # One conditional UPDATE, not a locked read and a write: it takes the row's lock itself,
        # and a concurrent finisher waits for it, then finds the row done (no row matched).
        stored = session.execute(_FINISH, {"w_id": attempt_id,
                                           **{f"w_{k}": v for k, v in values.items()}})
        if not stored.rowcount:  # type: ignore[attr-defined]
            return False
        # No earlier gate rows to delete: they are written only here and by submit, each in
        # the transaction that makes the attempt done, and a done attempt is never undone.
        gates = [{"attempt_id": attempt_id, **g} for g in extract.gate_rows(doc)]
        if gates:
            session.execute(_GATES, gates)
    return True


def release(session: Session, attempt_id: str, lease_s: float) -> None:
    """Give a running attempt back to the queue (its worker re-sends it to retry later): the
    retried message may then claim it, and the sweeper waits `lease_s` before checking on it."""
    with session.begin():
        session.execute(update(Attempt)
                        .where(Attempt.id == attempt_id, Attempt.status == RUNNING)
                        .values(status=QUEUED,
                                lease_until=utcnow() + timedelta(seconds=lease_s)))


def recover(session: Session, in_broker: Callable[[], set[str]], *, lease_s: float,
            limit: int, ids: Sequence[str] | None = None) -> list[str]:
    """The attempts to queue again, marked queued with a fresh lease of `lease_s`: those not
    done whose lease ran out and that the broker does not hold (`in_broker()`, asked only
    after the rows are locked). Running attempts past their lease are re-queued whatever the
    broker says: their worker had its time. With `ids` (a resubmission) only those are looked
    at, and queued ones are checked against the broker even before their lease ends.

    Several API processes may sweep at once: rows another sweep holds are skipped (SKIP
    LOCKED), and the new lease keeps the next sweep away until it runs out, so an attempt is
    re-queued by one process at a time."""
    now = utcnow()
    query = select(Attempt.id, Attempt.status, Attempt.lease_until).where(Attempt.status != DONE)
    if ids is not None:
        query = query.where(Attempt.id.in_(list(ids)[:limit]))
    else:
        query = query.where(or_(Attempt.lease_until.is_(None), Attempt.lease_until < now))
    query = query.order_by(Attempt.created_at).limit(limit).with_for_update(skip_locked=True)
    with session.begin():
        rows = session.execute(query).all()
        if not rows:
            return []

        def expired(lease: Any) -> bool:
            return lease is None or lease < now

        held = in_broker() if any(r.status == QUEUED for r in rows) else set()
        again = [r.id for r in rows
                 if (r.status == RUNNING and expired(r.lease_until))
                 or (r.status == QUEUED and r.id not in held)]
        waiting = [r.id for r in rows if r.status == QUEUED and r.id in held]
        lease = now + timedelta(seconds=lease_s)
        for part in _chunks(again):
            session.execute(update(Attempt).where(Attempt.id.in_(part))
                            .values(status=QUEUED, lease_until=lease))
        for part in _chunks(waiting):  # in the queue, just slow: look again a lease later
            session.execute(update(Attempt).where(Attempt.id.in_(part))
                            .values(lease_until=lease))
    return [str(a) for a in again]
