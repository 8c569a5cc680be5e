"""Compiler baselines per variant, served from the database (store/baselines.py): the C source,
each compiler's -O3 assembly and its cycles under the cost model once a worker measured them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from store import baselines
from toolchain import kernels

from ..deps import FarmDep
from ..schemas import VariantBaselines

router = APIRouter(prefix="/baselines", tags=["environment"])






@router.get("/{variant_id}", response_model=VariantBaselines)
async def variant_baselines(variant_id: str, farm: FarmDep) -> dict[str, Any]:
    """A variant's C source and compiler baselines, as stored for the current toolchain (the
    first request under a new compiler builds and stores them)."""
    try:
        variant = kernels.get(variant_id)
    except KeyError:
        raise HTTPException(404, f"unknown variant_id {variant_id[:100]!r}") from None

    def read() -> list[dict[str, Any]]:
        with farm.sessions() as session:
            return baselines.for_variant(session, variant, farm.settings.core)

    return {"variant_id": variant.id, "prototype": variant.signature.c_prototype(),
            "c_source": variant.c_source, "baselines": await run_in_threadpool(read)}
