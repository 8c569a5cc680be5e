"""OpenRLHF 0.11.2's reward request and response code against the farm: the installed package's
`SingleTurnAgentExecutor` (openrlhf.utils.agent, which loads without GPUs) posts each sample to
`--reward.remote_url` exactly as a PPO/GRPO run does, with its own retries, and reads `rewards`,
`scores` and `extra_logs` back. Generation is vLLM's, which needs a GPU: `StandIn` hands the
executor the completion's token ids instead (tokenised by a tokenizer built here). The last
step, `_process_response_into_experience` (samples_generator, which imports vLLM), turns those
values into `torch.tensor([value])`: reproduced here as that one line.

The flags (docs/trainers.md) are the ones these tests run:

    --reward.remote_url 'http://farm:8000/openrlhf/get_reward?api_key=KEY&run_id=RUN'
    --data.label_key variant_id
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from farm.conftest import USER_KEY, Api, embedded_server, logs, start_api  # noqa: F401
from farm.mix import asm, honest
from openrlhf.utils.agent import SingleTurnAgentExecutor

from api import process

from . import tiny

RELU = "relu_n64_float32"
PROMPT = ("<|im_start|>Example:\n<assembly>\n" + honest(RELU, "gcc") + "</assembly>\n"
          f"Now write {RELU}.<|im_end|>")


@dataclass
class Sampling:  # the fields of vllm.SamplingParams the executor reads
    max_tokens: int | None = 4096
    logprobs: int | None = None


@dataclass
class Output:
    token_ids: list[int]
    finish_reason: str = "stop"
    logprobs: Any = None


@dataclass
class StandIn:
    """vLLM's engine: generates `text` (one completion) for any prompt."""

    text: str
    tokenizer: Any
    prompts: list[list[int]] = field(default_factory=list)

    async def generate(self, prompt_token_ids: list[int], params: Sampling,
                       multi_modal_data: Any = None) -> Any:
        self.prompts.append(prompt_token_ids)
        ids = self.tokenizer(self.text, add_special_tokens=False)["input_ids"]
        return type("RequestOutput", (), {"outputs": [Output(ids)]})()


def rollout(url: str, completion: str, label: str = RELU) -> dict[str, Any]:
    """One sample through OpenRLHF's executor, as a vLLM engine actor runs it."""
    tok = tiny.tokenizer()
    executor = SingleTurnAgentExecutor(remote_rm_url=url)
    return asyncio.run(executor.execute(PROMPT, label, Sampling(), 8192, tok,
                                        StandIn(completion, tok)))


def experience_fields(output: dict[str, Any]) -> dict[str, torch.Tensor]:
    """samples_generator._process_response_into_experience's reward, score and info tensors."""
    out = {"rewards": torch.tensor([output["reward"]]), "scores": torch.tensor([output["scores"]])}
    out.update({k: torch.tensor([v]) for k, v in output["extra_logs"].items()})
    return out


def test_per_sample_requests_as_openrlhf_sends_them(embedded_server: Api) -> None:  # noqa: F811
    url = (f"{embedded_server.url}/openrlhf/get_reward?api_key={USER_KEY}"
           "&run_id=orlhf-011&step=1")
    correct = rollout(url, f"Here:\n<assembly>\n{honest(RELU, 'clang')}</assembly>")
    assert correct["reward"] == [3.0] and correct["scores"] == [1.0]
    assert correct["extra_logs"] == {"correct": [1.0], "format": [1.0], "speedup": [1.0],
                                     "infra_error": [0.0]}
    wrong = rollout(url, f"<assembly>\n{asm('    ret')}</assembly>")
    assert wrong["reward"] == [2.0] and wrong["scores"] == [0.0]  # format + syntax, not correct
    untagged = rollout(url, "I would unroll it.")  # the example in the prompt never counts
    assert untagged["reward"] == [0.0] and untagged["scores"] == [0.0]
    binary = rollout(url + "&profile=binary_plus_speedup",
                     f"<assembly>\n{honest(RELU, 'clang')}</assembly>")
    assert binary["reward"] == [0.0] and binary["scores"] == [1.0]
    for output in (correct, wrong, untagged, binary):
        fields = experience_fields(output)
        assert 0.0 <= float(fields["scores"].flatten()[0]) <= 1.0
        assert fields["rewards"].dtype == torch.float32
    refused = rollout(f"{embedded_server.url}/openrlhf/get_reward", "x")  # no key: 401 x 5
    assert refused["reward"] is None  # what OpenRLHF keeps after its retries: nothing


def test_infra_error_gets_the_runs_mean_so_training_goes_on(
        request: pytest.FixtureRequest, tmp_path: Path, logs: Path) -> None:  # noqa: F811
    """OpenRLHF 0.11 stops the run on a sample without reward: an attempt the farm could not
    verify is answered with the run's mean for that variant (zero expected advantage), flagged
    as infra_error; with nothing to stand in for it, 503 (and OpenRLHF stops, as it should)."""
    good = start_api("embedded", tmp_path, logs, request)
    try:
        url = f"{good.url}/openrlhf/get_reward?api_key={USER_KEY}&run_id=orlhf-infra"
        assert rollout(url, f"<assembly>\n{honest(RELU, 'clang')}</assembly>")["reward"] == [3.0]
        assert rollout(url, "no kernel")["reward"] == [0.0]
    finally:
        process.stop(good.proc)
    broken = start_api("embedded", tmp_path, logs, request, ARMGYM_MAX_RETRIES="0",
                       ARMGYM_BWRAP_PATH="/nonexistent/bwrap")  # same database, no sandbox
    try:
        base = f"{broken.url}/openrlhf/get_reward?api_key={USER_KEY}"
        stood_in = rollout(f"{base}&run_id=orlhf-infra",
                           f"<assembly>\n{honest(RELU, 'gcc')}</assembly>")
        assert stood_in["reward"] == [1.5] and stood_in["scores"] == [0.5]
        assert stood_in["extra_logs"]["infra_error"] == [1.0]
        for no_mean in ("&run_id=orlhf-other", "&run_id=orlhf-infra&on_infra=error"):
            answer = rollout(base + no_mean, f"<assembly>\n{honest(RELU, 'gcc')}</assembly>")
            assert answer["reward"] is None  # 503 five times
    finally:
        process.stop(broken.proc)
