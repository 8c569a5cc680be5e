"""verl reward functions.

verl loads a custom reward function from `custom_reward_function.path` / `.name` and merges
`custom_reward_function.reward_kwargs` into every call. The default (naive) reward manager calls

    compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)

once per sample and accepts a float or a dict with a "score" key (the other keys become
`reward_extra_info`, one list per key, so every sample returns the same numeric keys). The batch
reward manager (`reward_model.reward_manager=batch`) calls

    compute_score_batch(data_sources=[...], solution_strs=[...], ground_truths=[...],
                        extra_infos=[...])

once per batch and takes one such value per sample: one farm request for the whole batch, so
prefer it. The dataset's `reward_model.ground_truth` is the variant id; `solution_str` is the
decoded response, sent raw (`completion=True`: the farm extracts the `<assembly>` block).

Where the farm is: reward_kwargs `base_url`, `api_key`, `run_id` (else the environment variables
ARMGYM_URL, ARMGYM_API_KEY, ARMGYM_RUN_ID). verl cannot drop a sample, so an `infra_error` is
never silently scored: per sample the default is to raise (stop the run); in batch mode the
default gives it the mean reward of the batch's other samples of the same variant (zero advantage
in its group) and raises only when there is none. `on_infra="zero"` is the explicit lossy option.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from ..client import Client
from ..errors import InfraErrorResult
from ..models import Result, Submission
from ._common import settle

_calls = itertools.count()


@lru_cache(maxsize=8)
def _client(base_url: str | None, api_key: str | None, timeout_s: float) -> Client:
    """One client (and connection pool) per farm and key for the life of the reward worker."""
    return Client(base_url, api_key, timeout_s=timeout_s)


def _extra(result: Result, score: float) -> dict[str, float]:
    components = result.components or {}
    return {"score": score, "acc": float(bool(result.passed)),
            "format": float(components.get("format") or 0.0),
            "speedup": float(result.speedup or 0.0),  # 0.0: not measured (failed or withheld)
            "infra_error": float(result.dropped)}


def _score(solution_strs: Sequence[str], ground_truths: Sequence[Any], *, base_url: str | None,
           api_key: str | None, run_id: str | None, model: str | None, profile: str | None,
           on_infra: str, timeout_s: float, step: int | None) -> list[dict[str, float]]:
    client = _client(base_url, api_key, timeout_s)
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
