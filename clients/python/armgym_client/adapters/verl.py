"""verl reward functions, importable as `pkg://armgym_client.adapters.verl`.

verl 0.9's default configuration scores through the reward loop (`RewardLoopWorker`, whose
registry has `naive`, `dapo`, `gdpo`, `limited`, `remote`: no `batch`). Its naive manager loads
`reward.custom_reward_function.path` / `.name`, merges `.reward_kwargs` into every call and, when
the function is a coroutine function, awaits

    compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)

once per sample, concurrently for the whole batch, on the worker's event loop. So, with verl's
defaults otherwise unchanged:

    reward.custom_reward_function.path=pkg://armgym_client.adapters.verl
    reward.custom_reward_function.name=compute_score_async
    +reward.custom_reward_function.reward_kwargs.base_url=http://farm:8000
    +reward.custom_reward_function.reward_kwargs.run_id=verl-run-1
    # and ARMGYM_API_KEY in the reward workers' environment (or reward_kwargs.api_key)

It returns a dict with "score" (the reward under `profile`) and the same numeric keys for every
sample (acc, format, speedup, infra_error), which verl reports as `reward_extra_info`. The
dataset's `reward_model.ground_truth` is the variant id; `solution_str` is the decoded response,
sent raw (`completion=True`: the farm extracts the `<assembly>` block). Each sample is one POST
/step, which holds until its verdict is ready (ARMGYM_MAX_WAIT_S), then polls.

`compute_score` (sync, per sample: the reward loop runs it in a thread, and older verl's naive
manager calls it) and `compute_score_batch` (older verl's `reward_model.reward_manager=batch`,
which 0.9's trainer no longer uses) remain for older setups.

Where the farm is: reward_kwargs `base_url`, `api_key`, `run_id` (else the environment variables
ARMGYM_URL, ARMGYM_API_KEY, ARMGYM_RUN_ID). verl cannot drop a sample, so an `infra_error` is
never silently scored: per sample the default is to raise (the reward loop fails and so does the
step: the farm is broken, not the model); in batch mode the default gives it the mean reward of
the batch's other samples of the same variant (zero advantage in its group) and raises only
when there is none. `on_infra="zero"` is the explicit lossy option.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import weakref
from collections.abc import Sequence
from typing import Any

from ..client import AsyncClient
from ..errors import InfraErrorResult
from ..models import DEFAULT_PROFILE, Result, StepResult, Submission
from ._common import settle, shared_client

_calls = itertools.count()


# One async client per event loop (a client's connections belong to the loop that opened them).
_ASYNC: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], AsyncClient]] \
    = weakref.WeakKeyDictionary()


def _async_client(base_url: str | None, api_key: str | None, timeout_s: float,
                  profile: str | None) -> AsyncClient:
    clients = _ASYNC.setdefault(asyncio.get_running_loop(), {})
    key = (base_url, api_key, timeout_s, profile)
    if key not in clients:
        clients[key] = AsyncClient(base_url, api_key, timeout_s=timeout_s,
                                   profile=profile or DEFAULT_PROFILE)
    return clients[key]


def _extra(result: Result, score: float) -> dict[str, float]:
    components = result.components or {}
    return {"score": score, "acc": float(bool(result.passed)),
            "format": float(components.get("format") or 0.0),
            "speedup": float(result.speedup or 0.0),  # 0.0: not measured (failed or withheld)
            "infra_error": float(result.dropped)}


def _score(solution_strs: Sequence[str], ground_truths: Sequence[Any], *, base_url: str | None,
           api_key: str | None, run_id: str | None, model: str | None, profile: str | None,
           on_infra: str, timeout_s: float, step: int | None) -> list[dict[str, float]]:
    client = shared_client(base_url, api_key, timeout_s)
    subs = [Submission(str(v), s, completion=True)
            for v, s in zip(ground_truths, solution_strs, strict=True)]
    result = client.score_step(subs, run_id=run_id or os.environ.get("ARMGYM_RUN_ID"),
                               step=step, model=model, profile=profile, timeout_s=timeout_s)
    rewards = settle(result, [str(v) for v in ground_truths], on_infra)
    if any(r is None for r in rewards):
        raise InfraErrorResult("verl needs a number for every sample and some attempts could "
                               "not be scored (infra_error or not finished); see the farm's "
                               "history for the batch " + ", ".join(result.batch_ids))
    return [_extra(r, float(s)) for r, s in zip(result.results, rewards, strict=True)]


def compute_score(data_source: str, solution_str: str, ground_truth: str,
                  extra_info: dict[str, Any] | None = None, *, base_url: str | None = None,
                  api_key: str | None = None, run_id: str | None = None,
                  model: str | None = None, profile: str | None = None,
                  on_infra: str = "raise", timeout_s: float = 600.0,
                  **_: Any) -> dict[str, float]:
    """Score one response (verl's per-sample signature); `ground_truth` is the variant id."""
    return _score([solution_str], [ground_truth], base_url=base_url, api_key=api_key,
                  run_id=run_id, model=model, profile=profile, on_infra=on_infra,
                  timeout_s=timeout_s, step=None)[0]


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str],
                        ground_truths: Sequence[str],
                        extra_infos: Sequence[dict[str, Any] | None] | None = None, *,
                        base_url: str | None = None, api_key: str | None = None,
                        run_id: str | None = None, model: str | None = None,
                        profile: str | None = None, on_infra: str = "group_mean",
                        timeout_s: float = 600.0, **_: Any) -> list[dict[str, float]]:
    """Score a whole batch in one request (verl's batch reward manager). verl does not pass the
    training step, so attempts are filed under this function's call count in this process."""
    return _score(solution_strs, ground_truths, base_url=base_url, api_key=api_key,
                  run_id=run_id, model=model, profile=profile, on_infra=on_infra,
                  timeout_s=timeout_s, step=next(_calls))


async def compute_score_async(data_source: str, solution_str: str, ground_truth: str,
                              extra_info: dict[str, Any] | None = None, *,
                              base_url: str | None = None, api_key: str | None = None,
                              run_id: str | None = None, model: str | None = None,
                              profile: str | None = None, on_infra: str = "raise",
                              timeout_s: float = 600.0, **_: Any) -> dict[str, float]:
    """Score one response on the reward loop's event loop (one POST /step)."""
    client = _async_client(base_url, api_key, timeout_s, profile)
    result = await client.step(str(ground_truth), solution_str, completion=True,
                               run_id=run_id or os.environ.get("ARMGYM_RUN_ID"), model=model,
                               timeout_s=timeout_s)
    (reward,) = settle(StepResult([result], []), [str(ground_truth)], on_infra)
    if reward is None:
        raise InfraErrorResult(f"verl needs a number for every sample and the farm could not "
                               f"score attempt {result.attempt_id} ({result.status}, "
                               f"{result.error_kind}: {result.message})")
    return _extra(result, float(reward))
