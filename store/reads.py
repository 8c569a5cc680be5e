"""Reading the history: attempts, batch progress and results, pages of history, the views."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, or_, select, text
from sqlalchemy.orm import Session

from .models import DONE, QUEUED, RUNNING, Assembly, Attempt, Batch, BatchItem

ATTEMPT_FIELDS = (
    "idempotency_key", "run_id", "step", "model", "meta", "variant_id", "template", "seed",
    "completion", "status", "tries", "created_at", "started_at", "finished_at", "worker",
    "passed", "error_kind", "message", "reward", "reward_components", "speedup", "cycles",
    "baseline_cycles", "listing_cycles", "baseline_compiler", "verify_seconds",
    "verifier_version", "assembly_sha256",
)


def attempt_json(row: Attempt, with_verdict: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"attempt_id": row.id}
    out.update({name: getattr(row, name) for name in ATTEMPT_FIELDS})
    if with_verdict:
        out["verdict"] = row.verdict
    return out


def attempt(session: Session, attempt_id: str) -> dict[str, Any] | None:
    row = session.get(Attempt, attempt_id)
    return attempt_json(row) if row else None


def assembly_text(session: Session, digest: str) -> str | None:
    return session.scalar(select(Assembly.text).where(Assembly.sha256 == digest))


def done_ids(session: Session, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        found.update(session.scalars(select(Attempt.id).where(
            Attempt.id.in_(ids[i:i + 500]), Attempt.status == DONE)))
    return found


def batch_status(session: Session, batch_id: str) -> dict[str, Any] | None:
    """Progress of a batch: counts by state and outcome, and whether every attempt is done."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        return None
    done = Attempt.status == DONE
    counts = session.execute(
        select(
            func.count(),
            func.sum(case((done, 1), else_=0)),
            func.sum(case((Attempt.status == QUEUED, 1), else_=0)),
            func.sum(case((Attempt.status == RUNNING, 1), else_=0)),
            func.sum(case((and_(done, Attempt.passed), 1), else_=0)),
            func.sum(case((Attempt.error_kind == "infra_error", 1), else_=0)),
        ).select_from(BatchItem).join(Attempt, Attempt.id == BatchItem.attempt_id)
        .where(BatchItem.batch_id == batch_id)).one()
    total, n_done, queued, running, passed, infra = (int(v or 0) for v in counts)
    return {
        "batch_id": batch.id, "idempotency_key": batch.idempotency_key, "run_id": batch.run_id,
        "step": batch.step, "model": batch.model, "created_at": batch.created_at,
        "total": total, "done": n_done, "queued": queued, "running": running,
        "passed": passed, "failed": n_done - passed - infra, "infra_errors": infra,
        "complete": n_done == total,
    }


RESULT_COLUMNS = [getattr(Attempt, name) for name in ATTEMPT_FIELDS]


def batch_results(session: Session, batch_id: str, *, only_done: bool = False,
                  skip: set[str] | None = None,
                  content_keys: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The batch's attempts in submission order, each with its position in the batch (columns
    read as such: loading ORM objects cost more than the query). With `content_keys`, fills it
    with attempt id -> content key for those that have one (not part of the result)."""
    query = (select(BatchItem.position, Attempt.id, Attempt.content_key, *RESULT_COLUMNS,
                    Attempt.verdict)
             .join(Attempt, Attempt.id == BatchItem.attempt_id)
             .where(BatchItem.batch_id == batch_id).order_by(BatchItem.position))
    if only_done:
        query = query.where(Attempt.status == DONE)
    out = []
    for pos, attempt_id, content_key, *values in session.execute(query).all():
        if skip and attempt_id in skip:
            continue
        if content_keys is not None and content_key:
            content_keys[attempt_id] = content_key
        out.append({"position": pos, "attempt_id": attempt_id,
                    **dict(zip((*ATTEMPT_FIELDS, "verdict"), values, strict=True))})
    return out


def recent_scored(session: Session, run_id: str, variant_id: str,
                  limit: int = 32) -> list[dict[str, Any]]:
    """The run's latest verified (not infra_error) attempts of one variant, newest first."""
    rows = session.scalars(
        select(Attempt).where(Attempt.run_id == run_id, Attempt.variant_id == variant_id,
                              Attempt.status == DONE,
                              or_(Attempt.error_kind.is_(None),
                                  Attempt.error_kind != "infra_error"))
        .order_by(Attempt.created_at.desc()).limit(limit))
    return [attempt_json(row) for row in rows]


def batch_done_ids(session: Session, batch_id: str) -> set[str]:
    return set(session.scalars(
        select(Attempt.id).join(BatchItem, BatchItem.attempt_id == Attempt.id)
        .where(BatchItem.batch_id == batch_id, Attempt.status == DONE)))


@dataclass(frozen=True)
class HistoryFilter:
    run_id: str | None = None
    step: int | None = None
    model: str | None = None
    variant_id: str | None = None
    passed: bool | None = None
    error_kind: str | None = None
    status: str | None = None


# A cursor is a position in the history, "<microseconds since 1970 UTC>_<attempt id>": every
# text of this shape is one (the page after it), so the API's schema can say exactly what is
# valid.
CURSOR_PATTERN = r"^[0-9]{1,16}_[0-9a-f-]{0,36}$"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def encode_cursor(created_at: datetime, attempt_id: str) -> str:
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return f"{(created_at - EPOCH) // MICROSECOND}_{attempt_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError on a text not of CURSOR_PATTERN's shape."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValueError("malformed cursor")
    micros, attempt_id = cursor.split("_", 1)
    return EPOCH + int(micros) * MICROSECOND, attempt_id


def history(session: Session, filt: HistoryFilter, limit: int = 100,
            cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated on (created_at, id) so pages stay stable while attempts
    keep arriving; returns the page and the cursor of the next one (None at the end)."""
    query = select(Attempt)
    for name in ("run_id", "step", "model", "variant_id", "passed", "error_kind", "status"):
        value = getattr(filt, name)
        if value is not None:
            query = query.where(getattr(Attempt, name) == value)
    if cursor:
        stamp, last_id = decode_cursor(cursor)
        query = query.where(or_(Attempt.created_at < stamp,
                                and_(Attempt.created_at == stamp, Attempt.id < last_id)))
    rows = session.scalars(query.order_by(Attempt.created_at.desc(), Attempt.id.desc())
                           .limit(limit + 1)).all()
    page = [attempt_json(r, with_verdict=False) for r in rows[:limit]]
    more = len(rows) > limit
    return page, (encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if more else None)


def _plain(value: Any) -> Any:
    """PostgreSQL sums bigints into NUMERIC; hand out ints and floats as SQLite does."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _view(session: Session, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in r._mapping.items()}
            for r in session.execute(text(sql), params)]


def best(session: Session, variant_id: str | None = None,
         with_assembly: bool = False) -> list[dict[str, Any]]:
    """The best verified kernel per variant (view `variant_best`)."""
    sql = "SELECT b.*" + (", s.text AS assembly" if with_assembly else "") + \
        " FROM variant_best b" + \
        (" JOIN assemblies s ON s.sha256 = b.assembly_sha256" if with_assembly else "")
    if variant_id is not None:
        return _view(session, sql + " WHERE b.variant_id = :v", v=variant_id)
    return _view(session, sql + " ORDER BY b.variant_id")


def example(session: Session, name: str, **params: Any) -> list[dict[str, Any]]:
    """One of the documented example queries (store/queries.py), exactly as docs/store.md shows
    it: the run dashboard reads the views through these."""
    from .queries import EXAMPLES

    return _view(session, EXAMPLES[name], **params)


def recent_batches(session: Session, run_id: str | None = None,
                   limit: int = 20) -> list[dict[str, Any]]:
    """The newest batches (of one run), newest first, with how many of their attempts are done."""
    done = func.sum(case((Attempt.status == DONE, 1), else_=0))
    query = (select(Batch.id, Batch.run_id, Batch.step, Batch.total, Batch.created_at,
                    done.label("done"))
             .join(BatchItem, BatchItem.batch_id == Batch.id)
             .join(Attempt, Attempt.id == BatchItem.attempt_id)
             .group_by(Batch.id, Batch.run_id, Batch.step, Batch.total, Batch.created_at)
             .order_by(Batch.created_at.desc(), Batch.id).limit(limit))
    if run_id is not None:
        query = query.where(Batch.run_id == run_id)
    return [{"batch_id": r.id, "run_id": r.run_id, "step": r.step, "total": r.total,
             "created_at": r.created_at, "done": int(r.done or 0)}
            for r in session.execute(query)]


def run_summary(session: Session, run_id: str) -> list[dict[str, Any]]:
    return _view(session, "SELECT * FROM run_step_summary WHERE run_id = :r ORDER BY step",
                 r=run_id)


def error_histogram(session: Session, run_id: str | None = None) -> list[dict[str, Any]]:
    where = "WHERE run_id = :r " if run_id is not None else ""
    return _view(session, "SELECT outcome, SUM(attempts) AS attempts FROM error_kind_histogram "
                 f"{where}GROUP BY outcome ORDER BY attempts DESC, outcome", r=run_id)


def attempts_by_id(session: Session, ids: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), 500):
        out += [attempt_json(r) for r in
                session.scalars(select(Attempt).where(Attempt.id.in_(ids[i:i + 500])))]
    return out


def batch_order(session: Session, batch_id: str) -> list[str]:
    """The batch's attempt ids in submission order."""
    return list(session.scalars(select(BatchItem.attempt_id)
                                .where(BatchItem.batch_id == batch_id)
                                .order_by(BatchItem.position)))
