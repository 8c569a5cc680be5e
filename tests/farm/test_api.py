"""The API over real HTTP, in embedded mode and in farm mode (same tests, `api` is parametrized):
response shapes of the original endpoints, 4xx for bad requests, keys, backpressure, history."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api import process
from store.models import Attempt
from toolchain import kernels

from .conftest import ADMIN_KEY, FARM, OTHER_KEY, Api, start_api, wait_batch
from .mix import VARIANTS, asm, honest

HONEST = VARIANTS[0]

pytestmark = FARM


def attempts_in(server: Api, run_id: str) -> int:
    engine = server.engine()
    with engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(Attempt).where(Attempt.run_id == run_id))
    engine.dispose()
    return int(n or 0)


def test_health_shape(api: Api) -> None:
    body = api.client(None).get("/health").json()
    assert body["status"] == "ok" and body["mode"] == api.mode
    assert {"as", "ld", "qemu", "objdump", "gcc", "clang"} <= set(body["tools"])
    assert all(isinstance(v, str) and v for v in body["tools"].values())
    assert body["broker"]["reachable"] and body["database"]["reachable"]
    assert body["database"]["revision"] and body["sandbox"]
    assert body["queue"]["limit"] > 0 and body["queue"]["outstanding"] >= 0
    assert body["verifier_version"]


def test_tasks_shape_and_filters(api: Api) -> None:
    client = api.client(None)
    body = client.get("/tasks").json()
    assert body["count"] == len(kernels.suite()) == len(body["tasks"])
    task = body["tasks"][0]
    assert {"variant_id", "template", "dtype", "params", "difficulty", "split",
            "signature"} <= set(task)
    assert "c_source" not in task
    found = client.get("/tasks", params={"template": "dot", "split": "eval",
                                         "difficulty": 1}).json()["tasks"]
    assert all(t["template"] == "dot" and t["split"] == "eval" and t["difficulty"] == 1
               for t in found)
    bad = client.get("/tasks", params={"dtype": "float128"})
    assert bad.status_code == 422 and "dtype" in bad.json()["detail"]
    assert client.get("/tasks", params={"difficulty": 7}).status_code == 422


def test_reset_shape_and_seed(api: Api) -> None:
    client = api.client(None)
    first = client.post("/reset", params={"seed": 42}).json()
    assert client.post("/reset", params={"seed": 42}).json()["variant_id"] == first["variant_id"]
    assert {"variant_id", "c_source", "signature", "prototype", "difficulty", "split", "seed",
            "baseline", "baselines"} <= set(first)
    assert first["seed"] == 42 and "kernel" in first["c_source"]
    assert first["baseline"]["compiler"] == "clang" and "kernel" in first["baseline"]["assembly"]
    assert "cycles" in first["baseline"]
    assert {b["compiler"] for b in first["baselines"]} == {"clang", "gcc"}
    chosen = client.post("/reset", params={"variant_id": HONEST}).json()
    assert chosen["variant_id"] == HONEST and isinstance(chosen["seed"], int)
    assert client.post("/reset", params={"variant_id": "nope_n1_int8"}).status_code == 404
    assert client.post("/reset", params={"seed": -1}).status_code == 422


def test_step_shape(api: Api) -> None:
    client = api.client()
    res = client.post("/step", json={"variant_id": HONEST, "assembly": honest(HONEST, "clang"),
                                     "seed": 7})
    assert res.status_code == 200, res.text
    verdict = res.json()
    assert verdict["passed"] is True and verdict["error_kind"] is None
    assert verdict["seed"] == 7 and verdict["variant_id"] == HONEST
    assert {"syntax", "object", "correctness"} <= {g["name"] for g in verdict["gates"]}
    assert verdict["versions"] and verdict["verifier_version"] and verdict["sandbox"]
    assert set(verdict["timings"]) >= {"syntax", "correctness"}
    stored = client.get(f"/attempts/{verdict['attempt_id']}").json()
    assert stored["status"] == "done" and stored["verdict"]["gates"] == verdict["gates"]
    bad = client.post("/step", json={"variant_id": HONEST,
                                     "assembly": asm("    svc #0\n    ret")}).json()
    assert bad["passed"] is False and bad["error_kind"] == "object_rejected"


def test_bad_requests_get_clear_4xx(api: Api) -> None:
    client = api.client()
    malformed = client.post("/step", content=b'{"variant_id": "x", ',
                            headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["detail"]
    unknown = client.post("/step", json={"variant_id": "nope_n1_int8", "assembly": "ret"})
    assert unknown.status_code == 404 and "unknown variant_id" in unknown.json()["detail"]
    mixed = client.post("/batches", json={"attempts": [
        {"variant_id": "nope_n1_int8", "assembly": "ret"},
        {"variant_id": HONEST, "assembly": "ret\x00"}]})
    assert mixed.status_code == 422 and "unknown variant_id" in mixed.json()["detail"]
    missing = client.post("/step", json={"variant_id": HONEST})
    assert missing.status_code == 422 and "assembly" in missing.json()["detail"]
    oversize = client.post("/step", json={"variant_id": HONEST, "assembly": "x" * 300_000})
    assert oversize.status_code == 413 and "limit" in oversize.json()["detail"]
    nul = client.post("/step", json={"variant_id": HONEST, "assembly": "ret\u0000"})
    assert nul.status_code == 422 and "NUL" in nul.json()["detail"]
    twice = client.post("/batches", json={"attempts": [
        {"variant_id": HONEST, "assembly": "ret", "idempotency_key": "same"}] * 2})
    assert twice.status_code == 409 and "appears twice" in twice.json()["detail"]
    assert client.post("/batches", json={"attempts": []}).status_code == 422
    assert client.get(f"/attempts/{uuid.uuid4()}").status_code == 404
    assert client.get(f"/batches/{uuid.uuid4()}").status_code == 404
    assert client.get("/attempts", params={"cursor": "garbage"}).status_code == 422


def test_no_request_without_a_key_can_submit(api: Api) -> None:
    run = f"auth-{uuid.uuid4()}"
    item = {"variant_id": HONEST, "assembly": "ret"}
    for key in (None, "agk_not_a_key"):
        client = api.client(key)
        assert client.post("/step", json={**item, "run_id": run}).status_code == 401
        assert client.post("/batches", json={"run_id": run, "attempts": [item]}
                           ).status_code == 401
        assert client.get("/attempts").status_code == 401
    bearer = api.client(None)
    bearer.headers["Authorization"] = "Basic abc"
    assert bearer.post("/batches", json={"run_id": run, "attempts": [item]}).status_code == 401
    assert attempts_in(api, run) == 0
    # Key administration needs the admin scope; a revoked key stops working at once.
    assert api.client().post("/keys", json={"name": "x"}).status_code == 403
    made = api.client(ADMIN_KEY).post("/keys", json={"name": "carol", "scopes": ["submit"]})
    assert made.status_code == 201 and made.json()["key"].startswith("agk_")
    carol = api.client(made.json()["key"])
    assert carol.post("/batches", json={"run_id": run, "attempts": [item]}).status_code == 202
    assert carol.get("/attempts").status_code == 403  # no read scope
    listed = api.client(ADMIN_KEY).get("/keys").json()
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert api.client(ADMIN_KEY).delete(f"/keys/{made.json()['id']}").status_code == 204
    assert carol.post("/batches", json={"run_id": run, "attempts": [item]}).status_code == 401
    assert attempts_in(api, run) == 1


@pytest.fixture
def small_limits(api: Api, request: pytest.FixtureRequest, tmp_path: Path,
                 logs: Path) -> Iterator[Api]:
    """A second API process of the same mode with a queue limit of 2 and small size limits."""
    server = start_api(api.mode, tmp_path, logs, request, ARMGYM_QUEUE_LIMIT="2",
                       ARMGYM_RETRY_AFTER_S="3", ARMGYM_MAX_BATCH="20",
                       ARMGYM_MAX_REQUEST_BYTES="100000")
    yield server
    process.stop(server.proc)


def test_overload_gets_429_with_retry_after(small_limits: Api) -> None:
    client = small_limits.client()
    slow = [{"variant_id": HONEST, "assembly": asm("    b ."), "seed": i} for i in range(3)]
    first = client.post("/batches", json={"attempts": slow})
    assert first.status_code == 202, first.text  # an empty queue takes a whole batch
    refused = client.post("/step", json={"variant_id": HONEST, "assembly": "ret"})
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "3" and "queue full" in refused.json()["detail"]
    assert client.post("/batches", json={"attempts": slow[:1]}).status_code == 429
    metrics = small_limits.client(None).get("/metrics").text
    assert "armgym_backpressure_rejections_total 2.0" in metrics
    done = wait_batch(client, first.json()["batch_id"])
    assert done["complete"] and all(r["error_kind"] == "timeout" for r in done["results"])
    assert client.post("/batches", json={"attempts": slow[:1]}).status_code == 202
    many = client.post("/batches", json={"attempts": [slow[0]] * 21})
    assert many.status_code == 413 and "limit is 20" in many.json()["detail"]
    huge = client.post("/batches", content=b"x" * 150_000,
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "larger than" in huge.json()["detail"]


def test_history_pagination_best_and_summaries(api: Api) -> None:
    client = api.client()
    run = f"hist-{uuid.uuid4()}"
    good = honest(VARIANTS[1], "gcc")
    items = [{"variant_id": VARIANTS[1], "assembly": good if i % 2 else asm("    ret"),
              "idempotency_key": f"{run}-{i}", "step": i // 4} for i in range(7)]
    batch = client.post("/batches", json={"run_id": run, "model": "m-1", "attempts": items})
    assert wait_batch(client, batch.json()["batch_id"])["complete"]
    seen, cursor, pages = [], None, 0
    while True:
        page = client.get("/attempts", params={"run_id": run, "limit": 3,
                                               **({"cursor": cursor} if cursor else {})}).json()
        seen += page["attempts"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 == len({a["attempt_id"] for a in seen})
    stamps = [a["created_at"] for a in seen]
    assert stamps == sorted(stamps, reverse=True)
    passed = client.get("/attempts", params={"run_id": run, "passed": True}).json()["attempts"]
    assert len(passed) == 3 and all(a["passed"] for a in passed)
    summary = client.get(f"/runs/{run}/summary").json()["steps"]
    assert [s["step"] for s in summary] == [0, 1]
    assert summary[0]["attempts"] == 4 and summary[0]["correctness_rate"] == pytest.approx(0.5)
    outcomes = {o["outcome"]: o["attempts"] for o in
                client.get("/errors", params={"run_id": run}).json()["outcomes"]}
    assert outcomes == {"pass": 3, "wrong_output": 4}
    best = client.get(f"/best/{VARIANTS[1]}").json()
    assert best["variant_id"] == VARIANTS[1] and "kernel" in best["assembly"]
    assert best["found_by"] in ("alice", "bob")
    assert any(k["variant_id"] == VARIANTS[1] for k in client.get("/best").json()["kernels"])
    assert client.get("/best/nope_n1_int8").status_code == 404


def test_results_stream_as_ndjson_and_sse(api: Api) -> None:
    client = api.client(OTHER_KEY)
    items = [{"variant_id": HONEST, "assembly": asm("    ret"), "seed": i} for i in range(4)]
    batch_id = client.post("/batches", json={"attempts": items}).json()["batch_id"]
    with client.stream("GET", f"/batches/{batch_id}/stream") as res:
        assert res.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in res.iter_lines() if line]
    assert sorted(line["position"] for line in lines[:-1]) == [0, 1, 2, 3]
    assert all(line["verdict"]["error_kind"] == "wrong_output" for line in lines[:-1])
    assert lines[-1] == {"event": "end", "batch_id": batch_id, "total": 4, "done": 4,
                         "complete": True}
    with client.stream("GET", f"/batches/{batch_id}/stream",
                       headers={"Accept": "text/event-stream"}) as res:
        text = res.read().decode()
    assert text.count("event: result\n") == 4 and text.rstrip().endswith('"complete":true}')


def test_metrics_and_docs(api: Api) -> None:
    client = api.client(None)
    metrics = client.get("/metrics").text
    assert "armgym_http_requests_total" in metrics
    assert "armgym_attempts_submitted_total" in metrics
    assert "armgym_outstanding_attempts" in metrics
    assert client.get("/docs").status_code == 200
    openapi = client.get("/openapi.json").json()
    paths = openapi["paths"]
    # every gate's details model, as the verdicts' gates carry them
    details = openapi["components"]["schemas"]["GateResult"]["properties"]["details"]["anyOf"]
    assert {"DirectivesDetails", "SyntaxDetails", "ObjectDetails", "CorrectnessDetails",
            "PerformanceDetails", "CrossCheckDetails"} <= {d["$ref"].rsplit("/", 1)[1]
                                                             for d in details}
    assert {"/health", "/reset", "/step", "/tasks", "/batches", "/batches/{batch_id}",
            "/attempts", "/best/{variant_id}"} <= set(paths)
