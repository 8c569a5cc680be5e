"""Best-known kernels as files: the exact assembly of a variant's best verified attempt (ready to
assemble or resubmit), or that assembly with the verdict that earned it."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from store import reads

from ..auth import READ
from ..farm import FarmDep

router = APIRouter(tags=["results"])


@router.get("/best/{variant_id}/download", dependencies=[READ],
            responses={200: {"content": {"text/plain": {}, "application/json": {}}}})
def download(variant_id: str, farm: FarmDep, format: Literal["s", "json"] = "s") -> Response:
    """`format=s`: `<variant>.s`, the assembly as submitted (headers name the attempt and its
    speedup); `format=json`: the best-kernel record with its assembly and full verdict."""
    with farm.sessions() as session:
        found = reads.best(session, variant_id, with_assembly=True)
        attempt = reads.attempt(session, found[0]["attempt_id"]) if found else None
    if not found or attempt is None:
        raise HTTPException(404, f"no verified kernel for {variant_id[:100]!r} yet")
    best = found[0]
    name = f"{best['variant_id']}.{'s' if format == 's' else 'json'}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"',
               "X-ArmGym-Attempt-Id": best["attempt_id"],
               "X-ArmGym-Speedup": "" if best["speedup"] is None else repr(best["speedup"])}
    if format == "s":
        return PlainTextResponse(best["assembly"], headers=headers)
    return JSONResponse(jsonable_encoder({**best, "verdict": attempt["verdict"]}),
                        headers=headers)
