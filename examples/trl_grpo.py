"""TRL GRPOTrainer reward function backed by the farm.

    .venv/bin/python examples/trl_grpo.py        # embedded farm, or ARMGYM_URL / ARMGYM_API_KEY

TRL is not needed to run this: the script calls the reward function exactly as
`GRPOTrainer._calculate_rewards` does (keyword arguments `prompts`, `completions`,
`completion_ids`, `trainer_state` and every dataset column, one entry per completion). In a real
run, the last lines are all it takes:

    trainer = GRPOTrainer(model="Qwen/Qwen2.5-Coder-7B-Instruct", reward_funcs=[reward],
                          args=GRPOConfig(num_generations=8, ...), train_dataset=dataset)
    trainer.train()

with a dataset whose rows carry `prompt` and `variant_id` (e.g. from the farm's GET /tasks and
POST /reset). `reward` returns one float per completion, or None for an attempt the farm could
not verify (infra_error), which TRL leaves out instead of scoring.
"""

from __future__ import annotations

from dataclasses import dataclass

from _farm import candidates, farm
from armgym_client import Client
from armgym_client.adapters.trl import reward_function


@dataclass
class TrainerState:  # the fields of transformers.TrainerState the adapter reads
    global_step: int = 0


def main() -> None:
    texts = candidates()
    with farm() as (url, key), Client(url, key) as client:
        reward = reward_function(client, run_id="example-trl", model="example")
        prompt = [{"role": "user", "content": "Write relu_n64_float32 in AArch64 assembly, "
                                              "in <assembly> tags."}]
        completions = [[{"role": "assistant", "content": t}] for t in texts.values()]
        rewards = reward(prompts=[prompt] * len(completions), completions=completions,
                         completion_ids=[[0]] * len(completions),
                         trainer_state=TrainerState(global_step=1),
                         variant_id=["relu_n64_float32"] * len(completions))
        for label, value in zip(texts, rewards, strict=True):
            print(f"{label:18} reward {value}")


if __name__ == "__main__":
    main()
