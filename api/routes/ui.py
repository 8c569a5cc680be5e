"""The run dashboard at /ui, for the researcher without Grafana.

The page itself (/ui, /ui/static/...) holds no data; everything it shows comes from /ui/data/*,
which needs a key with the read scope (the page asks for it and sends it as a Bearer token), and
reads the same SQL views as the example queries of docs/store.md, through those very queries
(`reads.example`). Charts are drawn by uPlot, vendored from the npm registry by scripts/setup.sh
into api/ui/vendor/ (not committed: api/ui/package-lock.json pins it with its integrity hash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from store import reads

from ..deps import READ, FarmDep
from ..schemas import DashboardBatches, DashboardBest, DashboardRun, DashboardRuns

UI = Path(__file__).resolve().parent.parent / "ui"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css",
          "vendor/uPlot.iife.min.js": "text/javascript", "vendor/uPlot.min.css": "text/css"}
router = APIRouter(prefix="/ui", tags=["dashboard"])


@router.get("", include_in_schema=False)
def page() -> Response:
    missing = [name for name in ASSETS if not (UI / name).is_file()]
    if missing:
        raise HTTPException(503, f"the dashboard's assets are not built ({', '.join(missing)}): "
                                 "run ./scripts/setup.sh, which installs them with npm")
    return FileResponse(UI / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


@router.get("/static/{name:path}", include_in_schema=False)
def asset(name: str) -> Response:
    """Only the files the page uses: nothing else under api/ui is reachable."""
    if name not in ASSETS or not (UI / name).is_file():
        raise HTTPException(404, "no such asset")
    return FileResponse(UI / name, media_type=ASSETS[name])


async def _query(farm: FarmDep, name: str, **params: Any) -> list[dict[str, Any]]:
    def run() -> list[dict[str, Any]]:
        with farm.sessions() as session:
            return reads.example(session, name, **params)

    return await run_in_threadpool(run)


@router.get("/data/runs", response_model=DashboardRuns, dependencies=[READ])
async def runs(farm: FarmDep) -> dict[str, Any]:
    """Runs, most recently started first (example query `runs`)."""
    return {"runs": await _query(farm, "runs")}


@router.get("/data/runs/{run_id}", response_model=DashboardRun, dependencies=[READ])
async def run(run_id: str, farm: FarmDep) -> dict[str, Any]:
    """Per step: the learning curve (`run_curve`) and the outcome mix (`run_error_mix`)."""
    return {"run_id": run_id, "steps": await _query(farm, "run_curve", run_id=run_id),
            "mix": await _query(farm, "run_error_mix", run_id=run_id)}


@router.get("/data/best", response_model=DashboardBest, dependencies=[READ])
async def best(farm: FarmDep) -> dict[str, Any]:
    """The best verified kernel per variant (`best_kernels`); its assembly and verdict come
    from GET /best/{variant_id}/download?format=json."""
    return {"best": await _query(farm, "best_kernels")}


@router.get("/data/batches", response_model=DashboardBatches, dependencies=[READ])
async def batches(farm: FarmDep, run_id: str | None = None,
                  limit: int = Query(default=10, ge=1, le=100)) -> dict[str, Any]:
    """The newest batches (of a run) with their progress: what the live view follows."""
    def fetch() -> list[dict[str, Any]]:
        with farm.sessions() as session:
            return reads.recent_batches(session, run_id, limit)

    return {"batches": await run_in_threadpool(fetch)}
