"""Part 4, the whole farm: HTTP -> Redis -> Celery -> gates -> PostgreSQL over the mix.

The farm is started the way `deploy.measure` starts it (the container entry points: migrate, a
Celery worker with the entry point's pool processes, one more than the CPUs, the API), on a
database and a queue of its own, with the verdict cache off, so every attempt is a fresh
verification. Throughput is the mix's size over the wall time from the first POST /batches to
the last result, over `passes` passes of the mix (each under new idempotency keys, the C
references' file cache emptied before it), reported as their median: one pass lasts under a
minute, and on a shared machine two single passes of the same code differed by a third.
Worker and API resident memory are sampled meanwhile (deploy.measure's Sampler).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from api import process
from deploy.entrypoints import default_concurrency
from deploy.measure import (
    POSTGRES,
    REDIS,
    Sampler,
    rss_mib,
    start_farm,
    stop_all,
    summary,
)
from store import admin
from store.keys import new_plaintext

from . import core
from .mix import Submission

CHUNK = 128  # attempts per POST /batches
PASSES = 3


def one_pass(client: httpx.Client, mix: Sequence[Submission], tag: str,
             api_rss: list[float], api_pid: int) -> tuple[float, list[dict[str, Any]]]:
    """(wall seconds, results in mix order) of the mix submitted as batches of CHUNK."""
    started = time.perf_counter()
    batches = []
    for at in range(0, len(mix), CHUNK):
        chunk = [s.attempt(f"{tag}-{at + i}") for i, s in enumerate(mix[at:at + CHUNK])]
        reply = client.post("/batches", json={"run_id": tag, "attempts": chunk})
        reply.raise_for_status()
        batches.append(reply.json()["batch_id"])
    results: list[dict[str, Any]] = []
    with tqdm(total=len(mix), desc=f"farm {tag[-2:]}", unit="verif", leave=False) as bar:
        for batch_id in batches:
            while True:
                body = client.get(f"/batches/{batch_id}", params={"wait": 30}).json()
                api_rss.append(rss_mib(api_pid))
                bar.n = len(results) + body["done"]
                bar.refresh()
                if body["complete"]:
                    break
            results += body["results"]
    return time.perf_counter() - started, results


def reference_paths(metrics_port: int) -> dict[str, int]:
    """The worker's C reference runs by path and its servers' events so far (its /metrics,
    summed over the pool processes), e.g. {"served": 480, "no_room": 0, "start": 60}: read
    until two reads agree, as a pool process counts just after it stored its verdict."""
    last: dict[str, int] | None = None
    for _ in range(10):
        now = _scrape_paths(metrics_port)
        if now == last:
            break
        last = now
        time.sleep(0.3)
    return now


def _scrape_paths(metrics_port: int) -> dict[str, int]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name in ("armgym_reference_runs", "armgym_reference_server_events"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels.get("path") or sample.labels["event"]] += \
                        int(sample.value)
    return dict(found)


def _outcomes(results: list[dict[str, Any]]) -> list[str]:
    return ["pass" if r["passed"] else str(r["error_kind"]) for r in results]


def run(mix: Sequence[Submission], concurrency: int | None = None, passes: int = PASSES
        ) -> dict[str, Any]:
    concurrency = concurrency or default_concurrency()  # what the worker's entry point starts
    tag = f"bench-{os.getpid()}"
    db_url = POSTGRES.format(pid=tag.replace("-", "_"))
    key, port, metrics_port = new_plaintext(), process.free_port(), process.free_port()
    logs = Path(tempfile.mkdtemp(prefix="armgym-bench-farm-"))
    env = {**os.environ, "ARMGYM_DATABASE_URL": db_url, "ARMGYM_BROKER_URL": REDIS,
           "ARMGYM_QUEUE_NAME": f"armgym-{tag}", "ARMGYM_API_KEYS": key,
           "ARMGYM_WORKER_CONCURRENCY": str(concurrency), "ARMGYM_VERDICT_CACHE": "0",
           "ARMGYM_WORKER_METRICS_PORT": str(metrics_port),
           "ARMGYM_WORKER_METRICS_ADDRESS": "127.0.0.1"}
    admin.drop(db_url)
    admin.create(db_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        worker, api = start_farm(env, logs, port, procs)
        sampler = Sampler(worker.pid)
        api_rss: list[float] = []
        sampler.start()
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=180,
                              headers={"Authorization": f"Bearer {key}"})
        walls, seen, paths = [], [], [reference_paths(metrics_port)]
        for k in range(passes):
            core.forget_references()  # each pass verifies the mix's seeds afresh
            wall, results = one_pass(client, mix, f"{tag}-p{k}", api_rss, api.pid)
            walls.append(wall)
            seen.append(_outcomes(results))
            paths.append(reference_paths(metrics_port))  # counted as each verdict is stored
        outcomes, same = seen[0], all(o == seen[0] for o in seen)
        sampler.stop.set()
        sampler.join()
        shutil.rmtree(logs, ignore_errors=True)  # kept when anything above failed
        rates = [len(mix) / w for w in walls]
        return {
            "n": len(mix), "concurrency": concurrency, "wall_s": statistics.median(walls),
            "per_s": statistics.median(rates), "passes_per_s": rates,
            "outcomes_same_every_pass": same, "outcomes": outcomes,
            "outcome_counts": dict(Counter(outcomes)),
            "reference_paths_per_pass": [
                {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
                for before, after in zip(paths, paths[1:], strict=False)],
            "worker_main_rss_mib": summary(sampler.main),
            "pool_process_rss_mib": [summary(v) for v in sampler.pool.values() if len(v) > 5],
            "largest_tool_process_rss_mib": round(sampler.tools_max, 1),
            "api_rss_mib": summary(api_rss),
        }
    finally:
        stop_all(procs)
        admin.drop(db_url)
