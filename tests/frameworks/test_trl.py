"""TRL 1.16's GRPOTrainer on CPU, rewards computed by a real embedded farm: a tiny random model
built from a config and a character-level tokenizer built here (nothing downloaded).

The configuration (docs/trainers.md) is the one these tests run:

    GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[reward],
                train_dataset=dataset, args=GRPOConfig(**GRPO_ARGS))
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from farm.conftest import USER_KEY, Api, embedded_server, logs  # noqa: F401
from trl import GRPOConfig, GRPOTrainer
from trl.chat_template_utils import qwen3_chat_template

from . import tiny

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "python"))

from armgym_client import Client  # noqa: E402
from armgym_client.adapters.trl import (  # noqa: E402
    ArmGymEnv,
    AsyncRewardFunction,
    RewardFunction,
    environment_factory,
)

RELU, VEC_ADD = "relu_n64_float32", "vec_add_n64_float32"
GRPO_ARGS: dict[str, Any] = dict(
    per_device_train_batch_size=4, num_generations=2, max_completion_length=12, max_steps=2,
    learning_rate=1e-3, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
    save_strategy="no", log_completions=False, seed=0, dataloader_num_workers=0)


def dataset(conversational: bool = False) -> Dataset:
    rows = []
    for variant in (RELU, VEC_ADD, RELU, VEC_ADD):
        text = f"Write {variant} in AArch64 assembly inside <assembly> tags."
        rows.append({"prompt": [{"role": "user", "content": text}] if conversational else text,
                     "variant_id": variant})
    return Dataset.from_list(rows)


class Recorder:
    """What TRL hands the farm's reward function, recorded around the real one."""

    def __init__(self, inner: RewardFunction) -> None:
        self.inner, self.__name__ = inner, inner.__name__
        self.extra: dict[str, list[Any]] = {}
        self.metrics: dict[str, list[float]] = {}
        self.rewards: list[list[float | None]] = []
        self.steps: list[int] = []

    def __call__(self, log_extra: Any = None, log_metric: Any = None, **kw: Any) -> Any:
        def extra(column: str, values: list[Any]) -> None:
            self.extra.setdefault(column, []).extend(values)
            log_extra(column, values)

        def metric(name: str, value: float) -> None:
            self.metrics.setdefault(name, []).append(value)
            log_metric(name, value)

        self.steps.append(kw["trainer_state"].global_step)
        out = self.inner(log_extra=extra, log_metric=metric, **kw)
        self.rewards.append(out)
        return out


def test_reward_function_pickles_without_its_client(embedded_server: Api) -> None:  # noqa: F811
    reward = RewardFunction(embedded_server.url, USER_KEY, run_id="pickle", name="armgym")
    reward(prompts=["p"], completions=["no tags"], variant_id=[RELU])  # opens its client
    copy = pickle.loads(pickle.dumps(reward))
    assert copy.__name__ == "armgym" and copy._client is None and copy.calls == 1
    assert copy(prompts=["p"], completions=["no tags"], variant_id=[RELU]) == [0.0]
    twin = pickle.loads(pickle.dumps(AsyncRewardFunction(embedded_server.url, USER_KEY,
                                                         run_id="pickle")))
    from trl.trainer.utils import is_async_callable

    assert is_async_callable(twin) and not is_async_callable(copy)


def test_grpo_trainer_two_steps_scored_by_the_farm(embedded_server: Api,  # noqa: F811
                                                   tmp_path: Path) -> None:
    tok = tiny.tokenizer()
    reward = Recorder(RewardFunction(embedded_server.url, USER_KEY, run_id="trl-grpo",
                                     model="tiny-qwen2"))
    trainer = GRPOTrainer(model=tiny.model(tok), processing_class=tok, reward_funcs=[reward],
                          train_dataset=dataset(),
                          args=GRPOConfig(output_dir=str(tmp_path), **GRPO_ARGS))
    trainer.train()
    assert reward.steps == [0, 1]  # one farm request per step, filed under global_step
    assert all(len(r) == 4 and all(isinstance(x, float) for x in r) for r in reward.rewards)
    assert set(reward.extra) == {"armgym_error_kind", "armgym_speedup", "armgym_format",
                                 "armgym_syntax", "armgym_correctness"}
    assert len(reward.extra["armgym_error_kind"]) == 8
    # random characters are never a kernel: the farm says why, and scores them 0
    assert all(k == "format_error" for k in reward.extra["armgym_error_kind"])
    assert reward.rewards == [[0.0] * 4] * 2
    assert reward.metrics["armgym/pass_rate"] == [0.0, 0.0]
    assert reward.metrics["armgym/infra_error_rate"] == [0.0, 0.0]
    logged = [e for e in trainer.state.log_history if "armgym/pass_rate" in e]
    assert len(logged) == 2 and "rewards/armgym_reward/mean" in logged[0]
    with Client(embedded_server.url, USER_KEY) as client:
        summary = client.run_summary("trl-grpo")
    assert [(s["step"], s["attempts"]) for s in summary] == [(0, 4), (1, 4)]


def test_environment_factory_resets_with_the_rows_variant(embedded_server: Api,  # noqa: F811
                                                          tmp_path: Path) -> None:
    seen: list[str] = []

    class Recording(ArmGymEnv):
        def reset(self, **row: Any) -> str | None:
            seen.append(row["variant_id"])
            return super().reset(**row)

    tok = tiny.tokenizer(qwen3_chat_template)
    factory = environment_factory(embedded_server.url, USER_KEY, run_id="trl-env")
    trainer = GRPOTrainer(
        model=tiny.model(tok), processing_class=tok, train_dataset=dataset(True),
        environment_factory=lambda: Recording(*factory.args, **factory.keywords),
        args=GRPOConfig(output_dir=str(tmp_path), max_tool_calling_iterations=1,
                        **GRPO_ARGS))
    assert [t.__name__ for t in trainer.tools] == ["submit"]
    trainer.train()
    assert sorted(set(seen)) == [RELU, VEC_ADD] and len(seen) == 8
    logged = [e for e in trainer.state.log_history if "rewards/Recording/mean" in e]
    assert len(logged) == 2  # get_reward scored every rollout, as its own reward column


def test_environment_submit_tool_against_the_farm(embedded_server: Api) -> None:  # noqa: F811
    from farm.mix import asm, honest

    env = environment_factory(embedded_server.url, USER_KEY, run_id="trl-env-tool")()
    assert env.reset(variant_id=RELU, prompt="...") is None
    assert env.get_reward() == 0.0  # nothing submitted: the model's failure
    feedback = env.submit(honest(RELU, "clang"))
    assert feedback.startswith("passed: reward 2.0") and "speedup 1.000x" in feedback
    assert env.get_reward() == 2.0
    wrong = env.submit(asm("    ret"))
    assert wrong.startswith("wrong_output:") and env.get_reward() == 1.0  # the last one: syntax
    binary = environment_factory(embedded_server.url, USER_KEY, run_id="trl-env-tool",
                                 profile="binary_plus_speedup")()
    binary.reset(variant_id=RELU)
    binary.submit(honest(RELU, "clang"))
    assert binary.get_reward() == 0.0  # parity with the compiler earns nothing there
    with pytest.raises(KeyError, match="no 'variant_id' column"):
        env.reset(prompt="...")
