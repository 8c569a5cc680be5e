"""The RL framework adapters against the embedded farm, each driven with the exact call shape its
framework uses, reproduced from the frameworks' source (tests/frameworks/ runs the same adapters
inside the real packages: TRL's GRPOTrainer, verl's reward loop, OpenRLHF's reward requests):

- TRL: `GRPOTrainer._calculate_rewards` calls every custom reward function with keywords
  `prompts`, `completions`, `completion_ids`, `trainer_state` and one list per dataset column,
  awaits coroutine functions, turns None into NaN, and names functions by `__name__`.
- OpenRLHF: its agent executor posts `{"query", "prompts", "labels"}` to `--reward.remote_url` with
  only a Content-Type header (`request_api_wrapper`, timeout 180 s) and reads `rewards`.
- verl: `get_custom_reward_fn` imports `custom_reward_function.path` as a module and merges
  `reward_kwargs` into each call; the naive manager calls `compute_score(data_source=,
  solution_str=, ground_truth=, extra_info=)` per sample, the batch manager
  `compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=)` once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from farm.conftest import USER_KEY, Api, embedded_server, logs, start_api  # noqa: F401
from farm.mix import honest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))

from armgym_client import AsyncClient, Client, InfraErrorResult, Result, StepResult  # noqa: E402
from armgym_client.adapters._common import settle  # noqa: E402
from armgym_client.adapters.trl import async_reward_function, reward_function  # noqa: E402

from api.routes.openrlhf import response_text  # noqa: E402

RELU, VEC_ADD = "relu_n64_float32", "vec_add_n64_float32"


def answers(variant: str) -> list[str]:
    """A group of three completions: correct, no <assembly> block, assembles but is wrong."""
    return [f"Here:\n<assembly>\n{honest(variant, 'clang')}</assembly>",
            "I would unroll the loop by four.",
            "<assembly>\n    .globl kernel\nkernel:\n    ret\n</assembly>"]


# Additive profile: format + syntax + correctness (+ speedup term, 0 at parity with clang).
EXPECTED = [3.0, 0.0, 2.0]


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


# --- TRL ----------------------------------------------------------------------------------------

@dataclass
class TrainerState:
    """The part of transformers.TrainerState a reward function sees."""

    global_step: int
    max_steps: int = 100
    epoch: float = 0.0


def trl_calculate_rewards(reward_funcs: list[Callable[..., Any]], inputs: list[dict[str, Any]],
                          prompts: list[Any], completions: list[Any],
                          completion_ids_list: list[list[int]],
                          state: TrainerState) -> dict[str, list[float]]:
    """GRPOTrainer._calculate_rewards for custom functions (TRL 0.2x), minus torch."""
    keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]]
    reward_kwargs: dict[str, Any] = {key: [example[key] for example in inputs] for key in keys}
    reward_kwargs["trainer_state"] = state
    out = {}
    for func in reward_funcs:
        call = dict(prompts=prompts, completions=completions, completion_ids=completion_ids_list,
                    **reward_kwargs)
        is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            type(func).__call__)  # trl.trainer.utils.is_async_callable
        values = asyncio.run(func(**call)) if is_async else func(**call)
        out[func.__name__] = [math.nan if r is None else r for r in values]
    return out


def grpo_batch(conversational: bool) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """Two prompts, three generations each, as GRPOTrainer's repeat sampler lays them out."""
    rows, completions = [], []
    for variant in (RELU, VEC_ADD):
        text = f"Write {variant} in AArch64 assembly inside <assembly> tags."
        prompt = [{"role": "user", "content": text}] if conversational else text
        for answer in answers(variant):
            rows.append({"prompt": prompt, "variant_id": variant, "difficulty": 1})
            completions.append([{"role": "assistant", "content": answer}] if conversational
                               else answer)
    return rows, [r["prompt"] for r in rows], completions


def test_trl_reward_function_scores_the_batch_in_one_request(
        embedded_server: Api) -> None:  # noqa: F811
    transport = CountingTransport()
    with Client(embedded_server.url, USER_KEY, transport=transport) as client:
        reward = reward_function(client, run_id="trl", model="m", name="armgym")
        rows, prompts, completions = grpo_batch(conversational=False)
        got = trl_calculate_rewards([reward], rows, prompts, completions,
                                    [[1, 2, 3]] * len(rows), TrainerState(global_step=5))
        assert got == {"armgym": EXPECTED * 2}
        assert transport.calls[0] == "POST /batches"  # the whole batch in one request
        assert all(c.startswith("GET /batches/") for c in transport.calls[1:])  # long polls
        (summary,) = client.run_summary("trl")
    assert summary["step"] == 5 and summary["attempts"] == 6  # filed under global_step


def test_trl_async_reward_function_with_conversational_completions(
        embedded_server: Api) -> None:  # noqa: F811
    client = AsyncClient(embedded_server.url, USER_KEY)
    reward = async_reward_function(client, run_id="trl-async")
    assert inspect.iscoroutinefunction(type(reward).__call__)
    assert reward.__name__ == "armgym_reward"
    rows, prompts, completions = grpo_batch(conversational=True)
    got = trl_calculate_rewards([reward], rows, prompts, completions, [[1]] * len(rows),
                                TrainerState(global_step=0))
    assert got == {"armgym_reward": EXPECTED * 2}


def test_trl_names_the_missing_column(embedded_server: Api) -> None:  # noqa: F811
    with Client(embedded_server.url, USER_KEY) as client:
        reward = reward_function(client, run_id="trl")
        with pytest.raises(KeyError, match="no 'variant_id' column.*difficulty"):
            reward(prompts=["p"], completions=["c"], completion_ids=[[1]],
                   trainer_state=TrainerState(0), difficulty=[1])


def _result(variant: str, reward: float | None, kind: str | None = None) -> Result:
    return Result(attempt_id="a", variant_id=variant, status="done", passed=kind is None,
                  error_kind=kind, message="", reward=reward, speedup=None, components=None)


def test_infra_policies_drop_average_zero_or_raise() -> None:
    step = StepResult([_result(RELU, 3.0), _result(RELU, None, "infra_error"), _result(RELU, 1.0),
                       _result(VEC_ADD, None, "infra_error")], ["b"])
    groups = [RELU, RELU, RELU, VEC_ADD]
    assert settle(step, groups, "none") == [3.0, None, 1.0, None]
    assert settle(step, groups, "group_mean") == [3.0, 2.0, 1.0, None]
    assert settle(step, groups, "zero") == [3.0, 0.0, 1.0, 0.0]
    with pytest.raises(InfraErrorResult, match="2 of 4 attempts not scored"):
        settle(step, groups, "raise")


# --- OpenRLHF -----------------------------------------------------------------------------------

def request_api_wrapper(url: str, data: dict[str, Any]) -> httpx.Response:
    """OpenRLHF's remote_rm_utils.request_api_wrapper, one try (it retries on any error)."""
    return httpx.post(url=url, json=data, headers={"Content-Type": "application/json"},
                      timeout=180)


def test_openrlhf_remote_reward_model_protocol(embedded_server: Api) -> None:  # noqa: F811
    # The prompt shows an example answer in tags: only the response may count.
    prompt = ("<|user|>Example:\n<assembly>\n" + honest(RELU, "gcc") + "</assembly>\n"
              f"Now write {RELU}.<|assistant|>")
    responses = answers(RELU)
    data = {"query": [prompt + r for r in responses], "prompts": [prompt] * 3,
            "labels": [RELU] * 3}
    url = f"{embedded_server.url}/openrlhf/get_reward"
    answer = request_api_wrapper(f"{url}?api_key={USER_KEY}&run_id=orlhf&step=2", data)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["rewards"] == EXPECTED and body["scores"] == [1.0, 0.0, 0.0]  # in [0, 1]
    assert {k: len(v) for k, v in body["extra_logs"].items()} == {
        "correct": 3, "format": 3, "speedup": 3, "infra_error": 3}
    assert body["extra_logs"]["correct"] == [1.0, 0.0, 0.0]

    resent = request_api_wrapper(f"{url}?api_key={USER_KEY}&run_id=orlhf&step=2", data)
    assert resent.json()["rewards"] == EXPECTED
    with Client(embedded_server.url, USER_KEY) as client:
        (summary,) = client.run_summary("orlhf")
    assert summary["step"] == 2 and summary["attempts"] == 3  # the resend verified nothing

    assert request_api_wrapper(url, data).status_code == 401
    unlabeled = request_api_wrapper(f"{url}?api_key={USER_KEY}", {"query": data["query"]})
    assert unlabeled.status_code == 422 and "label_key" in unlabeled.json()["detail"]


def test_openrlhf_response_is_what_follows_the_prompt() -> None:
    assert response_text("<s>PROMPT answer", "PROMPT") == " answer"
    assert response_text("answer only", "PROMPT") == "answer only"
    assert response_text("answer", None) == "answer"


# --- verl ---------------------------------------------------------------------------------------

def verl_custom_reward_fn(path: Path, name: str,
                          reward_kwargs: dict[str, Any]) -> Callable[..., Any]:
    """verl's get_custom_reward_fn: import the file as `custom_module`, merge reward_kwargs."""
    spec = importlib.util.spec_from_file_location("custom_module", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_module"] = module
    spec.loader.exec_module(module)
    raw_fn = getattr(module, name)

    def wrapped_fn(*args: Any, **kwargs: Any) -> Any:
        return raw_fn(*args, **{**kwargs, **reward_kwargs})

    return wrapped_fn


def test_verl_compute_score_naive_and_batch_managers(embedded_server: Api) -> None:  # noqa: F811
    kwargs = {"base_url": embedded_server.url, "api_key": USER_KEY, "run_id": "verl"}
    path = ROOT / "examples" / "verl_reward.py"
    compute_score = verl_custom_reward_fn(path, "compute_score", kwargs)
    responses = answers(RELU)
    extra: dict[str, list[float]] = defaultdict(list)
    rewards = []
    for i, response in enumerate(responses):  # NaiveRewardManager.__call__
        score = compute_score(data_source="armgym", solution_str=response, ground_truth=RELU,
                              extra_info={"index": i, "split": "train"})
        rewards.append(score["score"] if isinstance(score, dict) else score)
        for key, value in score.items():
            extra[key].append(value)
    assert rewards == EXPECTED
    assert all(len(v) == 3 and all(isinstance(x, float) for x in v) for v in extra.values())
    assert extra["acc"] == [1.0, 0.0, 0.0]

    batch_fn = verl_custom_reward_fn(path, "compute_score_batch", kwargs)
    scores = batch_fn(data_sources=["armgym"] * 3, solution_strs=responses,  # BatchRewardManager
                      ground_truths=[RELU] * 3, extra_infos=[{"index": i} for i in range(3)])
    assert [s["score"] for s in scores] == EXPECTED


# --- infra errors through every adapter ---------------------------------------------------------

def test_infra_errors_are_never_scored_by_any_adapter(request: pytest.FixtureRequest,
                                                      tmp_path: Path, logs: Path) -> None:  # noqa: F811
    """A farm without its sandbox stores every attempt as infra_error: TRL gets None (or raises
    when asked), verl raises rather than invent a score, OpenRLHF gets a 503 naming the cause."""
    from api import process

    broken = start_api("embedded", tmp_path, logs, request, ARMGYM_MAX_RETRIES="0",
                       ARMGYM_BWRAP_PATH="/nonexistent/bwrap")
    try:
        with Client(broken.url, USER_KEY) as client:
            rows, prompts, completions = grpo_batch(conversational=False)
            state = TrainerState(global_step=1)
            got = trl_calculate_rewards([reward_function(client, run_id="infra")], rows,
                                        prompts, completions, [[1]] * len(rows), state)
            assert all(math.isnan(r) for r in got["armgym_reward"])
            strict = reward_function(client, run_id="infra", on_infra="raise")
            with pytest.raises(InfraErrorResult, match="6 of 6 attempts not scored"):
                trl_calculate_rewards([strict], rows, prompts, completions, [[1]] * 6, state)
        kwargs = {"base_url": broken.url, "api_key": USER_KEY, "run_id": "infra"}
        batch_fn = verl_custom_reward_fn(ROOT / "examples" / "verl_reward.py",
                                         "compute_score_batch", kwargs)
        with pytest.raises(InfraErrorResult, match="verl needs a number"):
            batch_fn(data_sources=["armgym"], solution_strs=answers(RELU)[:1],
                     ground_truths=[RELU], extra_infos=[None])
        for policy in ("error", "group_mean"):  # no scored sample to average: still a 503
            answer = request_api_wrapper(
                f"{broken.url}/openrlhf/get_reward?api_key={USER_KEY}&on_infra={policy}",
                {"query": answers(RELU)[:1], "prompts": [""], "labels": [RELU]})
            assert answer.status_code == 503 and "infra_error" in answer.json()["detail"]
    finally:
        process.stop(broken.proc)


def test_openrlhf_group_mean_fills_only_from_the_same_group() -> None:
    from api.routes.openrlhf import _group_mean

    groups = [("relu", "p1"), ("relu", "p1"), ("relu", "p2"), ("dot", "p1")]
    assert _group_mean([3.0, None, None, 1.0], groups) == [3.0, 3.0, None, 1.0]


def test_trl_group_seeds_need_the_trainers_step() -> None:
    """A call count restarts with the process and would repeat a step's tests: group seeds are
    refused unless TRL passes its global step (checked before anything is sent)."""
    reward = reward_function(Client("http://127.0.0.1:9", "k"), run_id="r", seed_scope="group")
    with pytest.raises(ValueError, match="global_step"):
        reward(["p"], ["c"], variant_id=["relu_n64_float32"])
