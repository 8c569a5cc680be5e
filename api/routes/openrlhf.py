"""OpenRLHF's remote reward model protocol, so a PPO / REINFORCE++ / GRPO run in OpenRLHF scores
against the farm with no client code:

    --remote_rm_url 'http://farm:8000/openrlhf/get_reward?api_key=KEY&run_id=RUN' \\
    --label_key variant_id

OpenRLHF POSTs `{"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [label,
...]}` with no header but Content-Type (hence the key in the URL; give it only the submit scope),
retries failed requests a few times a second apart, and reads `rewards` (newer versions also
`scores` and per-sample `extra_logs`). The label is the variant id. The response is the query
after its prompt, submitted raw (the format gate extracts the `<assembly>` block), as one batch.

Idempotency keys come from run, step, position and content, so a resent request (after a 503
because verification outlasted ARMGYM_MAX_WAIT_S, or a client timeout) attaches to the attempts
it created instead of verifying again. OpenRLHF cannot drop a sample, so an `infra_error` answers
503 (`on_infra=error`, the default; the farm has already retried it) unless `on_infra=group_mean`
asks to give it the mean reward of the other responses to the same prompt and variant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from store import attempts, reads
from toolchain.errors import ErrorKind
from toolchain.reward import PROFILES

from ..auth import AUTH_HELP, authorize, header_token
from ..farm import Farm, FarmDep
from ..submit import submit

router = APIRouter(tags=["trainers"])
KEY_HELP = f"{AUTH_HELP}, or put ?api_key=<key> in --remote_rm_url (OpenRLHF sends no headers)"


class RewardIn(BaseModel):
    query: list[str] = Field(description="prompt + response, as OpenRLHF decodes them")
    prompts: list[str] | None = Field(default=None, description="the prompts, to cut off")
    labels: list[str] | None = Field(default=None, description="variant ids (--label_key)")


class RewardOut(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


def response_text(query: str, prompt: str | None) -> str:
    """The response: what follows the prompt in the query (the whole query if it is absent), so
    an `<assembly>` example inside the prompt never counts as the model's answer."""
    if prompt:
        at = query.find(prompt)
        if at >= 0:
            return query[at + len(prompt):]
    return query


def _key(run_id: str | None, step: int | None, index: int, *parts: str) -> str:
    raw = "\0".join([str(run_id), str(step), str(index), *parts]).encode()
    return "openrlhf/" + hashlib.sha256(raw).hexdigest()[:40]


def _reward(row: dict[str, Any], profile: str) -> float | None:
    if row["status"] != "done" or row["error_kind"] == ErrorKind.infra_error:
        return None
    profiles = ((row.get("verdict") or {}).get("reward") or {}).get("profiles") or {}
    value = profiles.get(profile, row["reward"] if profile == "additive" else None)
    return float(value or 0.0)


def _group_mean(rewards: list[float | None], groups: Sequence[Hashable]) -> list[float | None]:
    sums: dict[Hashable, list[float]] = {}
    for group, value in zip(groups, rewards, strict=True):
        if value is not None:
            sums.setdefault(group, []).append(value)
    return [r if r is not None else (sum(sums[g]) / len(sums[g]) if g in sums else None)
            for r, g in zip(rewards, groups, strict=True)]


async def _wait_complete(farm: Farm, batch_id: str) -> list[dict[str, Any]] | None:
    def status() -> dict[str, Any] | None:
        with farm.sessions() as session:
            return reads.batch_status(session, batch_id)

    if not (await run_in_threadpool(status) or {}).get("complete"):
        await farm.hub.wait(lambda: (status() or {}).get("complete"), farm.settings.max_wait_s)
        if not (await run_in_threadpool(status) or {}).get("complete"):
            return None

    def results() -> list[dict[str, Any]]:
        with farm.sessions() as session:
            return reads.batch_results(session, batch_id)

    return await run_in_threadpool(results)


@router.post("/openrlhf/get_reward", response_model=RewardOut,
             responses={503: {"description": "still verifying, or infra_error: resend"}})
async def get_reward(body: RewardIn, farm: FarmDep,
                     api_key: str | None = Query(default=None, description="the API key"),
                     run_id: str | None = Query(default=None, max_length=200),
                     step: int | None = None,
                     model: str | None = Query(default=None, max_length=200),
                     profile: str = Query(default="additive", description="reward profile"),
                     on_infra: Literal["error", "group_mean"] = "error",
                     authorization: str | None = Header(default=None),
                     x_api_key: str | None = Header(default=None)) -> dict[str, Any]:
    """Score a batch of OpenRLHF queries; answers one reward per query, in order."""
    token = header_token(authorization, x_api_key) or api_key
    key = await run_in_threadpool(authorize, farm, token, "submit", KEY_HELP)
    n = len(body.query)
    if body.labels is None or len(body.labels) != n:
        raise HTTPException(422, "labels must hold the variant id of every query (OpenRLHF: "
                                 "--label_key <dataset column of variant ids>)")
    if body.prompts is not None and len(body.prompts) != n:
        raise HTTPException(422, f"{len(body.prompts)} prompts for {n} queries")
    if profile not in PROFILES:
        raise HTTPException(422, f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    prompts = body.prompts or [""] * n
    texts = [response_text(q, p) for q, p in zip(body.query, prompts, strict=True)]
    items = [attempts.NewAttempt(variant_id=v, assembly=t, completion=True,
                                 idempotency_key=_key(run_id, step, i, v, p, t),
                                 meta={"source": "openrlhf"})
             for i, (v, p, t) in enumerate(zip(body.labels, prompts, texts, strict=True))]
    batch_key = _key(run_id, step, n, *(it.idempotency_key or "" for it in items))
    done = await run_in_threadpool(submit, farm, key.id, items, run_id=run_id, step=step,
                                   model=model, batch_key=batch_key)
    rows = await _wait_complete(farm, done.batch_id)
    if rows is None:
        raise HTTPException(503, f"batch {done.batch_id} is still being verified; resend the "
                                 "same request to collect it", headers={"Retry-After": "1"})
    rewards = [_reward(row, profile) for row in rows]
    if on_infra == "group_mean":
        rewards = _group_mean(rewards, list(zip(body.labels, prompts, strict=True)))
    missing = [i for i, r in enumerate(rewards) if r is None]
    if missing:
        raise HTTPException(503, f"{len(missing)} of {n} attempts ended in infra_error (the "
                                 "verifier failed after its retries, not the model); see batch "
                                 f"{done.batch_id}, or pass on_infra=group_mean",
                            headers={"Retry-After": "5"})
    scored = [float(r) for r in rewards if r is not None]
    components = [((row.get("verdict") or {}).get("reward") or {}).get("components") or {}
                  for row in rows]
    return {"rewards": scored, "scores": scored, "extra_logs": {
        "correct": [float(bool(row["passed"])) for row in rows],
        "format": [float(c.get("format") or 0.0) for c in components],
        "speedup": [float(row["speedup"] or 0.0) for row in rows],
        "infra_error": [float(row["error_kind"] == ErrorKind.infra_error) for row in rows]}}
