"""Per-run figures from the store's views: each step's attempts, correctness rate, mean reward
and best speedup, and the outcome histogram."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from store import reads

from ..deps import READ, SessionDep
from ..schemas import Outcomes, RunSummary

router = APIRouter(prefix="/runs", tags=["results"], dependencies=[READ])
errors = APIRouter(prefix="/errors", tags=["results"], dependencies=[READ])


@router.get("/{run_id}/summary", response_model=RunSummary)
def run_summary(run_id: str, session: SessionDep) -> dict[str, Any]:
    """Per step: attempts, correctness rate, mean reward, best speedup (view run_step_summary)."""
    return {"run_id": run_id, "steps": reads.run_summary(session, run_id)}


@errors.get("", response_model=Outcomes)
def outcomes(session: SessionDep, run_id: str | None = None) -> dict[str, Any]:
    """Outcome histogram (error kinds and 'pass'), for one run or all."""
    return {"run_id": run_id, "outcomes": reads.error_histogram(session, run_id)}
