"""OpenRLHF's remote reward model protocol, so a PPO / REINFORCE++ / GRPO run in OpenRLHF (0.11)
scores against the farm with no client code:

    --reward.remote_url 'http://farm:8000/openrlhf/get_reward?api_key=KEY&run_id=RUN' \\
    --data.label_key variant_id

OpenRLHF 0.11 POSTs one sample per request once it is generated (`SingleTurnAgentExecutor`:
`{"query": [prompt + response], "prompts": [prompt], "labels": [label]}`, only a Content-Type
header, hence the key in the URL: give it only the submit scope), with a 180 s timeout, tries 5
times a second apart, and reads `rewards`, `scores` and `extra_logs`. The label is the variant
id; the response is the query after its prompt, submitted raw (the format gate extracts the
`<assembly>` block). A request with several samples is one batch, as before.

The per-sample path is /step's: one submission, an answer from the verdict cache or a hold on
that one attempt's completion (woken by the farm, not by polling the batch), one row read. The
hold is bounded (`hold_s`, default 150 s, below OpenRLHF's timeout); past it the answer is 503
with Retry-After, and the resend (idempotency keys come from run, step, position and content)
attaches to the attempt it created instead of verifying again.

`rewards` are the reward under `profile`; `scores` are 1.0 for a verified-correct kernel and
0.0 otherwise, in [0, 1] as OpenRLHF's dynamic filtering (`--algo.dynamic_filtering_range`)
expects; `extra_logs` carry correctness, format, speedup and infra_error per sample.

Infra errors (the farm already retried them). OpenRLHF 0.11 cannot drop a sample: a request
that fails 5 times leaves the sample without a reward and the run stops. So by default
(`on_infra=group_mean`) an attempt the farm could not verify gets the mean reward and score of
the other attempts with the same prompt and variant in the request, else of the run's latest
verified attempts of the same variant (`run_id` in the URL): zero expected advantage, flagged in
`extra_logs.infra_error`. With neither (a farm that cannot verify this variant at all), and with
`on_infra=error`, the answer is 503: the run should stop rather than train on invented rewards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Security
from starlette.concurrency import run_in_threadpool

from store import attempts, reads
from toolchain.verdict import Verdict

from ..deps import (
    API_KEY_HEADER,
    API_KEY_QUERY,
    AUTH_HELP,
    BEARER,
    FarmDep,
    authorize,
    header_token,
)
from ..farm import Farm
from ..observation import DEFAULT_PROFILE, check_profile, profile_reward
from ..schemas import RewardIn, RewardOut
from ..submit import submit
from ..vocab import STEP_RANGE, Profile
from ..waiting import finished, wait_until

router = APIRouter(prefix="/openrlhf", tags=["trainers"])
KEY_HELP = (f"{AUTH_HELP}, or put ?api_key=<key> in --reward.remote_url (OpenRLHF sends no "
            "headers)")
HOLD_S = 150.0  # below the 180 s total timeout of OpenRLHF's reward requests






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


def _group_mean(values: list[float | None], groups: Sequence[Hashable]) -> list[float | None]:
    sums: dict[Hashable, list[float]] = {}
    for group, value in zip(groups, values, strict=True):
        if value is not None:
            sums.setdefault(group, []).append(value)
    return [r if r is not None else (sum(sums[g]) / len(sums[g]) if g in sums else None)
            for r, g in zip(values, groups, strict=True)]


async def _verdicts(farm: Farm, done: attempts.Submitted,
                    hold_s: float) -> list[dict[str, Any]] | None:
    """The verdict of every attempt in order, or None when some are still running after
    `hold_s`. Answered ones (verdict cache, identical resends) cost no query; a single pending
    attempt is waited on by its id, as /step does; several by the farm's completion signal."""
    ids = done.attempt_ids
    pending = [a for a in ids if a not in done.answered]
    found: dict[str, dict[str, Any]] = dict(done.answered)
    if len(pending) == 1:
        (only,) = pending
        row = await wait_until(farm, finished(only), hold_s, attempt_id=only)
        if not row:
            return None
        found[only] = row["verdict"]
    elif pending:
        if not await wait_until(farm, lambda s: len(reads.done_ids(s, pending)) == len(pending),
                                hold_s):
            return None

        def rows() -> list[dict[str, Any]]:
            with farm.sessions() as session:
                return reads.attempts_by_id(session, pending)

        found.update({r["attempt_id"]: r["verdict"] for r in await run_in_threadpool(rows)})
    return [found[a] for a in ids]


def _history_mean(farm: Farm, run_id: str | None, variant_id: str,
                  profile: str) -> tuple[float, float] | None:
    """(mean reward, mean score) of the run's latest verified attempts of the variant."""
    if run_id is None:
        return None
    with farm.sessions() as session:
        rows = reads.recent_scored(session, run_id, variant_id)
    pairs = [(profile_reward(r["verdict"] or {}, profile), float(bool(r["passed"])))
             for r in rows]
    scored = [(rw, sc) for rw, sc in pairs if rw is not None]
    if not scored:
        return None
    return (sum(rw for rw, _ in scored) / len(scored), sum(sc for _, sc in scored) / len(scored))


@router.post("/get_reward", response_model=RewardOut,
             responses={503: {"description": "still verifying, or infra_error with nothing "
                                             "to stand in for it: resend"}})
async def get_reward(body: RewardIn, farm: FarmDep, request: Request,
                     api_key: Annotated[str | None, Security(API_KEY_QUERY)],
                     _bearer: Annotated[object, Security(BEARER)],
                     _header: Annotated[object, Security(API_KEY_HEADER)],
                     run_id: str | None = Query(default=None, max_length=200),
                     step: int | None = Query(default=None, **STEP_RANGE),
                     model: str | None = Query(default=None, max_length=200),
                     profile: Annotated[Profile, Query(description="reward profile")
                                        ] = DEFAULT_PROFILE,
                     on_infra: Literal["group_mean", "error"] = "group_mean",
                     hold_s: float = Query(default=HOLD_S, gt=0, le=HOLD_S,
                                           description="longest the request is held"),
                     ) -> dict[str, Any]:
    """Score OpenRLHF queries (one per request from OpenRLHF 0.11, or a batch); one reward
    and one score per query, in order."""
    headers = request.headers
    token = header_token(headers.get("authorization"), headers.get("x-api-key")) or api_key
    key = await authorize(farm, token, "submit", KEY_HELP)
    n = len(body.query)
    if body.labels is None or len(body.labels) != n:
        raise HTTPException(422, "labels must hold the variant id of every query (OpenRLHF: "
                                 "--data.label_key <dataset column of variant ids>)")
    if body.prompts is not None and len(body.prompts) != n:
        raise HTTPException(422, f"{len(body.prompts)} prompts for {n} queries")
    check_profile(profile)
    prompts = body.prompts or [""] * n
    texts = [response_text(q, p) for q, p in zip(body.query, prompts, strict=True)]
    items = [attempts.NewAttempt(variant_id=v, assembly=t, completion=True,
                                 idempotency_key=_key(run_id, step, i, v, p, t),
                                 meta={"source": "openrlhf"})
             for i, (v, p, t) in enumerate(zip(body.labels, prompts, texts, strict=True))]
    batch_key = _key(run_id, step, n, *(it.idempotency_key or "" for it in items))
    done = await run_in_threadpool(submit, farm, key.id, items, run_id=run_id, step=step,
                                   model=model, batch_key=batch_key)
    verdicts = await _verdicts(farm, done, min(hold_s, farm.settings.max_wait_s))
    if verdicts is None:
        raise HTTPException(503, f"still being verified (batch {done.batch_id}); resend the "
                                 "same request to collect it", headers={"Retry-After": "1"})
    typed = [Verdict.load(v) for v in verdicts]  # one that does not read: no reward, as infra
    rewards = [profile_reward(v, profile) for v in typed]
    scores = [None if r is None else float(v.passed)
              for r, v in zip(rewards, typed, strict=True)]
    infra = [float(r is None) for r in rewards]
    if any(infra) and on_infra == "group_mean":
        groups = list(zip(body.labels, prompts, strict=True))
        rewards, scores = _group_mean(rewards, groups), _group_mean(scores, groups)
        for i in [i for i, r in enumerate(rewards) if r is None]:
            mean = await run_in_threadpool(_history_mean, farm, run_id, body.labels[i], profile)
            if mean is not None:
                rewards[i], scores[i] = mean
    missing = sum(r is None for r in rewards)
    if missing:
        raise HTTPException(503, f"{missing} of {n} attempts ended in infra_error (the "
                                 "verifier failed after its retries, not the model) and "
                                 + ("on_infra=error" if on_infra == "error" else
                                    "no verified attempt of the same variant in this request "
                                    "or run stands in for them")
                                 + f"; see batch {done.batch_id}",
                            headers={"Retry-After": "5"})
    perf = [v.performance if v else None for v in typed]
    return {"rewards": rewards, "scores": scores, "extra_logs": {
        "correct": [float(bool(v and v.passed)) for v in typed],
        "format": [float(v.reward.components.format or 0.0) if v and v.reward else 0.0
                   for v in typed],
        "speedup": [float(p.speedup or 0.0) if p else 0.0 for p in perf],
        "infra_error": infra}}
