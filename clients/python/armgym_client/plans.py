"""Sans-I/O request plans. Each operation is a generator that yields `Call`s and receives their
`Reply`s, so the sync and the async client share all of the logic (idempotency keys, chunking,
long-poll loops, parsing) and differ only in how a call is sent and how they sleep."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import quote

from .models import (
    BestKernel,
    Result,
    StepResult,
    Submission,
    SubmissionLike,
    Verdict,
    as_submission,
    batch_key,
    derive_key,
)

T = TypeVar("T")
POLL_S = 60.0  # one long poll; the farm caps it at ARMGYM_MAX_WAIT_S anyway


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    wait_s: float = 0.0  # the server holds the request this long: extends the read timeout
    idempotent: bool = True  # safe to resend when it may already have reached the server
    accept: tuple[int, ...] = ()  # error statuses handed back instead of raised
    text: bool = False  # the body is text, not JSON


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


Plan = Generator[Call, Reply, T]


@dataclass(frozen=True)
class PendingStep:
    """A submitted step whose results are not collected yet (see Client.submit_step)."""

    batch_ids: list[str]
    total: int
    run_id: str | None
    step: int | None


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def get_json(path: str, **params: Any) -> Plan[Any]:
    return (yield Call("GET", path, _clean(params))).body


def health() -> Plan[dict[str, Any]]:
    """The farm answers 503 with the same body when the broker or database is down."""
    return (yield Call("GET", "/health", accept=(503,))).body


SEED_SCOPES = ("attempt", "group")


def check_seed_scope(seed_scope: str | None, run_id: str | None, step: int | None,
                     seeds: Sequence[int | None]) -> None:
    """Refuse before sending what the farm would refuse (seed_scope_* errors): 'group' shares
    the seed of one run, step and variant, so it needs both and takes no seed of its own."""
    if seed_scope is None or seed_scope == "attempt":
        return
    if seed_scope != "group":
        raise ValueError(f"seed_scope must be one of {SEED_SCOPES}, not {seed_scope!r}")
    if run_id is None or step is None:
        raise ValueError("seed_scope='group' needs run_id and step: a group is the attempts of "
                         "one run, step and variant")
    if any(seed is not None for seed in seeds):
        raise ValueError("seed_scope='group' derives the seed on the farm: send no seed")


def submit_step(items: Sequence[SubmissionLike], *, run_id: str | None, step: int | None,
                model: str | None, completion: bool, max_batch: int,
                seed_scope: str | None = None) -> Plan[PendingStep]:
    subs = [as_submission(item, completion) for item in items]
    if not subs:
        raise ValueError("nothing to score: the step has no submissions")
    check_seed_scope(seed_scope, run_id, step, [s.seed for s in subs])
    keys = [s.idempotency_key or (derive_key(run_id, step, i, s) if run_id is not None else None)
            for i, s in enumerate(subs)]
    batch_ids = []
    for start in range(0, len(subs), max_batch):
        part = range(start, min(start + max_batch, len(subs)))
        body: dict[str, Any] = _clean({"run_id": run_id, "step": step, "model": model,
                                       "seed_scope": seed_scope})
        body["attempts"] = [subs[i].body(keys[i]) for i in part]
        chunk_keys = [keys[i] for i in part]
        keyed = all(k is not None for k in chunk_keys)
        if keyed:
            body["idempotency_key"] = batch_key(k for k in chunk_keys if k is not None)
        accepted = yield Call("POST", "/batches", json=body, idempotent=keyed)
        batch_ids.append(accepted.body["batch_id"])
    return PendingStep(batch_ids, len(subs), run_id, step)


def wait_batch(batch_id: str, deadline: float) -> Plan[list[dict[str, Any]]]:
    """Long-poll one batch until it is complete or the deadline passes; its results in order."""
    while True:
        left = max(0.0, deadline - time.monotonic())
        wait = min(left, POLL_S)
        body = (yield Call("GET", f"/batches/{quote(batch_id)}", {"wait": round(wait, 3)},
                           wait_s=wait)).body
        if body["complete"] or left <= 0:
            return list(body.get("results") or [])


def wait_step(pending: PendingStep, *, profile: str, timeout_s: float) -> Plan[StepResult]:
    deadline = time.monotonic() + timeout_s
    results: list[Result] = []
    for batch_id in pending.batch_ids:
        offset = len(results)
        for row in (yield from wait_batch(batch_id, deadline)):
            result = Result.from_attempt(row, profile)
            results.append(_at(result, offset + (row.get("position") or 0)))
    return StepResult(results, pending.batch_ids, pending.run_id, pending.step)


def _at(result: Result, position: int) -> Result:
    """Positions across a step split into several batches count from the step's start."""
    return replace(result, position=position)


def attempt(attempt_id: str, *, profile: str, wait_s: float = 0.0) -> Plan[Result]:
    path = f"/attempts/{quote(attempt_id)}"
    body = (yield Call("GET", path, {"wait": wait_s}, wait_s=wait_s)).body
    return Result.from_attempt(body, profile)


def step(sub: Submission, *, run_id: str | None, step: int | None, model: str | None,
         profile: str, timeout_s: float, seed_scope: str | None = None) -> Plan[Result]:
    """POST /step (the original environment's call): verify one submission and wait for it."""
    check_seed_scope(seed_scope, run_id, step, [sub.seed])
    deadline = time.monotonic() + timeout_s
    body = {**sub.body(sub.idempotency_key), **_clean({"run_id": run_id, "step": step,
                                                        "model": model,
                                                        "seed_scope": seed_scope})}
    reply = yield Call("POST", "/step", json=body, idempotent=sub.idempotency_key is not None,
                       wait_s=min(timeout_s, POLL_S * 2))
    if reply.status == 202:  # still running after the farm's own wait: poll the attempt
        attempt_id = reply.body["attempt_id"]
        while True:
            left = max(0.0, deadline - time.monotonic())
            result = yield from attempt(attempt_id, profile=profile, wait_s=min(left, POLL_S))
            if result.done or left <= 0:
                return result
    body = reply.body  # the original's observation beside the verdict (its reward object is
    verdict = {**body, "reward": body.get("reward_detail", body.get("reward"))}  # reward_detail)
    return Result.from_attempt({"attempt_id": verdict["attempt_id"],
                                "variant_id": verdict["variant_id"], "status": "done",
                                "passed": verdict.get("passed"),
                                "error_kind": verdict.get("error_kind"),
                                "message": verdict.get("message"),
                                "speedup": _speedup(verdict), "verdict": verdict,
                                "idempotency_key": sub.idempotency_key}, profile)


def _speedup(verdict: Mapping[str, Any]) -> float | None:
    """The speedup the reward counts (None when withheld or not measured)."""
    components = Verdict.read(verdict).components or {}
    value = components.get("speedup")
    return float(value) if isinstance(value, int | float) else None


def best_kernel(variant_id: str) -> Plan[BestKernel]:
    body = yield from get_json(f"/best/{quote(variant_id)}/download", format="json")
    return BestKernel.from_json(body)


def history(filters: Mapping[str, Any], limit: int,
            cursor: str | None) -> Plan[tuple[list[dict[str, Any]], str | None]]:
    body = yield from get_json("/attempts", **filters, limit=limit, cursor=cursor)
    return body["attempts"], body["next_cursor"]


def score_step(items: Sequence[SubmissionLike], *, run_id: str | None, step: int | None,
               model: str | None, completion: bool, max_batch: int, profile: str,
               timeout_s: float, seed_scope: str | None = None) -> Plan[StepResult]:
    pending = yield from submit_step(items, run_id=run_id, step=step, model=model,
                                     completion=completion, max_batch=max_batch,
                                     seed_scope=seed_scope)
    return (yield from wait_step(pending, profile=profile, timeout_s=timeout_s))


def reset(params: Mapping[str, Any]) -> Plan[dict[str, Any]]:
    return (yield Call("POST", "/reset", _clean(params))).body
