"""TRL GRPOTrainer reward function backed by the farm.

    ARMGYM_URL=http://farm:8000 ARMGYM_API_KEY=... python examples/trl_grpo.py
    .venv/bin/python examples/trl_grpo.py        # or an embedded farm from this checkout

Needs only armgym-client: the script calls the reward function exactly as TRL 1.16's
`GRPOTrainer._calculate_rewards` does (keywords `prompts`, `completions`, `completion_ids`,
`trainer_state`, `log_extra`, `log_metric` and every dataset column, one entry per completion).
In a real run (tests/frameworks/test_trl.py runs this on CPU with a tiny model):

    reward = RewardFunction(url, key, run_id="grpo-run-1", model="qwen2.5-coder-7b")
    trainer = GRPOTrainer(model="Qwen/Qwen2.5-Coder-7B-Instruct", reward_funcs=[reward],
                          args=GRPOConfig(num_generations=8, ...), train_dataset=dataset)
    trainer.train()

with a dataset whose rows carry `prompt` and `variant_id` (from the farm's GET /tasks and POST
/reset). `reward` returns one float per completion, or None for an attempt the farm could not
verify (infra_error), which TRL 1.6+ leaves out of that completion's sum (a completion with
only None rewards gets advantage 0) instead of scoring it. For tool use, see
`armgym_client.adapters.trl.environment_factory` (reset with the row's variant, a
`submit(assembly)` tool, `get_reward`).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

from _farm import candidates, farm
from armgym_client.adapters.trl import RewardFunction


@dataclass
class TrainerState:  # the field of transformers.TrainerState the adapter reads
    global_step: int = 0


def main() -> None:
    with farm() as (url, key):
        texts = candidates(url)
        reward = RewardFunction(url, key, run_id="example-trl", model="example")
        reward = pickle.loads(pickle.dumps(reward))  # as AsyncGRPO ships it to its workers
        prompt = [{"role": "user", "content": "Write relu_n64_float32 in AArch64 assembly, "
                                              "in <assembly> tags."}]
        completions = [[{"role": "assistant", "content": t}] for t in texts.values()]
        rewards = reward(prompts=[prompt] * len(completions), completions=completions,
                         completion_ids=[[0]] * len(completions),
                         trainer_state=TrainerState(global_step=1),
                         log_extra=lambda column, values: print(f"  column {column}: {values}"),
                         log_metric=lambda name, value: print(f"  metric {name}: {value:.3f}"),
                         variant_id=["relu_n64_float32"] * len(completions))
        for label, value in zip(texts, rewards, strict=True):
            print(f"{label:18} reward {value}")


if __name__ == "__main__":
    main()
