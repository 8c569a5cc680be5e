"""A reward function for TRL's `GRPOTrainer`.

TRL calls every custom reward function as

    reward_func(prompts=prompts, completions=completions, completion_ids=completion_ids,
                trainer_state=trainer_state, **dataset_columns)

with one entry per completion in every list (the prompt repeated `num_generations` times), and
names the function by its `__name__` in its logs. Completions are strings, or lists of chat
messages for conversational datasets. The function must return one float per completion; None
means "not applicable" and TRL leaves it out (if every reward function returns None for a row,
TRL warns and that row's total becomes 0). An async function is awaited, concurrently with the
other async reward functions (recent TRL).

Usage (the dataset has a `variant_id` column):

    from armgym_client import Client
    from armgym_client.adapters.trl import reward_function

    reward = reward_function(Client(url, key), run_id="grpo-7b-run3", model="qwen2.5-7b")
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=dataset)

Each call scores the whole batch in one request. Completions are sent raw (`completion=True`):
the farm's format gate extracts the single `<assembly>` block and scores the format component.
`infra_error` results (and results not finished in `timeout_s`) are None by default
(`on_infra="none"`); `"group_mean"` gives them the mean reward of their prompt's group (zero
advantage, and no row of zeros), `"raise"` stops training.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

from ..client import AsyncClient, Client
from ..models import Submission
from ._common import completion_text, group_key, settle

RewardFunc = Callable[..., list[float | None]]
AsyncRewardFunc = Callable[..., Awaitable[list[float | None]]]


class _Batch:
    """One TRL call turned into submissions, the step to file them under, and their groups."""

    def __init__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 columns: dict[str, Any], variant_column: str, trainer_state: Any,
                 counter: itertools.count[int]) -> None:
        if variant_column not in columns:
            raise KeyError(f"the dataset has no {variant_column!r} column (TRL passed: "
                           f"{', '.join(sorted(columns)) or 'none'}); add the variant id of "
                           "every prompt, or set variant_column=")
        variants = list(columns[variant_column])
        if len(variants) != len(completions):
            raise ValueError(f"{len(variants)} variant ids for {len(completions)} completions")
        self.submissions = [Submission(str(v), completion_text(c), completion=True)
                            for v, c in zip(variants, completions, strict=True)]
        self.groups: list[Hashable] = [(str(v), group_key(p))
                                       for v, p in zip(variants, prompts, strict=True)]
        step = getattr(trainer_state, "global_step", None)
        self.step = int(step) if step is not None else next(counter)


def reward_function(client: Client, *, run_id: str, model: str | None = None,
                    variant_column: str = "variant_id", profile: str | None = None,
                    on_infra: str = "none", timeout_s: float = 600.0,
                    name: str = "armgym_reward") -> RewardFunc:
    """A GRPOTrainer reward function scoring each batch with one farm request.

    The step is `trainer_state.global_step` when TRL passes it, else a per-function call count.
    """
    counter = itertools.count()

    def reward(prompts: Sequence[Any], completions: Sequence[Any],
               completion_ids: Sequence[Any] | None = None, trainer_state: Any = None,
               **columns: Any) -> list[float | None]:
        batch = _Batch(prompts, completions, columns, variant_column, trainer_state, counter)
        step = client.score_step(batch.submissions, run_id=run_id, step=batch.step, model=model,
                                 timeout_s=timeout_s, profile=profile)
        return settle(step, batch.groups, on_infra)

    reward.__name__ = reward.__qualname__ = name
    return reward


def async_reward_function(client: AsyncClient, *, run_id: str, model: str | None = None,
                          variant_column: str = "variant_id", profile: str | None = None,
                          on_infra: str = "none", timeout_s: float = 600.0,
                          name: str = "armgym_reward") -> AsyncRewardFunc:
    """The same reward function as a coroutine function: TRL runs it on its own event loop,
    concurrently with other async reward functions."""
    counter = itertools.count()

    async def reward(prompts: Sequence[Any], completions: Sequence[Any],
                     completion_ids: Sequence[Any] | None = None, trainer_state: Any = None,
                     **columns: Any) -> list[float | None]:
        batch = _Batch(prompts, completions, columns, variant_column, trainer_state, counter)
        step = await client.score_step(batch.submissions, run_id=run_id, step=batch.step,
                                       model=model, timeout_s=timeout_s, profile=profile)
        return settle(step, batch.groups, on_infra)

    reward.__name__ = reward.__qualname__ = name
    return reward
