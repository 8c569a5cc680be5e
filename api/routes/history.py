"""Results and history: one attempt (optionally waiting for it), pages of attempts, the best
kernel per variant, and per-run summaries from the store's views."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from store import reads

from ..auth import READ
from ..errors import INT32
from ..farm import Farm, FarmDep

router = APIRouter(tags=["results"])
WAIT = Query(default=0.0, ge=0, description="seconds to wait for completion (long poll)")


class AttemptOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    attempt_id: str
    status: str
    variant_id: str
    idempotency_key: str | None = None
    run_id: str | None = None
    step: int | None = None
    model: str | None = None
    seed: int
    created_at: datetime
    finished_at: datetime | None = None
    worker: str | None = None
    passed: bool | None = None
    error_kind: str | None = None
    reward: float | None = None
    speedup: float | None = None
    cycles: float | None = None
    verdict: dict[str, Any] | None = None


class HistoryOut(BaseModel):
    attempts: list[AttemptOut]
    next_cursor: str | None


def wait_limit(farm: Farm, wait: float) -> float:
    return min(wait, farm.settings.max_wait_s)


@router.get("/attempts/{attempt_id}", response_model=AttemptOut, dependencies=[READ])
async def get_attempt(attempt_id: str, farm: FarmDep, wait: float = WAIT) -> dict[str, Any]:
    """One attempt with its verdict; with ?wait=N, held open until it is done or N seconds."""

    def fetch() -> dict[str, Any] | None:
        with farm.sessions() as session:
            return reads.attempt(session, attempt_id)

    def finished() -> dict[str, Any] | None:
        found = fetch()
        return found if found and found["status"] == "done" else None

    found = await run_in_threadpool(fetch)
    if found is None:
        raise HTTPException(404, f"no attempt {attempt_id[:64]!r}")
    if found["status"] != "done" and wait > 0:
        found = await farm.hub.wait(finished, wait_limit(farm, wait),
                                    attempt_id=attempt_id) or await run_in_threadpool(fetch)
    return found


@router.get("/attempts", response_model=HistoryOut, dependencies=[READ])
def history(farm: FarmDep, run_id: str | None = None,
            step: int | None = Query(default=None, ge=INT32[0], le=INT32[1]),
            model: str | None = None,
            variant_id: str | None = None, passed: bool | None = None,
            error_kind: str | None = None, status: str | None = None,
            limit: int = Query(default=100, ge=1, le=1000),
            cursor: str | None = Query(default=None, description="next_cursor of the last page"),
            ) -> dict[str, Any]:
    """Attempt history, newest first, filterable, paginated by cursor (without verdicts; fetch
    one attempt for its verdict)."""
    filt = reads.HistoryFilter(run_id, step, model, variant_id, passed, error_kind, status)
    with farm.sessions() as session:
        try:
            page, nxt = reads.history(session, filt, limit, cursor)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
    return {"attempts": page, "next_cursor": nxt}


@router.get("/best", dependencies=[READ])
def best_all(farm: FarmDep) -> dict[str, Any]:
    """The best verified kernel found so far for every variant that has one."""
    with farm.sessions() as session:
        found = reads.best(session)
    return {"count": len(found), "kernels": found}


@router.get("/best/{variant_id}", dependencies=[READ])
def best_one(variant_id: str, farm: FarmDep) -> dict[str, Any]:
    """The best verified kernel of one variant, with its assembly and who found it."""
    with farm.sessions() as session:
        found = reads.best(session, variant_id, with_assembly=True)
    if not found:
        raise HTTPException(404, f"no verified kernel for {variant_id[:100]!r} yet")
    return found[0]


@router.get("/runs/{run_id}/summary", dependencies=[READ])
def run_summary(run_id: str, farm: FarmDep) -> dict[str, Any]:
    """Per step: attempts, correctness rate, mean reward, best speedup (view run_step_summary)."""
    with farm.sessions() as session:
        return {"run_id": run_id, "steps": reads.run_summary(session, run_id)}


@router.get("/errors", dependencies=[READ])
def errors(farm: FarmDep, run_id: str | None = None) -> dict[str, Any]:
    """Outcome histogram (error kinds and 'pass'), for one run or all."""
    with farm.sessions() as session:
        return {"run_id": run_id, "outcomes": reads.error_histogram(session, run_id)}
