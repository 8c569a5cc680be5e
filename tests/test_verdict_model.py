"""The typed verdict (toolchain.verdict.Verdict): its JSON is the wire form it replaced, stored
verdicts of earlier versions load, and every reader (store columns, observation, reward, the
client) reads the same figures from it. Pure logic over recorded verdicts.

tests/data/stored_verdicts.json holds verdicts of verifier 0.6.3 as the store kept them (JSON
made safe for JSONB), each with the columns the store derived from it then: written by the
verifier before the verdict had a model, they fix both the wire form and the columns.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from api.observation import observation
from api.schemas import AttemptOut, VerdictOut
from store import extract
from toolchain import reward
from toolchain.errors import ErrorKind
from toolchain.verdict import (
    DETAILS,
    CorrectnessDetails,
    CrossCheck,
    GateResult,
    NoDetails,
    Performance,
    PerformanceDetails,
    Unread,
    Verdict,
)

STORED = json.loads((Path(__file__).parent / "data" / "stored_verdicts.json").read_text())
LABELS = [s["label"] for s in STORED]


def stored(label: str) -> dict[str, Any]:
    return copy.deepcopy(next(s for s in STORED if s["label"] == label))


@pytest.mark.parametrize("label", LABELS)
def test_a_stored_verdict_loads_and_serialises_to_the_same_json(label: str) -> None:
    doc = stored(label)["verdict"]
    verdict = Verdict.from_json(doc)
    assert verdict.to_json() == doc  # the wire form did not change
    again = Verdict.from_json(verdict.to_json())
    assert again.canonical() == verdict.canonical()
    assert "timings" not in json.loads(verdict.canonical())


@pytest.mark.parametrize("label", LABELS)
def test_every_gate_of_a_stored_verdict_reads_as_its_details_model(label: str) -> None:
    """The details models describe what the gates write: none of a stored verdict's gates
    falls back to Unread (whose JSON would be kept, but untyped)."""
    for gate in Verdict.from_json(stored(label)["verdict"]).gates:
        assert type(gate.details) is DETAILS.get(gate.name, NoDetails), (gate.name, gate.details)


def test_details_hold_exactly_the_fields_the_gate_gave() -> None:
    """No absent field appears as null, an int stays an int, the order is the gate's."""
    timeout = GateResult("correctness", False, ErrorKind.timeout, "test 3: no return",
                         {"test": 3, "budget_s": 2.5})
    assert isinstance(timeout.details, CorrectnessDetails) and timeout.details.test == 3
    assert json.dumps(timeout.to_json()["details"]) == '{"test": 3, "budget_s": 2.5}'
    perf = GateResult("performance", True, details=PerformanceDetails(cycles=20, speedup=1.0))
    perf.details.speedup_withheld = False  # as the cross-check sets it
    assert json.dumps(perf.to_json()["details"]) == \
        '{"cycles": 20, "speedup": 1.0, "speedup_withheld": false}'
    assert GateResult("syntax", True).to_json()["details"] == {}
    with pytest.raises(ValueError):  # a gate that writes the wrong type is told at once
        PerformanceDetails(cycles="20")


def test_details_that_do_not_read_as_their_model_are_kept_as_they_were() -> None:
    doc = stored("clang -O3 baseline")["verdict"]
    perf = next(g for g in doc["gates"] if g["name"] == "performance")
    perf["details"].update(cycles="nan", baseline="clang")  # the store's non-finite strings
    verdict = Verdict.from_json(doc)
    assert isinstance(verdict.gate("performance").details, Unread)
    assert verdict.to_json() == doc


def test_the_schema_documents_every_gates_details() -> None:
    defs = VerdictOut.model_json_schema()["$defs"]
    shown = {ref["$ref"].rsplit("/", 1)[1]
             for ref in defs["GateResult"]["properties"]["details"]["anyOf"]}
    assert {m.__name__ for m in DETAILS.values()} | {"NoDetails", "Unread"} == shown
    assert {"cycles", "speedup", "baseline", "timing_test"} <= set(
        defs["PerformanceDetails"]["properties"])


@pytest.mark.parametrize("label", LABELS)
def test_the_store_derives_the_same_columns_as_before(label: str) -> None:
    case = stored(label)
    assert extract.columns(case["verdict"]) == case["columns"]
    assert set(extract.COLUMNS) == set(case["columns"])
    # a worker hands finish() its typed verdict, read as it is: the same columns
    assert extract.columns(Verdict.from_json(case["verdict"])) == case["columns"]


def test_a_typed_verdict_gives_the_columns_its_stored_json_gives() -> None:
    """Non-finite figures and NUL characters, which the stored JSON cannot hold as they are:
    the typed verdict's columns are those read back from its JSON (extract.jsonable)."""
    doc = stored("clang -O3 baseline")["verdict"]
    perf = next(g for g in doc["gates"] if g["name"] == "performance")
    perf["details"].update(cycles=float("nan"), speedup=float("inf"))
    typed = Verdict.from_json({**doc, "message": "bad\x00byte", "sandbox": "x\x00"})
    columns = extract.columns(typed)
    assert columns == extract.columns(extract.jsonable(typed.to_json()))
    assert columns["message"] == "bad\ufffdbyte" and columns["cycles"] is None


@pytest.mark.parametrize("label", LABELS)
def test_the_stored_json_is_jsonable_whichever_way_it_is_made(label: str) -> None:
    doc = Verdict.from_json(stored(label)["verdict"]).to_json()  # as a worker stores it
    assert extract.stored_json(doc) == extract.jsonable(doc)
    odd = {**doc, "message": "a\x00b", "x": [float("nan"), (1, float("-inf"))], 3: "\\u0000"}
    assert extract.stored_json(odd) == extract.jsonable(odd)
    assert extract.stored_json(odd)["message"] == "a\ufffdb"


def test_the_figures_are_fields() -> None:
    doc = stored("clang -O3 baseline")["verdict"]
    verdict = Verdict.from_json(doc)
    details = next(g for g in doc["gates"] if g["name"] == "performance")["details"]
    perf = verdict.performance
    assert isinstance(perf, Performance) and perf.passed
    assert (perf.cycles, perf.speedup, perf.baseline.cycles, perf.baseline.compiler,
            perf.timing_test, perf.listing_cycles) == (
        details["cycles"], details["speedup"], details["baseline"]["cycles"],
        details["baseline"]["compiler"], details["timing_test"],
        details["whole_listing"]["total_cycles"])
    check = verdict.cross_check
    assert isinstance(check, CrossCheck) and check.passed and check.ratio is not None
    assert check.ratio_band is not None and check.ratio_band[0] <= check.ratio
    assert verdict.reward is not None
    assert verdict.reward.components.correctness == 1.0
    assert verdict.reward.profiles == doc["reward"]["profiles"]
    wrong = Verdict.from_json(stored("returns without computing")["verdict"])
    assert wrong.performance is None and wrong.cross_check is None
    assert wrong.error_kind is ErrorKind.wrong_output and wrong.gates[-1].kind is wrong.error_kind
    infra = Verdict.from_json(stored("infra_error (worker gave up)")["verdict"])
    assert infra.reward is None and reward.reward_of(infra) is None


def test_verdicts_of_earlier_shapes_still_load() -> None:
    """Before the reward profiles a verdict had no reward object; before GateName an input
    failure was a gate named "syntax"; a store may hold non-finite figures as strings, and a
    copy answered from an identical attempt is marked cached."""
    doc = stored("clang -O3 baseline")["verdict"]
    no_reward = {k: v for k, v in doc.items() if k != "reward"}
    assert Verdict.from_json(no_reward).reward is None
    assert extract.columns(no_reward)["reward"] is None
    assert Verdict.from_json({**doc, "reward": 2.0}).reward is None  # a bare number
    old = stored("empty")["verdict"]
    old["gates"][0]["name"] = "syntax"
    old["timings"] = {"syntax": old["timings"].pop("input")}
    assert Verdict.from_json(old).gates[0].seconds == old["timings"]["syntax"]
    untimed = {k: v for k, v in doc.items() if k != "timings"}
    assert all(g.seconds == 0.0 for g in Verdict.from_json(untimed).gates)
    strange = copy.deepcopy(doc)
    perf = next(g for g in strange["gates"] if g["name"] == "performance")
    perf["details"].update(cycles="nan", speedup="inf", baseline="clang")
    odd = Verdict.from_json(strange).performance
    assert odd is not None and (odd.cycles, odd.speedup, odd.baseline.cycles) == (None,) * 3
    assert Verdict.from_json({**doc, "from_a_later_version": [1]}).to_json()[
        "from_a_later_version"] == [1]
    cached = Verdict.from_json(stored("answered from an identical attempt")["verdict"])
    assert cached.cached and "cached" not in json.loads(cached.canonical())
    assert Verdict.load({"passed": True}) is None and Verdict.load(None) is None
    with pytest.raises(ValueError, match="not a verdict"):
        extract.columns({"passed": True, "gates": []})


@pytest.mark.parametrize("label", LABELS)
def test_the_routes_and_the_client_read_what_the_model_reads(label: str) -> None:
    from armgym_client import models

    doc = stored(label)["verdict"]
    verdict = Verdict.from_json(doc)
    perf = verdict.performance
    seen = observation(doc, "binary_plus_speedup")
    assert seen["reward"] == reward.reward_of(verdict, "binary_plus_speedup")
    assert (seen["cycles"], seen["speedup"], seen["baseline_cycles"]) == (
        (perf.cycles, perf.speedup, perf.baseline.cycles) if perf else (None,) * 3)
    client = models.Verdict.read(doc)
    assert (client.passed, client.error_kind, client.cycles, client.speedup,
            client.baseline_cycles, client.baseline_compiler) == (
        verdict.passed, doc["error_kind"], seen["cycles"], seen["speedup"],
        seen["baseline_cycles"], seen["baseline_compiler"])
    assert client.components == (doc["reward"] or {}).get("components")
    for profile in reward.PROFILES:
        assert client.reward(profile) == reward.reward_of(doc, profile)


def test_the_api_schemas_are_the_model() -> None:
    """/attempts/{id} serves the stored verdict through the model unchanged, and OpenAPI
    documents the model's fields (gates, the reward object)."""
    doc = stored("hand-written NEON, 16 partial sums")["verdict"]
    row = {"attempt_id": "a", "status": "done", "variant_id": doc["variant_id"],
           "seed": doc["seed"], "created_at": "2026-01-01T00:00:00Z", "verdict": doc}
    assert AttemptOut.model_validate(row).model_dump(mode="json")["verdict"] == doc
    schema = json.dumps(AttemptOut.model_json_schema(mode="serialization"))
    for name in ("GateResult", "Reward", "Components", "timings", "verifier_version"):
        assert name in schema, name
    out = json.dumps(VerdictOut.model_json_schema(mode="serialization"))
    assert "GateResult" in out and "Components" in out
