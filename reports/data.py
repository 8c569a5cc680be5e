"""What the reports read from the store: the views (so every figure is the number the farm's own
SQL gives), the attempts of a run for the speedup distribution and the export, and the best
kernels. Reads only; works on PostgreSQL and on the embedded SQLite file alike."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from store import db, reads
from store.models import Assembly, Attempt
from store.settings import FarmSettings
from store.views import SCORED


def database_url(db_url: str | None = None, data_dir: str | None = None) -> str:
    """--db, else the embedded farm's SQLite file in --data-dir, else what ARMGYM_* says (the
    farm's PostgreSQL, or the embedded default)."""
    if db_url:
        return db_url
    if data_dir:
        found = Path(data_dir) / "farm.sqlite"
        if not found.exists():
            raise FileNotFoundError(f"no embedded farm database at {found}")
        return f"sqlite:///{found}"
    return FarmSettings.from_env().sqlalchemy_url


def engine(url: str) -> Engine:
    return db.make_engine(url, pool_size=1)


RUN_TOTALS = f"""
SELECT COUNT(*) AS attempts,
       SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS done,
       SUM(CASE WHEN {SCORED} THEN 1 ELSE 0 END) AS scored,
       SUM(CASE WHEN error_kind = 'infra_error' THEN 1 ELSE 0 END) AS infra_errors,
       SUM(CASE WHEN passed THEN 1 ELSE 0 END) AS passed,
       AVG(CASE WHEN {SCORED} THEN reward END) AS mean_reward,
       MAX(CASE WHEN passed THEN speedup END) AS best_speedup
FROM attempts
WHERE run_id = :run_id
"""

STEP_OUTCOMES = """
SELECT step, outcome, attempts
FROM error_kind_histogram
WHERE run_id = :run_id
ORDER BY step, outcome
"""


def _plain(row: Any) -> dict[str, Any]:
    return {k: reads._plain(v) for k, v in row._mapping.items()}


@dataclass
class RunHistory:
    """Everything the plots and the summary of one run need."""

    run_id: str
    steps: list[dict[str, Any]]  # view run_step_summary, ordered by step
    totals: dict[str, Any]
    outcomes: list[dict[str, Any]]  # the run's outcome histogram, most frequent first
    step_outcomes: dict[int, dict[str, int]]  # step -> outcome -> attempts
    speedups: dict[str, list[float]]  # template -> speedups of passed attempts
    best: dict[str, Any] | None = None  # the run's fastest verified attempt
    unstepped: int = field(default=0)  # attempts filed without a step (left out of the plots)


def run_history(session: Session, run_id: str) -> RunHistory:
    steps = reads.run_summary(session, run_id)
    if not steps:
        raise LookupError(f"no attempts in run {run_id!r}")
    totals = _plain(session.execute(text(RUN_TOTALS), {"run_id": run_id}).one())
    if totals["scored"]:
        totals["correctness_rate"] = totals["passed"] / totals["scored"]
    else:
        totals["correctness_rate"] = None
    mix: dict[int, dict[str, int]] = {}
    for row in session.execute(text(STEP_OUTCOMES), {"run_id": run_id}):
        if row.step is not None:
            mix.setdefault(int(row.step), {})[row.outcome] = int(row.attempts)
    speedups: dict[str, list[float]] = {}
    passed = select(Attempt.template, Attempt.speedup).where(
        Attempt.run_id == run_id, Attempt.passed, Attempt.speedup.is_not(None))
    for template, speedup in session.execute(passed):
        speedups.setdefault(template or "?", []).append(float(speedup))
    fastest = session.execute(
        select(Attempt.variant_id, Attempt.step, Attempt.speedup, Attempt.id)
        .where(Attempt.run_id == run_id, Attempt.passed, Attempt.speedup.is_not(None))
        .order_by(Attempt.speedup.desc(), Attempt.id).limit(1)).first()
    best = None if fastest is None else {"variant_id": fastest[0], "step": fastest[1],
                                         "speedup": fastest[2], "attempt_id": fastest[3]}
    return RunHistory(run_id, [s for s in steps if s["step"] is not None], totals,
                      reads.error_histogram(session, run_id), mix, speedups, best,
                      sum(s["attempts"] for s in steps if s["step"] is None))


def runs(session: Session) -> list[dict[str, Any]]:
    """Every run with its attempt count and step range, most recent first."""
    rows = session.execute(text(
        "SELECT run_id, COUNT(*) AS attempts, MIN(step) AS first_step, MAX(step) AS last_step, "
        "MAX(created_at) AS last_submitted_at FROM attempts WHERE run_id IS NOT NULL "
        "GROUP BY run_id ORDER BY last_submitted_at DESC, run_id"))
    return [_plain(r) for r in rows]


def attempts(session: Session, run_id: str | None,
             with_assembly: bool = False) -> Iterator[dict[str, Any]]:
    """The attempts of a run (all attempts with None) in step and submission order, as the API
    shows them, verdict included; with their assembly text if asked."""
    query = select(Attempt).order_by(Attempt.step, Attempt.created_at, Attempt.id)
    if run_id is not None:
        query = query.where(Attempt.run_id == run_id)
    for row in session.scalars(query.execution_options(yield_per=500)):
        out = reads.attempt_json(row)
        if with_assembly:
            out["assembly"] = session.scalar(
                select(Assembly.text).where(Assembly.sha256 == row.assembly_sha256))
        yield out


def best_kernels(session: Session, run_id: str | None = None,
                 variant_id: str | None = None) -> list[dict[str, Any]]:
    """Best verified kernel per variant (view variant_best) with assembly and verdict; only those
    found by `run_id` if given."""
    found = reads.best(session, variant_id, with_assembly=True)
    out = []
    for best in found:
        if run_id is not None and best["run_id"] != run_id:
            continue
        attempt = reads.attempt(session, best["attempt_id"]) or {}
        out.append({**best, "verdict": attempt.get("verdict")})
    return out
