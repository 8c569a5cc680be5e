"""The best verified kernel per variant: the list, one variant's with its assembly, and the same
as a file (the exact assembly, ready to assemble or resubmit, or that assembly with the verdict
that earned it)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from store import reads

from ..deps import READ, SessionDep
from ..schemas import BestKernels, BestKernelWithAssembly

router = APIRouter(prefix="/best", tags=["results"], dependencies=[READ])

def _one(session: SessionDep, variant_id: str) -> dict[str, Any]:
    found = reads.best(session, variant_id, with_assembly=True)
    if not found:
        raise HTTPException(404, f"no verified kernel for {variant_id[:100]!r} yet")
    return found[0]

@router.get("", response_model=BestKernels)
def best_all(session: SessionDep) -> dict[str, Any]:
    """The best verified kernel found so far for every variant that has one."""
    found = reads.best(session)
    return {"count": len(found), "kernels": found}

@router.get("/{variant_id}", response_model=BestKernelWithAssembly)
def best_one(variant_id: str, session: SessionDep) -> dict[str, Any]:
    """The best verified kernel of one variant, with its assembly and who found it."""
    return _one(session, variant_id)

@router.get("/{variant_id}/download",
            responses={200: {"content": {"text/plain": {}, "application/json": {}},
                             "description": "the assembly (format=s) or the record with its "
                                            "verdict (format=json)"}})
def download(variant_id: str, session: SessionDep, format: Literal["s", "json"] = "s") -> Response:
    """`format=s`: `<variant>.s`, the assembly as submitted (headers name the attempt and its
    speedup); `format=json`: the best-kernel record with its assembly and full verdict."""
    best = _one(session, variant_id)
    attempt = reads.attempt(session, best["attempt_id"])
    if attempt is None:
        raise HTTPException(404, f"no verified kernel for {variant_id[:100]!r} yet")
    name = f"{best['variant_id']}.{'s' if format == 's' else 'json'}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"',
               "X-ArmGym-Attempt-Id": best["attempt_id"],
               "X-ArmGym-Speedup": "" if best["speedup"] is None else repr(best["speedup"])}
    if format == "s":
        return PlainTextResponse(best["assembly"], headers=headers)
    return JSONResponse(jsonable_encoder({**best, "verdict": attempt["verdict"]}),
                        headers=headers)
