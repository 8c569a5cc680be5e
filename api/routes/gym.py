"""The original environment's endpoints: GET /health, POST /reset, POST /step, GET /tasks."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from store import attempts
from store import baselines as stored_baselines
from toolchain import VERIFIER_VERSION, baselines, kernels
from toolchain.errors import InfraError
from toolchain.gates.performance import gate as performance
from toolchain.settings import Settings

from ..deps import FarmDep, SubmitKey
from ..farm import Farm
from ..observation import DEFAULT_PROFILE, check_profile, observation
from ..schemas import (
    BaselineOut,
    HealthOut,
    PendingOut,
    ResetIn,
    ResetOut,
    StepIn,
    TasksOut,
    VerdictOut,
)
from ..submit import Verified, answer_from_memory, remember, submit
from ..vocab import DType, Profile, Split, Template
from ..waiting import finished, wait_until

router = APIRouter(tags=["environment"])


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(response: Response, farm: FarmDep) -> HealthOut:
    """Every tool and its version, broker and database reachability, sandbox mode, queue:
    the last background check's report (api/health.py), so it answers at once however many
    clients are waiting."""
    found = await farm.health.report()
    ok = found["database"]["reachable"] and found["broker"]["reachable"]
    response.status_code = 200 if ok else 503
    return HealthOut(status="ok" if ok else "degraded",
                     mode=farm.dispatcher.mode,  # type: ignore[arg-type]
                     verifier_version=VERIFIER_VERSION, **found)


def _variants(template: str | None, dtype: str | None, difficulty: int | None,
              split: str | None) -> list[kernels.Variant]:
    return kernels.filter_variants(template, dtype, difficulty, split)


@router.get("/tasks", response_model=TasksOut)
def tasks(template: Template | None = None, dtype: DType | None = None,
          difficulty: int | None = Query(default=None, ge=1, le=3),
          split: Split | None = None,
          source: bool = Query(default=False, description="include each variant's C source"),
          ) -> dict[str, Any]:
    """Every variant with its difficulty and split, filterable."""
    found = _variants(template, dtype, difficulty, split)
    return {"count": len(found), "tasks": [v.to_json(with_source=source) for v in found]}


def _baseline(variant: kernels.Variant, compiler: str, cycles: dict[str, float],
              settings: Settings) -> BaselineOut | None:
    try:
        base = baselines.get(variant, compiler, settings=settings)
    except InfraError:
        return None  # this API host has no such compiler; the task is still valid
    return BaselineOut(compiler=base.compiler, opt=base.opt, toolchain=base.toolchain,
                       flags=list(base.flags), assembly=base.assembly,
                       cycles=cycles.get(compiler))


def _cycles(variant: kernels.Variant, seed: int, farm: Farm) -> dict[str, float]:
    """Every compiler baseline's cycles on the input an attempt with `seed` is timed on:
    measured here (cached on disk), or, on an API host without the emulator and cost model
    (the farm's API image), as the workers stored them (data-independent baselines only)."""
    try:
        return performance.baseline_cycles(variant, seed, farm.settings.core)
    except (InfraError, OSError):
        pass
    with farm.sessions() as session:
        rows = stored_baselines.for_variant(session, variant, farm.settings.core)
    found = {r["compiler"]: float(r["cycles"]) for r in rows if r["cycles"] is not None}
    return found if set(found) == set(baselines.COMPILERS) else {}


def pick_variant(query: ResetIn) -> tuple[kernels.Variant, int]:
    """The variant a reset asks for, and its seed (random when none is given)."""
    seed = secrets.randbits(63) if query.seed is None else query.seed
    if query.variant_id is not None:
        try:
            return kernels.get(query.variant_id), seed
        except KeyError:
            raise HTTPException(404, f"unknown variant_id {query.variant_id[:100]!r}") from None
    pool = _variants(query.template, query.dtype, query.difficulty, query.split)
    if not pool:
        raise HTTPException(404, "no variant matches these filters")
    pick = int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "big")
    return pool[pick % len(pool)], seed


def task(query: ResetIn, farm: Farm) -> dict[str, Any]:
    """A task as the original's /reset gave it: variant, C source, signature, every compiler
    baseline with its cycles, and the reference cycles a candidate must beat."""
    variant, seed = pick_variant(query)
    cycles = _cycles(variant, seed, farm)
    found = [b for b in (_baseline(variant, c, cycles, farm.settings.core)
                           for c in baselines.COMPILERS) if b]
    best = min(cycles, key=lambda c: (cycles[c], c)) if cycles else None
    return {**variant.to_json(with_source=True), "seed": seed,
            "prototype": variant.signature.c_prototype(),
            "baseline": found[0] if found else None, "baselines": found,
            "baseline_cycles": cycles.get(best) if best else None, "baseline_compiler": best,
            "reward": None, "done": False}


@router.post("/reset", response_model=ResetOut)
async def reset(farm: FarmDep, body: Annotated[ResetIn | None, Body()] = None,
                seed: int | None = Query(default=None, ge=0, lt=2**63,
                                         description="picks the variant deterministically"),
                variant_id: str | None = None, template: Template | None = None,
                dtype: DType | None = None,
                difficulty: int | None = Query(default=None, ge=1, le=3),
                split: Split | None = None) -> dict[str, Any]:
    """A task: variant id, C source, signature, the compiler baselines (assembly, cycles) and
    the baseline cycles to beat. Parameters come as a JSON body or as query parameters."""
    query = ResetIn(seed=seed, variant_id=variant_id, template=template, dtype=dtype,
                    difficulty=difficulty, split=split)
    if body is not None:
        query = query.model_copy(update=body.model_dump(exclude_unset=True))
    return await run_in_threadpool(task, query, farm)


@router.post("/step", response_model=VerdictOut, responses={202: {"model": PendingOut}})
async def step(body: StepIn, farm: FarmDep, key: SubmitKey,
               profile: Annotated[Profile, Query(
                   description="the reward profile of the top-level reward")] = DEFAULT_PROFILE,
               ) -> Any:
    """Verify one submission and answer with the original's observation and the verdict
    (synchronously, up to ARMGYM_MAX_WAIT_S; after that 202 with the attempt id to fetch it
    later)."""
    check_profile(profile)
    found = await verify_one(farm, key.id, body, wake=False)
    if isinstance(found, str):
        return JSONResponse(status_code=202, content={
            "attempt_id": found, "status": "pending",
            "detail": f"not done yet; GET /attempts/{found}?wait=60"})
    if found.from_memory and found.key:  # its body rendered once per profile (see below)
        verdict = found.verdict
        response = verdict_response(verdict, found.attempt_id,
                                    body=_rendered(farm, found.key, verdict, profile))
        response.background = BackgroundTask(_after_sending, farm, None, profile)
        return response
    response = verdict_response(found.verdict, found.attempt_id, profile)
    if found.key:  # a fresh verdict now in memory: its duplicates' body, made in advance
        response.background = BackgroundTask(_after_sending, farm, found.key, profile)
    return response


async def _after_sending(farm: Farm, key: str | None, profile: str) -> None:
    """Once a /step answer is sent: wake the writer of the attempts answered from memory (its
    thread would compete with the response for the GIL), and render the body the duplicates
    of a fresh verdict (`key`) will be answered with, so the first one does not."""
    farm.recorder.wake()
    answer = farm.recent.get(key)
    if key and answer is not None:
        _rendered(farm, key, answer.verdict, profile)


def _rendered(farm: Farm, key: str, verdict: dict[str, Any], profile: str) -> bytes:
    """The body of `verdict` (its Answer's, in memory) under `profile`, rendered once."""
    return farm.recent.rendered(key, verdict, profile, lambda: verdict_body(verdict, profile))


async def verify_one(farm: Farm, key_id: int, body: StepIn,
                     wake: bool = True) -> Verified | str:
    """Submit one attempt and wait for it up to ARMGYM_MAX_WAIT_S: the verdict and attempt id,
    or the attempt id alone when it is still running. `wake=False`: the caller wakes the writer
    of an attempt answered from memory (Recorder.wake) once its answer is sent."""
    item = attempts.NewAttempt(variant_id=body.variant_id, assembly=body.assembly,
                               idempotency_key=body.idempotency_key, seed=body.seed,
                               completion=body.completion, seed_scope=body.seed_scope)
    known = answer_from_memory(farm, key_id, item, run_id=body.run_id, step=body.step,
                               model=body.model, wake=wake)
    if known is not None:  # a duplicate this process has seen: answered, stored just after
        return known
    done = await run_in_threadpool(submit, farm, key_id, [item], run_id=body.run_id,
                                   step=body.step, model=body.model)
    attempt_id = done.attempt_ids[0]
    if attempt_id in done.answered:  # an identical attempt's (known_answers remembers it)
        return Verified(done.answered[attempt_id], attempt_id)
    result = await wait_until(farm, finished(attempt_id), farm.settings.max_wait_s,
                              attempt_id=attempt_id)
    if result is None:
        return attempt_id
    key = remember(farm, item, result["verdict"], run_id=body.run_id, step=body.step)  # done
    return Verified(result["verdict"], attempt_id, key)


def verdict_body(verdict: dict[str, Any], profile: str = DEFAULT_PROFILE) -> bytes:
    """The stored verdict (already JSON) with the observation beside it, encoded as JSONResponse
    does, without the attempt id (verdict_response closes the object with it): serialised
    directly, not re-validated against VerdictOut (which documents it), which cost more than
    the rest of a cached /step."""
    doc = {**verdict, "reward_detail": verdict.get("reward"), **observation(verdict, profile)}
    doc.pop("attempt_id", None)
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def verdict_response(verdict: dict[str, Any], attempt_id: str, profile: str = DEFAULT_PROFILE,
                     body: bytes | None = None) -> Response:
    """The /step answer: `body` (verdict_body of `verdict`, rendered already) or the verdict's,
    with `attempt_id` as its last field."""
    body = verdict_body(verdict, profile) if body is None else body
    return Response(body[:-1] + b',"attempt_id":' + json.dumps(attempt_id).encode() + b"}",
                    media_type="application/json")
