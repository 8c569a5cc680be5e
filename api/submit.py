"""Submission, shared by POST /step and POST /batches: validate at the door (clear 4xx instead of
a stored failure for what is the client's mistake), apply backpressure, store, then queue."""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from store import attempts
from toolchain import kernels, limits, verdict_cache
from toolchain.settings import Settings
from toolchain.verify import MIN_GROUP_SECRET, derive_seed, group_seed

from .farm import Farm
from .recent import CACHE_WORKER
from .vocab import INT32

MAX_REPORTED = 20  # problems listed per error response
OUTSTANDING_MAX_AGE_S = 0.5  # how stale the queue depth behind backpressure may be
log = logging.getLogger(__name__)


def _seed(item: attempts.NewAttempt, run_id: str | None, step: int | None,
          secret: str) -> int:
    """The client's seed; else the group's (seed_scope 'group', checked by _seed_problems);
    else one derived from the content: identical attempts get identical tests."""
    if item.seed is not None:
        return item.seed
    if item.seed_scope == "group":
        assert run_id is not None and step is not None
        return group_seed(run_id, step, item.variant_id, secret)
    return derive_seed(item.variant_id, item.assembly, item.completion, secret)


def _addressed(item: attempts.NewAttempt, farm: Farm, run_id: str | None = None,
               step: int | None = None) -> attempts.NewAttempt:
    """The item with its template, its seed (_seed) and its verdict cache key, worked out once
    per content (RecentVerdicts.address): a duplicate's are those of its original."""
    step = item.step if item.step is not None else step
    group = item.seed_scope == "group" and item.seed is None  # the seed is the group's
    content = (item.variant_id, item.assembly, item.completion, item.seed, item.seed_scope,
               run_id if group else None, step if group else None)

    def work() -> tuple[int, str]:
        seed = _seed(item, run_id, step, farm.settings.core.seed_secret)
        return seed, verdict_cache.key(item.variant_id, item.assembly, seed, item.completion,
                                       farm.settings.core)

    seed, key = farm.recent.address(content, work)
    return replace(item, template=kernels.get(item.variant_id).template, seed=seed,
                   content_key=key)


def _has_nul(value: object) -> bool:
    """A NUL anywhere in a string, key or nested value (PostgreSQL text and JSONB refuse it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _step_problem(step: int | None) -> str | None:
    if step is not None and not INT32[0] <= step <= INT32[1]:
        return f"step {step} is out of range ({INT32[0]}..{INT32[1]})"
    return None


def _problem(item: attempts.NewAttempt, settings: Settings) -> tuple[int, str] | None:
    """(status, message) for an item the API refuses, None when it may be queued. The input
    limits are the core's (toolchain.limits, the input gate's own check), of which the API
    refuses early those it could not store or carry."""
    found = limits.input_problem(item.assembly, settings)
    if found is not None and found.refused_early:
        return found.status, found.message
    if _has_nul([item.variant_id, item.idempotency_key, item.meta]):
        return 422, "variant_id, idempotency_key or meta contains NUL characters"
    step = _step_problem(item.step)
    if step:
        return 422, step
    try:
        kernels.get(item.variant_id)
    except KeyError:
        return 404, f"unknown variant_id {item.variant_id[:100]!r} (see GET /tasks)"
    return None


def validate_batch(run_id: str | None, step: int | None, model: str | None,
                   batch_key: str | None) -> None:
    """The fields of the request around its attempts."""
    if _has_nul([run_id, model, batch_key]):
        raise HTTPException(422, "run_id, model or idempotency_key contains NUL characters")
    problem = _step_problem(step)
    if problem:
        raise HTTPException(422, problem)


def _seed_problem(item: attempts.NewAttempt, run_id: str | None, step: int | None,
                  secret: str) -> tuple[str, str] | None:
    """(error type, message) when the attempt's seed_scope cannot be honoured: an unknown
    scope, a group attempt that brings a seed too, a group without its run or step, a
    deployment without a usable secret."""
    if item.seed_scope == "attempt":
        return None
    if item.seed_scope != "group":
        return "seed_scope_unknown", (f"seed_scope {str(item.seed_scope)[:50]!r} is not one of "
                                      "'attempt', 'group'")
    if item.seed is not None:
        return "seed_scope_conflict", "seed_scope 'group' derives the seed; send no seed"
    if run_id is None or (item.step if item.step is not None else step) is None:
        return "seed_scope_group_key", ("seed_scope 'group' needs run_id and step (a group is "
                                        "the attempts of one run, step and variant)")
    if len(secret) < MIN_GROUP_SECRET:
        return "seed_scope_unavailable", ("this deployment has no seed secret of at least "
                                          f"{MIN_GROUP_SECRET} characters (ARMGYM_SEED_SECRET):"
                                          " group seeds are off")
    return None


def _seed_problems(items: Sequence[attempts.NewAttempt], run_id: str | None, step: int | None,
                   secret: str) -> list[dict[str, object]]:
    """Each refused seed_scope as a validation error (FastAPI's shape, its own type)."""
    errors: list[dict[str, object]] = []
    for position, item in enumerate(items):
        found = _seed_problem(item, run_id, step, secret)
        if found:
            errors.append({"loc": ("body", "attempts", position, "seed_scope"),
                           "msg": f"attempt {position}: {found[1]}", "type": found[0],
                           "input": item.seed_scope})
    return errors


def validate(items: Sequence[attempts.NewAttempt], farm: Farm, *, run_id: str | None = None,
             step: int | None = None) -> None:
    """The attempts' problems as one 4xx; `run_id` and `step` (the request's) place a group
    seed_scope."""
    if not items:
        raise HTTPException(422, "no attempts: send at least one")
    if len(items) > farm.settings.max_batch:
        raise HTTPException(413, f"{len(items)} attempts in one request; the limit is "
                                 f"{farm.settings.max_batch} (ARMGYM_MAX_BATCH)")
    keys = [it.idempotency_key for it in items if it.idempotency_key is not None]
    if len(set(keys)) < len(keys):  # the request contradicts itself: answered before the rest
        twice = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise HTTPException(409, f"idempotency_key {twice[:100]!r} appears twice in this "
                                 "request: one key names one attempt")
    problems = []
    for position, item in enumerate(items):
        found = _problem(item, farm.settings.core)
        if found:
            problems.append((position, *found))
    if problems:
        kinds = {p[1] for p in problems}  # one kind of problem is answered as that kind
        status = kinds.pop() if len(kinds) == 1 else 422
        listed = "; ".join(f"attempt {pos}: {msg}" for pos, _, msg in problems[:MAX_REPORTED])
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED \
            else ""
        raise HTTPException(status, f"{len(problems)} attempt(s) refused: {listed}{more}")
    seeds = _seed_problems(items, run_id, step, farm.settings.core.seed_secret)
    if seeds:
        raise RequestValidationError(seeds)


def refuse(farm: Farm, waiting: int) -> None:
    """429 with Retry-After: the attempts already waiting plus these would exceed the queue
    limit (Farm.admission refuses early on this process's count; the store's count, exact
    across API processes, has the last word)."""
    farm.metrics.rejected.inc()
    raise HTTPException(
        429, f"queue full: {waiting} attempts waiting, limit {farm.settings.queue_limit}; "
             f"retry after {farm.settings.retry_after_s} s",
        headers={"Retry-After": str(max(1, math.ceil(farm.settings.retry_after_s)))})


def _enqueue(farm: Farm, attempt_ids: list[str]) -> None:
    """Queue stored attempts. The submission is stored, so a broker that cannot be reached does
    not fail it: the sweeper queues these once their lease runs out and the broker is back."""
    try:
        farm.dispatcher.enqueue(attempt_ids)
    except Exception as exc:
        log.error("could not queue %d stored attempts (%s: %s); the sweeper will", len(attempt_ids),
                  type(exc).__name__, str(exc)[:200])


def submit(farm: Farm, key_id: int, items: Sequence[attempts.NewAttempt], *,
           run_id: str | None = None, step: int | None = None, model: str | None = None,
           batch_key: str | None = None) -> attempts.Submitted:
    validate_batch(run_id, step, model, batch_key)
    validate(items, farm, run_id=run_id, step=step)
    with farm.admission(len(items), farm.settings.queue_limit,
                        OUTSTANDING_MAX_AGE_S) as waiting:
        if waiting is not None:
            refuse(farm, waiting)
        new = [_addressed(it, farm, run_id=run_id, step=step) for it in items]
        with farm.sessions() as session:
            cached = known_answers(farm, [it.content_key or "" for it in new], session)
            try:
                done = attempts.submit(session, key_id, new, run_id=run_id, step=step,
                                       model=model, batch_key=batch_key, worker=CACHE_WORKER,
                                       cached=cached, lease_s=farm.settings.sweep_grace_s,
                                       limit=farm.settings.queue_limit)
            except attempts.QueueFull as full:  # other API processes filled it meanwhile
                refuse(farm, full.waiting)
    if farm.settings.fault_kill_before_enqueue:  # tests/faults: die stored but not queued
        os.kill(os.getpid(), signal.SIGKILL)
    farm.metrics.cached.inc(len(done.answered))
    queued = [a for a in done.created if a not in done.answered]
    if queued:  # counted by Farm.admission already
        _enqueue(farm, queued)
    if done.pending:  # resubmitted: queue again whatever of it is stuck
        try:
            farm.sweeper.sweep(ids=done.pending)
        except Exception as exc:  # the periodic sweep will
            log.error("could not check %d resubmitted attempts (%s: %s)", len(done.pending),
                      type(exc).__name__, str(exc)[:200])
    farm.metrics.submitted.inc(len(done.created))
    farm.metrics.deduplicated.inc(len(done.attempt_ids) - len(done.created))
    return done


def known_answers(farm: Farm, keys: Sequence[str],
                  session: Session | None = None) -> dict[str, attempts.Answer]:
    """The Answers the verdict cache has for content `keys` (/step and /batches alike): this
    process's memory first (api/recent.py), then, with `session`, the database for the rest
    (attempts.cached_answers), which are remembered for the next duplicate. Empty when the
    verdict cache is off."""
    if not farm.settings.core.verdict_cache:
        return {}
    found: dict[str, attempts.Answer] = {}
    for k in keys:
        answer = farm.recent.get(k)
        if answer is not None:
            found[k] = answer
    missing = [k for k in keys if k and k not in found]
    if session is not None and missing:
        stored = attempts.cached_answers(session, missing)
        for k, answer in stored.items():
            farm.recent.keep(k, answer)
        found.update(stored)
    return found


class Verified(NamedTuple):
    """A verdict and the id its attempt is stored under; `key`, its content key, when this
    process's memory holds its Answer (RecentVerdicts.rendered); `from_memory` when the verdict
    is that Answer's and the attempt is stored by the writer (Recorder.wake)."""
    verdict: dict[str, Any]
    attempt_id: str
    key: str | None = None
    from_memory: bool = False


def answer_from_memory(farm: Farm, key_id: int, item: attempts.NewAttempt, *,
                       run_id: str | None, step: int | None, model: str | None,
                       wake: bool = True) -> Verified | None:
    """A duplicate's verdict from this process's memory and the id its attempt is stored under
    just after (api/recent.py); None when the attempt must go through the database: it has an
    idempotency key, the verdict cache is off, or its verdict is not in memory. `wake=False`:
    the caller wakes the writer once its answer is sent (Recorder.record)."""
    if item.idempotency_key is not None or not farm.settings.core.verdict_cache \
            or not farm.recent.enabled:
        return None
    validate_batch(run_id, step, model, None)
    validate([item], farm, run_id=run_id, step=step)
    new = _addressed(item, farm, run_id=run_id, step=step)
    key = new.content_key or ""
    answer = known_answers(farm, [key]).get(key)
    if answer is None:
        return None
    attempt_id = farm.recorder.record(key_id, new, answer, run_id=run_id, step=step,
                                      model=model, wake=wake)
    if attempt_id is None:  # the writer is behind (the database away): the usual path
        return None
    farm.metrics.cached.inc()
    farm.metrics.submitted.inc()
    return Verified(answer.verdict, attempt_id, key, from_memory=True)


def remembers(farm: Farm) -> bool:
    """Whether this process keeps finished verdicts for their duplicates (api/recent.py)."""
    return farm.settings.core.verdict_cache and farm.recent.enabled


def remember(farm: Farm, item: attempts.NewAttempt, verdict: dict[str, Any] | None, *,
             run_id: str | None = None, step: int | None = None) -> str | None:
    """Keep a finished verdict for the duplicates of `item` (answer_from_memory); `run_id` and
    `step` place a group seed_scope, as for submit. Its content key once in memory."""
    if not remembers(farm):
        return None
    key = _addressed(item, farm, run_id=run_id, step=step).content_key
    farm.recent.put(key, verdict)
    return key if key in farm.recent else None
