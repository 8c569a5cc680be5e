"""Resubmitted identical attempts are answered from the content-addressed cache, over HTTP, in
both modes: the stored verdict of the first is reused, marked cached, and nothing is queued."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import FARM, MODES, Api, start_api
from .mix import VARIANTS, asm, honest

pytestmark = FARM


@pytest.fixture(scope="module", params=MODES)
def cached_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               logs: Path) -> Iterator[Api]:
    from api import process

    server = start_api(request.param, tmp_path_factory.mktemp(f"cache-{request.param}"), logs,
                       request, ARMGYM_VERDICT_CACHE="1",
                       ARMGYM_SEED_SECRET=secrets.token_hex(8))
    yield server
    process.stop(server.proc)


def test_resubmitted_step_is_answered_from_the_cache(cached_api: Api) -> None:
    client = cached_api.client()
    variant = VARIANTS[1]
    body = {"variant_id": variant, "assembly": honest(variant, "gcc")}
    first = client.post("/step", json=body).json()
    second = client.post("/step", json=body).json()
    assert first["passed"] is True and "cached" not in first
    assert second["cached"] is True and second["attempt_id"] != first["attempt_id"]
    assert second["seed"] == first["seed"]  # no seed sent: derived from the content
    for field in ("passed", "error_kind", "message", "gates", "reward", "versions"):
        assert second[field] == first[field], field
    stored = client.get(f"/attempts/{second['attempt_id']}").json()
    assert stored["status"] == "done" and stored["worker"] == "verdict-cache"
    metrics = client.get("/metrics").text
    assert any(line.startswith("armgym_attempts_cached_total") and float(line.split()[-1]) >= 1
               for line in metrics.splitlines())


def test_wrong_and_hostile_verdicts_are_reused_and_a_new_seed_is_not(cached_api: Api) -> None:
    client = cached_api.client()
    variant = VARIANTS[0]
    for text, kind in ((asm("    ret"), "wrong_output"),
                       (asm("    mov x8, #93\n    svc #0\n    ret"), "object_rejected")):
        first = client.post("/step", json={"variant_id": variant, "assembly": text}).json()
        again = client.post("/step", json={"variant_id": variant, "assembly": text}).json()
        assert first["error_kind"] == again["error_kind"] == kind and again["cached"] is True
        fresh = client.post("/step", json={"variant_id": variant, "assembly": text,
                                           "seed": first["seed"] ^ 1}).json()
        assert fresh["error_kind"] == kind and "cached" not in fresh
