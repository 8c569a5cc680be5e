"""verl reward function backed by the farm, for verl 0.9's reward loop (its default).

Needs only armgym-client (in verl's environment). The settings, on top of verl's defaults
(tests/frameworks/test_verl.py runs verl's own RewardLoopWorker with exactly these):

    reward.custom_reward_function.path=pkg://armgym_client.adapters.verl
    reward.custom_reward_function.name=compute_score_async
    +reward.custom_reward_function.reward_kwargs.base_url=http://farm:8000
    +reward.custom_reward_function.reward_kwargs.run_id=verl-run-1
    # and ARMGYM_API_KEY in the reward workers' environment (or reward_kwargs.api_key)

The dataset's `reward_model.ground_truth` is the variant id. (`reward_model.reward_manager=batch`
no longer exists: the reward loop's registry has naive, dapo, gdpo, limited and remote.)

    ARMGYM_URL=http://farm:8000 ARMGYM_API_KEY=... python examples/verl_reward.py
    .venv/bin/python examples/verl_reward.py   # calls it the way verl's naive manager does
"""

from __future__ import annotations

import asyncio

# re-exported, so this file also works as custom_reward_function.path (older verl loads by path)
from armgym_client.adapters.verl import (  # noqa: F401
    compute_score,
    compute_score_async,
    compute_score_batch,
)


async def score_all(texts: dict[str, str], **kwargs: str) -> list[dict[str, float]]:
    """NaiveRewardManager.run_single for each sample, concurrently, as the reward loop does."""
    return await asyncio.gather(*(compute_score_async(
        data_source="armgym", solution_str=text, ground_truth="relu_n64_float32",
        extra_info={"index": i, "num_turns": None}, **kwargs)
        for i, text in enumerate(texts.values())))


if __name__ == "__main__":
    from _farm import candidates, farm

    with farm() as (url, key):
        texts = candidates(url)
        scores = asyncio.run(score_all(texts, base_url=url, api_key=key, run_id="example-verl"))
        for label, score in zip(texts, scores, strict=True):
            print(f"{label:18} {score}")
