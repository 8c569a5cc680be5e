"""TRL's `GRPOTrainer`: a reward function, and an `environment_factory` environment.

TRL (1.16) calls every custom reward function as

    reward_func(prompts=prompts, completions=completions, completion_ids=completion_ids,
                trainer_state=trainer_state, log_extra=log_extra, log_metric=log_metric,
                **dataset_columns)

with one entry per completion in every list, and names it by its `__name__` in its logs.
Completions are strings, or lists of chat messages for conversational datasets.

    from armgym_client.adapters.trl import RewardFunction
    reward = RewardFunction("http://farm:8000", KEY, run_id="grpo-7b-run3", model="qwen2.5-7b")
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=dataset)

`RewardFunction` is a class with `__call__` that opens its connection on first use, so it
pickles (AsyncGRPO ships reward functions to other processes); `AsyncRewardFunction` is its
coroutine twin, which TRL awaits on its own event loop. Each call scores the whole batch in one
farm request (completions are sent raw: the farm's format gate extracts the `<assembly>` block),
files it under `trainer_state.global_step`, and logs the verdicts' components: per completion
with `log_extra` (error kind, speedup, format/syntax/correctness) into TRL's completions table,
per batch with `log_metric` (pass rate, component means, infra-error rate).

Infra errors (the farm failed, not the model) and results not finished in `timeout_s` are None
by default (`on_infra="none"`). Since TRL 1.6 None is not scored as 0: that reward function is
left out of that completion's sum; a completion for which every reward function returned None
is unscorable, left out of its group's mean and given advantage 0 (TRL 1.16 warns once per
batch). `"group_mean"` gives it the mean reward of its prompt's group instead, `"raise"` stops
training, `"zero"` scores it 0 (lossy: a farm fault becomes the model's).

`ArmGymEnv` is the `environment_factory` form: TRL builds one per rollout, calls `reset` with
the dataset row (its `variant_id` picks the task), exposes `submit(assembly)` to the model as a
tool, and takes `get_reward()` as one more reward function once the rollout ends:

    trainer = GRPOTrainer(model=..., train_dataset=dataset,
                          environment_factory=environment_factory("http://farm:8000", KEY,
                                                                  run_id="grpo-tools-1"))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ..client import AsyncClient, Client
from ..models import Result, StepResult, Submission
from ._common import completion_text, group_key, settle, shared_client

LogExtra = Callable[[str, list[Any]], None]
LogMetric = Callable[[str, float], None]
COMPONENTS = ("format", "syntax", "correctness")


class _Batch:
    """One TRL call turned into submissions, the step to file them under, and their groups."""

    def __init__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 columns: dict[str, Any], variant_column: str, trainer_state: Any,
                 fallback_step: int) -> None:
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
        self.step = int(step) if step is not None else fallback_step


def _component(result: Result, name: str) -> float | None:
    value = (result.components or {}).get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def log_components(step: StepResult, log_extra: LogExtra | None,
                   log_metric: LogMetric | None, prefix: str = "armgym") -> None:
    """The verdicts behind the rewards, in TRL's completions table and its metrics."""
    results = step.results
    if log_extra is not None:
        log_extra(f"{prefix}_error_kind", [r.error_kind or ("" if r.done else r.status)
                                           for r in results])
        log_extra(f"{prefix}_speedup", [r.speedup for r in results])
        for name in COMPONENTS:
            log_extra(f"{prefix}_{name}", [_component(r, name) for r in results])
    if log_metric is not None and results:
        scored = step.scored
        log_metric(f"{prefix}/infra_error_rate", len(step.dropped) / len(results))
        if scored:
            log_metric(f"{prefix}/pass_rate", sum(bool(r.passed) for r in scored) / len(scored))
            for name in COMPONENTS:
                values = [v for v in (_component(r, name) for r in scored) if v is not None]
                if values:
                    log_metric(f"{prefix}/{name}", sum(values) / len(values))
            speedups = [r.speedup for r in scored if r.passed and r.speedup is not None]
            if speedups:
                log_metric(f"{prefix}/speedup_passed_mean", sum(speedups) / len(speedups))


class RewardFunction:
    """A picklable GRPOTrainer reward function scoring each batch with one farm request.

    The farm is `base_url` / `api_key` (else ARMGYM_URL / ARMGYM_API_KEY); its client is opened
    on the first call in each process and never pickled. The step is
    `trainer_state.global_step` when TRL passes it, else this function's call count.
    `seed_scope="group"`: the completions of one prompt (same run, step and variant) are
    judged on the same tests, drawn anew each step; only with a step TRL passes, as a call
    count starts again at 0 when the process does (and would repeat a step's tests).
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 run_id: str, model: str | None = None, variant_column: str = "variant_id",
                 profile: str | None = None, on_infra: str = "none", timeout_s: float = 600.0,
                 name: str = "armgym_reward", client: Client | AsyncClient | None = None,
                 seed_scope: str | None = None) -> None:
        self.base_url, self.api_key = base_url, api_key
        self.run_id, self.model, self.variant_column = run_id, model, variant_column
        self.profile, self.on_infra, self.timeout_s = profile, on_infra, timeout_s
        self.__name__ = name
        self.seed_scope = seed_scope
        self.calls = 0
        self._client = client

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    def _batch(self, prompts: Sequence[Any], completions: Sequence[Any],
               columns: dict[str, Any], trainer_state: Any) -> _Batch:
        self.calls += 1
        return _Batch(prompts, completions, columns, self.variant_column, trainer_state,
                      self.calls - 1)

    def _settle(self, step: StepResult, batch: _Batch, log_extra: LogExtra | None,
                log_metric: LogMetric | None) -> list[float | None]:
        log_components(step, log_extra, log_metric)
        return settle(step, batch.groups, self.on_infra)

    def _scope(self, trainer_state: Any) -> str | None:
        if self.seed_scope == "group" and getattr(trainer_state, "global_step", None) is None:
            raise ValueError("seed_scope='group' needs TRL's trainer_state.global_step: a call "
                             "count would repeat a step's tests after a restart")
        return self.seed_scope

    def _sync_client(self) -> Client:
        if self._client is None:
            self._client = shared_client(self.base_url, self.api_key, self.timeout_s)
        assert isinstance(self._client, Client)
        return self._client

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 completion_ids: Sequence[Any] | None = None, trainer_state: Any = None,
                 log_extra: LogExtra | None = None, log_metric: LogMetric | None = None,
                 **columns: Any) -> list[float | None]:
        batch = self._batch(prompts, completions, columns, trainer_state)
        step = self._sync_client().score_step(batch.submissions, run_id=self.run_id,
                                              step=batch.step, model=self.model,
                                              timeout_s=self.timeout_s, profile=self.profile,
                                              seed_scope=self._scope(trainer_state))
        return self._settle(step, batch, log_extra, log_metric)


class AsyncRewardFunction(RewardFunction):
    """The same reward function as a coroutine (`async def __call__`): TRL awaits it on its own
    event loop, concurrently with its other async reward functions. The client is opened on
    that loop at the first call."""

    async def __call__(  # type: ignore[override]
            self, prompts: Sequence[Any], completions: Sequence[Any],
            completion_ids: Sequence[Any] | None = None, trainer_state: Any = None,
            log_extra: LogExtra | None = None, log_metric: LogMetric | None = None,
            **columns: Any) -> list[float | None]:
        batch = self._batch(prompts, completions, columns, trainer_state)
        if self._client is None:
            self._client = AsyncClient(self.base_url, self.api_key, timeout_s=self.timeout_s)
        assert isinstance(self._client, AsyncClient)
        step = await self._client.score_step(batch.submissions, run_id=self.run_id,
                                             step=batch.step, model=self.model,
                                             timeout_s=self.timeout_s, profile=self.profile,
                                             seed_scope=self._scope(trainer_state))
        return self._settle(step, batch, log_extra, log_metric)


def reward_function(client: Client, *, run_id: str, **options: Any) -> RewardFunction:
    """A RewardFunction on an existing client (which is not pickled: a copy reconnects to the
    same farm)."""
    return RewardFunction(client.base_url, client.api_key, run_id=run_id, client=client,
                          **options)


def async_reward_function(client: AsyncClient, *, run_id: str,
                          **options: Any) -> AsyncRewardFunction:
    return AsyncRewardFunction(client.base_url, client.api_key, run_id=run_id, client=client,
                               **options)


class ArmGymEnv:
    """One rollout's environment for GRPOTrainer's `environment_factory`.

    TRL turns every public method but `reset` and `get_reward` into a tool, so `submit` is the
    only one. The reward is the last submission's, under `profile`: 0.0 when the model never
    submitted (its failure), None when the farm could not verify it (infra_error: TRL leaves
    the rollout out of its group instead of scoring it).
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 run_id: str, model: str | None = None, variant_column: str = "variant_id",
                 profile: str | None = None, timeout_s: float = 600.0) -> None:
        self._farm = (base_url, api_key, timeout_s, profile)
        self._run_id, self._model, self._variant_column = run_id, model, variant_column
        self._timeout_s = timeout_s
        self._variant: str | None = None
        self._last: Result | None = None

    def reset(self, **row: Any) -> str | None:
        """Start a rollout on the task of the dataset row (its variant id column)."""
        if self._variant_column not in row:
            raise KeyError(f"the dataset row has no {self._variant_column!r} column (it has "
                           f"{', '.join(sorted(row)) or 'none'})")
        self._variant, self._last = str(row[self._variant_column]), None
        return None

    def submit(self, assembly: str) -> str:
        """Verify an AArch64 assembly implementation of the kernel: assemble it, test it
        against the C reference and price it on the Neoverse V2 cost model.

        Args:
            assembly: The complete AArch64 assembly source defining the global symbol `kernel`.

        Returns:
            The verdict: the reward and speedup over the compiler when it passed, else the
            error kind and message.
        """
        if self._variant is None:
            raise RuntimeError("submit before reset: TRL resets every environment first")
        client = shared_client(*self._farm)
        result = client.step(self._variant, assembly, run_id=self._run_id, model=self._model,
                             timeout_s=self._timeout_s)
        self._last = result
        if result.dropped:
            return f"the farm could not verify this ({result.error_kind}): {result.message}"
        if result.passed:
            speed = "" if result.speedup is None else f", speedup {result.speedup:.3f}x"
            return f"passed: reward {result.reward}{speed}"
        return f"{result.error_kind}: {result.message} (reward {result.reward})"

    def get_reward(self) -> float | None:
        if self._last is None:
            return 0.0
        return self._last.reward


def environment_factory(base_url: str | None = None, api_key: str | None = None,
                        **options: Any) -> Callable[[], ArmGymEnv]:
    """The zero-argument callable TRL's `environment_factory` takes (picklable)."""
    return functools.partial(ArmGymEnv, base_url, api_key, **options)
