"""The original environment's protocol: /reset with a JSON body and baseline cycles, /step with
the original's observation fields beside the verdict, and the farm as an OpenEnv environment
served by openenv-core under /openenv, driven by openenv-core's own client over its WebSocket
protocol against a real API process."""

from __future__ import annotations

import httpx
import pytest
from openenv import GenericEnvClient

from api.openenv_env import ArmGymObservation
from toolchain.verdict import Verdict

from .conftest import FARM, USER_KEY, Api
from .mix import VARIANTS, asm, honest

HONEST = VARIANTS[0]

pytestmark = FARM


def perf_baseline(verdict: dict) -> float:
    (gate,) = [g for g in verdict["gates"] if g["name"] == "performance"]
    return float(gate["details"]["baseline"]["cycles"])


def test_reset_takes_a_json_body_and_reports_baseline_cycles(api: Api) -> None:
    client = api.client()
    task = client.post("/reset", json={"variant_id": HONEST, "seed": 11}).json()
    assert task["variant_id"] == HONEST and task["seed"] == 11
    assert task["done"] is False and task["reward"] is None
    cycles = {b["compiler"]: b["cycles"] for b in task["baselines"]}
    assert all(isinstance(c, float) and c > 0 for c in cycles.values()), cycles
    assert task["baseline_cycles"] == min(cycles.values())
    assert task["baseline_compiler"] == min(cycles, key=lambda c: (cycles[c], c))
    # the figure to beat is the one the verdict of an attempt with that seed compares with
    step = client.post("/step", json={"variant_id": HONEST, "assembly": honest(HONEST, "gcc"),
                                      "seed": 11}).json()
    assert step["baseline_cycles"] == perf_baseline(step) == task["baseline_cycles"]
    # the body wins over the query; filters work in the body too
    both = client.post("/reset", params={"variant_id": VARIANTS[1]},
                       json={"variant_id": HONEST}).json()
    assert both["variant_id"] == HONEST
    picked = client.post("/reset", json={"seed": 5, "template": "dot", "dtype": "int32"}).json()
    assert picked["template"] == "dot" and picked["dtype"] == "int32"
    assert client.post("/reset", json={"seed": 5, "template": "dot"}).json()["variant_id"] == \
        client.post("/reset", params={"seed": 5, "template": "dot"}).json()["variant_id"]
    for bad, status in (({"seed": -1}, 422), ({"varient_id": HONEST}, 422),
                        ({"difficulty": 9}, 422), ({"variant_id": "nope_n1_int8"}, 404),
                        ({"template": "nope"}, 422), ({"template": "matmul", "dtype": "int8",
                                                       "difficulty": 1}, 404), ([1, 2], 422)):
        answer = client.post("/reset", json=bad)
        assert answer.status_code == status, (bad, answer.text)
    malformed = client.post("/reset", content=b"{", headers={"content-type": "application/json"})
    assert malformed.status_code == 400


def test_step_answers_the_original_observation_beside_the_verdict(api: Api) -> None:
    client = api.client()
    body = {"variant_id": HONEST, "assembly": honest(HONEST, "clang"), "seed": 7}
    good = client.post("/step", json=body).json()
    assert good["done"] is True and good["error"] is None and good["error_kind"] is None
    assert good["reward"] == good["reward_detail"]["profiles"]["additive"] == 2.0
    assert good["profile"] == "additive" and good["speedup"] == 1.0
    assert good["cycles"] == good["baseline_cycles"] == perf_baseline(good)
    assert good["passed"] is True and good["gates"] and good["verifier_version"]  # the verdict
    binary = client.post("/step", params={"profile": "binary_plus_speedup"}, json=body).json()
    assert binary["reward"] == binary["reward_detail"]["profiles"]["binary_plus_speedup"] == 0.0
    bad = client.post("/step", json={"variant_id": HONEST, "assembly": asm("    ret")}).json()
    assert bad["done"] is True and bad["passed"] is False and bad["reward"] is not None
    assert bad["error"] == {"kind": bad["error_kind"], "message": bad["message"]}
    assert bad["error_kind"] == "wrong_output"
    refused = client.post("/step", params={"profile": "nope"}, json=body)
    assert refused.status_code == 422 and "binary_plus_speedup" in refused.json()["detail"]


def test_openenv_client_session_over_websocket(embedded_server: Api) -> None:
    base = f"{embedded_server.url}/openenv"
    completion = f"Here it is:\n<assembly>\n{honest(HONEST, 'clang')}</assembly>"
    with GenericEnvClient(base_url=base, message_timeout_s=180).sync() as env:
        first = env.reset(variant_id=HONEST, seed=3, api_key=USER_KEY)
        task = first.observation
        assert first.done is False and first.reward is None
        assert task["variant_id"] == HONEST and task["seed"] == 3
        assert "kernel" in task["c_source"] and task["prototype"] and task["signature"]
        assert task["baseline_cycles"] and task["baseline_cycles"] > 0
        result = env.step({"assembly": completion, "completion": True})
        seen = result.observation
        assert result.done is True and result.reward == 3.0  # format + syntax + correctness
        assert seen["passed"] is True and seen["error_kind"] is None
        assert seen["speedup"] == 1.0 and seen["cycles"] == task["baseline_cycles"]
        assert seen["baseline_cycles"] == task["baseline_cycles"]
        assert seen["verdict"]["seed"] == 3 and seen["verdict"]["gates"]
        # the verifier's own verdict, as the farm stores it: its JSON is the stored one
        typed = Verdict.model_validate(seen["verdict"])
        assert typed.reward is not None and typed.reward.profiles["additive"] == result.reward
        stored = embedded_server.client().get(f"/attempts/{seen['attempt_id']}").json()
        assert Verdict.model_validate(stored["verdict"]).canonical() == typed.canonical()
        assert ArmGymObservation.model_validate(seen).verdict == typed
        state = env.state()
        assert state["variant_id"] == HONEST and state["step_count"] == 1
        assert state["attempt_ids"] == [seen["attempt_id"]] and state["last_reward"] == 3.0
        assert USER_KEY not in str(state)
        wrong = env.step({"assembly": asm("    ret")}).observation
        assert wrong["error_kind"] == "wrong_output" and wrong["error_message"]
        with pytest.raises(RuntimeError, match="VALIDATION_ERROR"):
            env.step({"completion": True})  # no assembly: a validation error, session goes on
        with pytest.raises(RuntimeError, match="unknown variant_id"):
            env.step({"assembly": "ret", "variant_id": "nope_n1_int8"})
        assert env.state()["step_count"] == 2
    with GenericEnvClient(base_url=base).sync() as anonymous:
        anonymous.reset(variant_id=HONEST)
        with pytest.raises(RuntimeError, match="missing API key"):
            anonymous.step({"assembly": "ret"})


def test_openenv_http_routes(embedded_server: Api) -> None:
    http = httpx.Client(base_url=f"{embedded_server.url}/openenv", timeout=180)
    schema = http.get("/schema").json()
    assert {"assembly", "completion", "variant_id"} <= set(schema["action"]["properties"])
    assert {"reward", "speedup", "cycles", "baseline_cycles", "error_kind", "error_message",
            "done", "verdict"} <= set(schema["observation"]["properties"])
    # the verdict is typed: /schema shows the verifier's model, not an object of anything
    verdict = schema["observation"]["properties"]["verdict"]
    assert {"$ref": "#/$defs/Verdict"} in verdict["anyOf"], verdict
    assert {"gates", "reward", "verifier_version"} <= set(
        schema["observation"]["$defs"]["Verdict"]["properties"])
    assert http.get("/metadata").json()["name"] == "armgym"
    reset = http.post("/reset", json={"variant_id": HONEST, "seed": 4}).json()
    assert reset["observation"]["baseline_cycles"] and reset["done"] is False
    action = {"assembly": honest(HONEST, "gcc"), "variant_id": HONEST}
    assert http.post("/step", json={"action": action}).status_code == 401
    stepped = http.post("/step", json={"action": action}, headers={"X-API-Key": USER_KEY})
    assert stepped.status_code == 200 and stepped.json()["done"] is True
    assert stepped.json()["reward"] == stepped.json()["observation"]["verdict"]["reward"][
        "profiles"]["additive"]
    query_key = http.post("/step", params={"api_key": USER_KEY}, json={"action": action})
    assert query_key.status_code == 200
    no_task = http.post("/step", json={"action": {"assembly": "ret"}},
                        headers={"X-API-Key": USER_KEY})
    assert no_task.status_code == 422 and "reset first" in no_task.json()["detail"]
    extra = http.post("/step", json={"action": {**action, "hack": 1}},
                      headers={"X-API-Key": USER_KEY})
    assert extra.status_code == 422
