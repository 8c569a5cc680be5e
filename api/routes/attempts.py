"""Attempts: one attempt with its verdict (optionally waiting for it), and the history, newest
first, paginated by cursor."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from store import reads

from ..deps import READ, FarmDep, SessionDep
from ..schemas import AttemptOut, HistoryOut
from ..vocab import INT32, ErrorKindName, Status
from ..waiting import finished, wait_limit, wait_until

router = APIRouter(prefix="/attempts", tags=["results"], dependencies=[READ])
WAIT = Query(default=0.0, ge=0, description="seconds to wait for completion (long poll)")


@router.get("/{attempt_id}", response_model=AttemptOut)
async def get_attempt(attempt_id: str, farm: FarmDep, wait: float = WAIT) -> dict[str, Any]:
    """One attempt with its verdict; with ?wait=N, held open until it is done or N seconds."""

    def fetch() -> dict[str, Any] | None:
        with farm.sessions() as session:
            return reads.attempt(session, attempt_id)

    if attempt_id in farm.recorder:  # answered from memory a moment ago: stored shortly
        await run_in_threadpool(farm.recorder.settle, attempt_id, 10.0)
    found = await run_in_threadpool(fetch)
    if found is None:
        raise HTTPException(404, f"no attempt {attempt_id[:64]!r}")
    if found["status"] != "done" and wait > 0:
        found = await wait_until(farm, finished(attempt_id), wait_limit(farm, wait),
                                 attempt_id=attempt_id) or await run_in_threadpool(fetch)
    return found


@router.get("", response_model=HistoryOut)
def history(session: SessionDep, run_id: str | None = None,
            step: int | None = Query(default=None, ge=INT32[0], le=INT32[1]),
            model: str | None = None,
            variant_id: str | None = None, passed: bool | None = None,
            error_kind: ErrorKindName | None = None, status: Status | None = None,
            limit: int = Query(default=100, ge=1, le=1000),
            cursor: str | None = Query(default=None, pattern=reads.CURSOR_PATTERN,
                                       description="next_cursor of the last page"),
            ) -> dict[str, Any]:
    """Attempt history, newest first, filterable, paginated by cursor (without verdicts; fetch
    one attempt for its verdict)."""
    filt = reads.HistoryFilter(run_id, step, model, variant_id, passed, error_kind, status)
    try:
        page, nxt = reads.history(session, filt, limit, cursor)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return {"attempts": page, "next_cursor": nxt}
