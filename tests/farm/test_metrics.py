"""Metrics: the workers count verdicts by error kind and time each gate (multiprocess mode, read
from the worker's own endpoint), a real Prometheus scrapes the API and the workers, and the API's
/metrics keeps answering 200 with its database and its broker stopped."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api import health, process
from store import db

from .conftest import FARM, Api, Workers, base_env, wait_batch
from .mix import VARIANTS, asm, honest
from .servers import Prometheus, host_port, own_postgres, own_redis

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"

pytestmark = FARM


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def summed(workers: Workers, metric: str, label: str) -> Counter[str]:
    """A counter by one of its labels, summed over every worker's endpoint."""
    total: Counter[str] = Counter()
    for port in workers.metrics_ports.values():
        for (name, labels), value in samples(f"http://127.0.0.1:{port}/metrics").items():
            if name == metric:
                total[dict(labels)[label]] += int(value)
    return total


def verdict_counts(workers: Workers) -> Counter[str]:
    return summed(workers, "armgym_verdicts_total", "error_kind")


def submissions(n: int) -> list[dict[str, object]]:
    """Passing, wrong and refused kernels with fresh seeds (nothing answered from a cache)."""
    kinds = [honest(VARIANTS[1], "clang"), asm("    ret"),
             asm("    mov x8, #93\n    svc #0\n    ret"), asm("    fadd.x v0, v1")]
    rng = random.Random()
    return [{"variant_id": VARIANTS[1], "assembly": kinds[i % len(kinds)],
             "seed": rng.randrange(2**62)} for i in range(n)]


def test_prometheus_scrapes_the_api_and_the_workers(farm_server: Api, celery_workers: Workers,
                                                   tmp_path: Path) -> None:
    client = farm_server.client()
    before = verdict_counts(celery_workers)
    batch = client.post("/batches", json={"attempts": submissions(8), "run_id": "metrics"})
    assert batch.status_code == 202, batch.text
    done = wait_batch(client, batch.json()["batch_id"])
    assert done["complete"], done
    stored = Counter(r["verdict"]["error_kind"] or "none" for r in done["results"])
    assert stored["none"] == 2 and stored["wrong_output"] == 2, stored
    # every stored verdict was counted once, under its own error kind, by some pool process
    # (just after storing it: the batch may be complete a moment before the last count)
    deadline = time.monotonic() + 30
    while (counted := verdict_counts(celery_workers) - before) != stored:
        assert time.monotonic() < deadline, (counted, stored)
        time.sleep(0.2)

    worker_port = next(iter(celery_workers.metrics_ports.values()))
    worker = samples(f"http://127.0.0.1:{worker_port}/metrics")
    gates = {dict(labels)["gate"] for (name, labels) in worker
             if name == "armgym_gate_duration_seconds_count"}
    assert {"syntax", "object", "correctness"} <= gates, gates
    # the C reference of every attempt that reached the tests, by how it went (summed over
    # the pool processes); server starts apart, as events, not runs
    runs = summed(celery_workers, "armgym_reference_runs_total", "path")
    events = summed(celery_workers, "armgym_reference_server_events_total", "event")
    assert sum(runs.values()) >= stored["none"] + stored["wrong_output"], runs
    assert runs.get("served", 0) + runs.get("cached", 0) >= 1, runs
    assert not set(runs) & set(events) and events.get("start", 0) >= 1, (runs, events)
    (info,) = [dict(labels) for (name, labels) in worker if name == "armgym_build_info"]
    assert info["component"] == "worker" and info["verifier_version"]
    assert info["as"].startswith("GNU assembler") and "qemu" in info["qemu"].lower()

    prom = Prometheus(tmp_path, {  # the job names the alert rules and dashboards use
        "armgym-api": [host_port(farm_server.url)],
        "armgym-worker": [f"127.0.0.1:{p}" for p in celery_workers.metrics_ports.values()]},
        rule_files=[MONITORING / "alerts.yml"])
    try:
        for expr in ('count(up{job="armgym-worker"} == 1) == 2',
                     'up{job="armgym-api"} == 1',
                     'armgym_verdicts_total{job="armgym-worker",error_kind="wrong_output"}',
                     'armgym_gate_duration_seconds_bucket{job="armgym-worker",gate="correctness",'
                     'le="300.0"}',
                     'armgym_verification_duration_seconds_count{job="armgym-worker"}',
                     'armgym_build_info{job="armgym-worker",component="worker"}',
                     'armgym_build_info{job="armgym-api",component="api"}',
                     'armgym_http_requests_total{job="armgym-api",route="/batches"}',
                     'armgym_http_request_duration_seconds_bucket{job="armgym-api",le="600.0"}',
                     'armgym_broker_queue_depth{job="armgym-api"}',
                     'armgym_outstanding_attempts{job="armgym-api"}',
                     'armgym_dependency_up{job="armgym-api",dependency="database"} == 1'):
            assert prom.wait_for(expr, timeout=30), f"no series for {expr}: {prom.targets()}"
        total = prom.query('sum(armgym_verdicts_total{job="armgym-worker"})')
        assert float(total[0]["value"][1]) >= 8
        # the alert rules load and evaluate on the real series; a healthy farm fires none
        rules = prom.wait_for_rules()
        assert {r["name"] for r in rules} >= {"ArmgymInfraErrorShareHigh", "ArmgymApiDown"}
        assert all(r["health"] == "ok" for r in rules), rules
        assert not [r for r in rules if r["state"] == "firing"], rules
    finally:
        prom.close()


def degraded_within(url: str, seconds: float) -> bool:
    """/health answers from a report of the last background check: 503 within a few checks."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/health", timeout=60).status_code == 503:
            return True
        time.sleep(0.2)
    return False


def test_metrics_answers_200_with_the_database_and_the_broker_stopped(tmp_path: Path,
                                                                      logs: Path) -> None:
    with own_postgres(tmp_path) as (pg_url, postgres), \
            own_redis(tmp_path) as (redis_url, redis_server):
        db.upgrade(pg_url)
        env = base_env(ARMGYM_DATABASE_URL=pg_url, ARMGYM_BROKER_URL=redis_url)
        port = process.free_port()
        api = process.start(env, port, log=logs / f"api-deps-{port}.log")
        url = f"http://127.0.0.1:{port}"
        try:
            def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                res = httpx.get(f"{url}/metrics", timeout=60)
                assert res.status_code == 200, res.text
                return samples(f"{url}/metrics")

            def up(found: dict, dependency: str) -> float:
                return found[("armgym_dependency_up", (("dependency", dependency),))]

            found = scrape()
            assert up(found, "database") == 1 and up(found, "broker") == 1
            assert found[("armgym_outstanding_attempts", ())] == 0

            postgres.terminate()
            postgres.wait(30)
            found = scrape()
            assert up(found, "database") == 0 and up(found, "broker") == 1
            assert math.isnan(found[("armgym_outstanding_attempts", ())])
            assert degraded_within(url, 10 * health.REFRESH_S)

            redis_server.terminate()
            redis_server.wait(30)
            found = scrape()
            assert up(found, "database") == 0 and up(found, "broker") == 0
            assert math.isnan(found[("armgym_broker_queue_depth", ())])
            assert ("armgym_build_info", ()) not in found  # it has labels
            assert any(name == "armgym_build_info" for name, _ in found)
        finally:
            process.stop(api)
