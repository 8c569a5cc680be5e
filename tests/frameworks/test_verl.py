"""verl 0.9.1's reward loop scoring through the farm: verl's own default trainer configuration
(composed by Hydra from the installed package) with only the custom reward function set, a real
`RewardLoopWorker` (the class verl runs as a Ray actor, here in this process: the actor wrapper
needs a Ray cluster, the scoring code is the same) loading `pkg://armgym_client.adapters.verl`
through verl's own loader, and a real `DataProto` batch decoded by a tokenizer built here.

The overrides (docs/trainers.md) are the ones these tests run: VERL_OVERRIDES.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import verl
from farm.conftest import USER_KEY, Api, embedded_server, logs  # noqa: F401
from farm.mix import asm, honest
from hydra import compose, initialize_config_dir
from verl import DataProto
from verl.experimental.reward_loop import RewardLoopWorker
from verl.trainer.ppo.reward import resolve_reward_manager_cls

from . import tiny

RELU, VEC_ADD = "relu_n64_float32", "vec_add_n64_float32"
VERL_OVERRIDES = [
    "reward.custom_reward_function.path=pkg://armgym_client.adapters.verl",
    "reward.custom_reward_function.name=compute_score_async",
    "+reward.custom_reward_function.reward_kwargs.base_url={url}",
    "+reward.custom_reward_function.reward_kwargs.run_id=verl-loop",
]


def verl_config(url: str, model_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    overrides = [o.format(url=url) for o in VERL_OVERRIDES]
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=[
            *overrides, f"actor_rollout_ref.model.path={model_path}", *extra])


def batch(tok, responses: list[str], variants: list[str]) -> DataProto:  # type: ignore[no-untyped-def]
    """What the rollout hands the reward loop: prompt and response ids (left/right padded) with
    their attention mask, the data source and the variant id as ground truth."""
    prompt_len, response_len = 8, 2048
    prompts, resp, mask = [], [], []
    for text in responses:
        p = tok("prompt")["input_ids"][:prompt_len]
        r = tok(text)["input_ids"][:response_len]
        prompts.append([tok.pad_token_id] * (prompt_len - len(p)) + p)
        resp.append(r + [tok.pad_token_id] * (response_len - len(r)))
        mask.append([0] * (prompt_len - len(p)) + [1] * len(p) + [1] * len(r)
                    + [0] * (response_len - len(r)))
    return DataProto.from_dict(
        tensors={"prompts": torch.tensor(prompts), "responses": torch.tensor(resp),
                 "attention_mask": torch.tensor(mask)},
        non_tensors={"data_source": np.array(["armgym"] * len(responses), dtype=object),
                     "reward_model": np.array([{"ground_truth": v} for v in variants],
                                              dtype=object)})


def test_reward_loop_scores_through_the_farm(embedded_server: Api, tmp_path: Path,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARMGYM_API_KEY", USER_KEY)  # the reward workers' environment
    tok = tiny.tokenizer()
    tok.save_pretrained(tmp_path / "model")
    config = verl_config(embedded_server.url, tmp_path / "model")
    assert config.reward.reward_manager.name == "naive"  # verl's default, untouched
    worker = RewardLoopWorker(config)
    responses = [f"Here:\n<assembly>\n{honest(RELU, 'clang')}</assembly>",
                 "I would unroll the loop.", f"<assembly>\n{asm('    ret')}</assembly>",
                 f"<assembly>\n{honest(VEC_ADD, 'gcc')}</assembly>"]
    data = batch(tok, responses, [RELU, RELU, RELU, VEC_ADD])
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))  # its own loop
    scores = [o["reward_score"] for o in outputs]
    assert scores[:3] == [3.0, 0.0, 2.0] and scores[3] >= 3.0
    extra = [o["reward_extra_info"] for o in outputs]
    assert [e["acc"] for e in extra] == [1.0, 0.0, 0.0, 1.0]
    assert all(set(e) == {"score", "acc", "format", "speedup", "infra_error"} for e in extra)
    rm_scores = resolve_reward_manager_cls(config).assemble_rm_scores(data, scores)
    assert rm_scores.shape == data.batch["responses"].shape
    assert rm_scores.sum(dim=1).tolist() == scores


def test_reward_loop_infra_error_stops_the_step(broken_server: Api, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """verl cannot drop a sample: the farm failing (not the model) fails the step, loudly."""
    from armgym_client import InfraErrorResult

    monkeypatch.setenv("ARMGYM_API_KEY", USER_KEY)
    tok = tiny.tokenizer()
    tok.save_pretrained(tmp_path / "model")
    worker = RewardLoopWorker(verl_config(broken_server.url, tmp_path / "model"))
    data = batch(tok, [f"<assembly>\n{honest(RELU, 'clang')}</assembly>"], [RELU])
    with pytest.raises(InfraErrorResult, match="not scored.*infra_error"):
        worker.loop.run_until_complete(worker.compute_score_batch(data))
