"""The suite's memory parts (bench.soak, bench.load as `python -m bench` parts), wired end to end
on a tiny run: a real Celery worker verifying real attempts, a real API with waiting clients, and
the report's verdict lines judging what they measured."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .conftest import FARM, REDIS

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not installed

from bench import load, report, soak  # noqa: E402

pytestmark = FARM


@pytest.fixture(autouse=True)
def _bench_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARMGYM_BENCH_REDIS", REDIS.rstrip("/") + "/0")


def test_soak_part_samples_every_pool_process_and_is_judged() -> None:
    found = soak.run(n=8, batch=4, variant_count=2)
    assert sum(found["outcomes"].values()) == 8
    assert "infra_error" not in found["outcomes"]
    assert [s["done"] for s in found["samples"]] == [4, 8]
    assert all(len(s["pools"]) == 2 and s["processes"] == 3 for s in found["samples"])
    assert set(found["growth_after_warmup"]) == {"main", "pool 1", "pool 2"}
    assert found["leftovers"]["scratch_entries"] == []
    assert found["leftovers"]["extra_processes"] == []
    # the reference servers a pool process keeps are bounded, and end with the worker
    assert found["leftovers"]["reference_servers_over_bound"] == []
    assert found["leftovers"]["servers_after_stop"] == []
    assert all(s["servers"] <= 2 * 2 for s in found["samples"])  # 2 variants, 2 pool processes
    # and they are seen: started from a verification's threads, not the pool's main thread
    assert found["samples"][-1]["servers"] >= 1
    results = {"n": 8, "composition": {}, "cpus": 2, "elapsed_s": 1.0, "soak": found}
    ratios = report.ratios(results)
    assert ratios["soak_rss_max_mib"] == found["rss_max_mib"] > 0
    text = report.table(results)
    assert "soak: n=8 (2 variants, batches of 4)" in text
    assert "[met: <= 400]" in text  # a tiny worker is far under the limit
    assert "left behind" in text and "[met: <= 0]" in text


def test_a_grown_process_is_not_called_flat() -> None:
    samples = [{"done": 1, "main": 100.0, "pools": [100.0, 100.0]},
               {"done": 2, "main": 100.0, "pools": [100.0, 100.0]},
               {"done": 3, "main": 104.0, "pools": [100.0, 125.0]}]
    grown = soak.growth(samples)
    assert grown == {"main": 0.04, "pool 1": 0.0, "pool 2": 0.25}
    assert not report.verdicts({"soak_growth_max": max(grown.values())})["soak_growth_max"]


def test_load_part_reports_the_api_rss_with_clients_waiting() -> None:
    found = load.run(clients=20, seconds=6, apis=2)
    waiting = found["waiting"]
    assert waiting["clients"] == 20 and waiting["waiting_max"] > 0
    assert 0 < waiting["api_rss_mib_first"] <= waiting["api_rss_mib_max"]
    assert found["replicas"]["overshoot"] == 0
    text = report.table({"n": 0, "composition": {}, "cpus": 2, "elapsed_s": 1.0,
                         "load": found})
    assert "load: 20 clients waiting 6 s" in text and "[met: <= 300]" in text


def test_children_of_every_thread_are_counted() -> None:
    """A process started from a thread other than the main one is a child of that thread's task
    only: the soak's process census must see it (the overlap threads start tool runs and
    reference servers)."""
    import subprocess
    import threading

    started: list[subprocess.Popen[bytes]] = []
    ready, done = threading.Event(), threading.Event()

    def start() -> None:  # the thread stays alive: at its exit its children move to another
        started.append(subprocess.Popen(["sleep", "30"]))
        ready.set()
        done.wait(30)

    thread = threading.Thread(target=start)
    thread.start()
    ready.wait(30)
    try:
        pid = started[0].pid
        main_only = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
        assert str(pid) not in main_only
        assert pid in soak.children(os.getpid())
        assert pid in soak.descendants(os.getpid())
    finally:
        done.set()
        thread.join()
        started[0].kill()
        started[0].wait()
