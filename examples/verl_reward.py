"""verl custom reward function backed by the farm.

verl imports this file by path, so it must not use relative imports; it re-exports the adapter:

    custom_reward_function.path=examples/verl_reward.py
    custom_reward_function.name=compute_score_batch      # one farm request per batch
    reward_model.reward_manager=batch
    +custom_reward_function.reward_kwargs.base_url=http://farm:8000
    +custom_reward_function.reward_kwargs.run_id=verl-run-1
    # and ARMGYM_API_KEY in the reward workers' environment (or reward_kwargs.api_key)

(or `name=compute_score` with the default naive manager: one request per sample). The
dataset's `reward_model.ground_truth` is the variant id.

    .venv/bin/python examples/verl_reward.py      # calls both the way verl's managers do
"""

from __future__ import annotations

from armgym_client.adapters.verl import compute_score, compute_score_batch  # noqa: F401

if __name__ == "__main__":
    from _farm import candidates, farm

    texts = candidates()
    with farm() as (url, key):
        kwargs = {"base_url": url, "api_key": key, "run_id": "example-verl"}
        for label, text in texts.items():  # NaiveRewardManager: one call per sample
            score = compute_score(data_source="armgym", solution_str=text,
                                  ground_truth="relu_n64_float32", extra_info={"index": 0},
                                  **kwargs)
            print(f"{label:18} {score}")
        batch = compute_score_batch(data_sources=["armgym"] * len(texts),  # BatchRewardManager
                                    solution_strs=list(texts.values()),
                                    ground_truths=["relu_n64_float32"] * len(texts),
                                    extra_infos=[{"index": i} for i in range(len(texts))],
                                    **kwargs)
        print("batch scores:", [s["score"] for s in batch])
