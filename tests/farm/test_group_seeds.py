"""Group seeds on the real farm (PostgreSQL, Redis, a Celery worker of two pool processes): the
attempts of one GRPO group (run, step, variant) share a seed, the C reference runs once for the
whole group (counted in the worker by the benchmark's launch recorder), a new step draws a new
seed, and per-attempt seeds stay the default. Refused scopes answer with their own error type."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from toolchain.settings import get_settings
from toolchain.verdict import Verdict
from toolchain.verify import verify

from .conftest import FARM, Api, start_api, wait_batch, wrapped_worker
from .mix import VARIANTS, asm, honest

pytestmark = FARM
COUNTED = Path(__file__).with_name("counted_worker.py")
VARIANT = VARIANTS[2]  # dot_n64_float32


@pytest.fixture(scope="module")
def group_farm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               logs: Path, farm_env: dict[str, str]) -> Iterator[tuple[Api, Path]]:
    """The API in farm mode with a seed secret, and one counted Celery worker (concurrency 2)
    on a queue of its own."""
    from api import process

    queue = f"{farm_env['ARMGYM_QUEUE_NAME']}-group"
    secret = secrets.token_hex(16)
    env = {**farm_env, "ARMGYM_QUEUE_NAME": queue, "ARMGYM_SEED_SECRET": secret}
    launches = tmp_path_factory.mktemp("group") / "launches.jsonl"
    with wrapped_worker(COUNTED, launches, f"group-{queue}", env, logs / "group-worker.log",
                        concurrency=2):
        server = start_api("farm", tmp_path_factory.mktemp("api-group"), logs, request,
                           ARMGYM_QUEUE_NAME=queue, ARMGYM_SEED_SECRET=secret)
        try:
            yield server, launches
        finally:
            process.stop(server.proc)


def _texts() -> list[str]:
    """Eight different attempts at one variant, as a GRPO group's completions would be."""
    good = [honest(VARIANT, "gcc"), honest(VARIANT, "clang")]
    return [*(f"{t}\n    // sample {i}\n" for i, t in enumerate(good * 3)), asm("    ret"),
            asm("    mov x19, #1\n    ret")]


def _reference_runs(launches: Path, seed: int) -> int:
    """The C reference's launches with `seed` in the worker, as its recorder counted them."""
    if not launches.exists():
        return 0
    rows = [json.loads(line) for line in launches.read_text().splitlines()]
    return sum(1 for r in rows if any(a.endswith("/reference.elf") for a in r["argv"])
               and f"{seed:016x}" in r["argv"])


def _batch(api: Api, texts: list[str], **body: Any) -> list[dict[str, Any]]:
    client = api.client()
    sent = client.post("/batches", json={
        **body, "attempts": [{"variant_id": VARIANT, "assembly": t} for t in texts]})
    assert sent.status_code == 202, sent.text
    return wait_batch(client, sent.json()["batch_id"], timeout=300)["results"]


def test_a_group_runs_the_reference_once_and_a_new_step_draws_new_tests(
        group_farm: tuple[Api, Path]) -> None:
    api, launches = group_farm
    run = f"grpo-{secrets.token_hex(4)}"
    texts = _texts()
    step7 = _batch(api, texts, run_id=run, step=7, seed_scope="group")
    seeds = {r["seed"] for r in step7}
    assert len(seeds) == 1 and all(r["status"] == "done" for r in step7)
    (seed,) = seeds
    deadline = time.monotonic() + 10  # the launch log is written before the verdict is stored
    while _reference_runs(launches, seed) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _reference_runs(launches, seed) == 1
    assert [r["passed"] for r in step7] == [True] * 6 + [False, False]
    # verdicts are those of the core for (variant, seed), whichever process ran the reference
    for text, row in zip(texts, step7, strict=True):
        alone = verify(VARIANT, text, seed, settings=get_settings())
        assert Verdict.from_json(row["verdict"]).canonical() == alone.canonical()
    step8 = _batch(api, texts[:2], run_id=run, step=8, seed_scope="group")
    (seed8,) = {r["seed"] for r in step8}
    assert seed8 != seed
    assert _reference_runs(launches, seed8) == 1


def test_per_attempt_seeds_stay_the_default(group_farm: tuple[Api, Path]) -> None:
    api, launches = group_farm
    rows = _batch(api, _texts()[:3], run_id=f"grpo-{secrets.token_hex(4)}", step=1)
    seeds = [r["seed"] for r in rows]
    assert len(set(seeds)) == 3
    assert all(_reference_runs(launches, s) == 1 for s in seeds)


def test_an_attempt_overrides_the_batch_scope(group_farm: tuple[Api, Path]) -> None:
    api, _ = group_farm
    client = api.client()
    run = f"grpo-{secrets.token_hex(4)}"
    text = honest(VARIANT, "gcc")
    sent = client.post("/batches", json={"run_id": run, "step": 2, "seed_scope": "group",
                                         "attempts": [
                                             {"variant_id": VARIANT, "assembly": text},
                                             {"variant_id": VARIANT, "assembly": text + "\n"},
                                             {"variant_id": VARIANT, "assembly": text + "\n\n",
                                              "seed_scope": "attempt"},
                                             {"variant_id": VARIANT, "assembly": text + " ",
                                              "step": 3}]})
    assert sent.status_code == 202, sent.text
    rows = wait_batch(client, sent.json()["batch_id"], timeout=300)["results"]
    seeds = [r["seed"] for r in rows]
    assert seeds[0] == seeds[1] and len({seeds[0], seeds[2], seeds[3]}) == 3
    one = client.post("/step", json={"variant_id": VARIANT, "assembly": text + "\t",
                                     "run_id": run, "step": 2, "seed_scope": "group"}).json()
    assert one["seed"] == seeds[0]  # /step joins the same group


@pytest.mark.parametrize("body,kind", [
    ({"seed_scope": "group"}, "seed_scope_group_key"),  # no run_id, no step
    ({"seed_scope": "group", "run_id": "r"}, "seed_scope_group_key"),  # no step
    ({"seed_scope": "group", "step": 1}, "seed_scope_group_key"),  # no run_id
    ({"seed_scope": "group", "run_id": "r", "step": 1, "seed": 5}, "seed_scope_conflict"),
    ({"seed_scope": "grup", "run_id": "r", "step": 1}, "literal_error"),
    ({"seed_scope": "GROUP", "run_id": "r", "step": 1}, "literal_error"),
    ({"seed_scope": 1, "run_id": "r", "step": 1}, "literal_error"),
    ({"seed_scope": None, "run_id": "r", "step": 1}, "literal_error"),
    ({"seed_scope": ["group"], "run_id": "r", "step": 1}, "literal_error"),
], ids=["no-keys", "no-step", "no-run", "with-seed", "typo", "case", "number", "null", "list"])
def test_refused_scopes_have_their_own_error_type(group_farm: tuple[Api, Path],
                                                  body: dict[str, Any], kind: str) -> None:
    api, _ = group_farm
    client = api.client()
    text = honest(VARIANT, "gcc")
    run = f"refused-{secrets.token_hex(4)}"
    body = {**body, "run_id": run} if "run_id" in body else body
    answer = client.post("/step", json={"variant_id": VARIANT, "assembly": text, **body})
    assert answer.status_code == 422, answer.text
    assert kind in {e["type"] for e in answer.json()["errors"]}
    seed = {"seed": body["seed"]} if "seed" in body else {}
    batch = {k: v for k, v in body.items() if k != "seed"}
    answer = client.post("/batches", json={**batch, "attempts": [
        {"variant_id": VARIANT, "assembly": text, **seed}]})
    assert answer.status_code == 422, answer.text
    assert kind in {e["type"] for e in answer.json()["errors"]}
    if "run_id" in body:  # nothing was stored
        assert client.get("/attempts", params={"run_id": run}).json()["attempts"] == []


def test_group_seeds_are_off_without_a_secret(request: pytest.FixtureRequest,
                                              tmp_path_factory: pytest.TempPathFactory,
                                              logs: Path) -> None:
    """The embedded API of the tests has no seed secret: a group scope is refused, not
    answered with seeds anyone could compute."""
    from api import process

    server = start_api("embedded", tmp_path_factory.mktemp("no-secret"), logs, request,
                       ARMGYM_SEED_SECRET="too-short")
    try:
        client = server.client()
        answer = client.post("/step", json={"variant_id": VARIANT,
                                            "assembly": honest(VARIANT, "gcc"),
                                            "run_id": "r", "step": 1, "seed_scope": "group"})
        assert answer.status_code == 422, answer.text
        assert [e["type"] for e in answer.json()["errors"]] == ["seed_scope_unavailable"]
    finally:
        process.stop(server.proc)
