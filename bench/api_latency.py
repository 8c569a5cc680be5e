"""Parts 5 and 6: one `/step` in embedded mode against the floor of that same submission, and
resubmitted identical attempts against fresh ones (core `verify()` and embedded `/step`).

The embedded API (api.process: no broker, no database configured; SQLite and an in-process
pool) runs with one pool process, so the warm-up request before each measured one (same
variant, a throwaway seed) has warmed the process that serves it. /step answers with the
verdict (it waits up to ARMGYM_MAX_WAIT_S), so its round trip is the latency a trainer sees.

The duplicates' /step ratio is measured over one keep-alive connection of the standard
library's http.client: on this project's 2-core machines httpx spends 1-2 ms of its own per
request, more than the server's whole answer to a duplicate (about 1 ms), so through httpx the
ratio measured the client. The httpx round trip of each duplicate is kept beside it.
"""

from __future__ import annotations

import http.client
import json
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from api import process
from store.keys import new_plaintext
from toolchain.verify import verify

from . import core, floor
from .mix import Submission


@contextmanager
def embedded_api(verdict_cache: bool, workers: int = 1) -> Iterator[httpx.Client]:
    """An embedded API on a data directory of its own, and a client with a key for it."""
    data = Path(tempfile.mkdtemp(prefix="armgym-bench-api-"))
    key, port = new_plaintext(), process.free_port()
    env = process.embedded_env(data, ARMGYM_API_KEYS=f"bench:{key}",
                               ARMGYM_EMBEDDED_WORKERS=str(workers),
                               ARMGYM_VERDICT_CACHE="1" if verdict_cache else "0")
    server = process.start(env, port, log=data / "api.log")
    try:
        yield httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=180,
                           headers={"Authorization": f"Bearer {key}"})
    finally:
        process.stop(server)
        shutil.rmtree(data, ignore_errors=True)


def _outcome(status: int, body: bytes) -> str:
    """The outcome of a /step reply; any other answer than 200 stops the bench part."""
    if status != 200:
        raise RuntimeError(f"/step answered {status}: {body[:300]!r}")
    return core.outcome(json.loads(body))


def step(client: httpx.Client, item: Submission, seed: int) -> tuple[float, str]:
    """(round-trip seconds, outcome) of one POST /step."""
    start = time.perf_counter()
    reply = client.post("/step", json={**item.attempt(), "seed": seed})
    wall = time.perf_counter() - start
    return wall, _outcome(reply.status_code, reply.content)


class KeepAlive:
    """POST /step over one keep-alive connection of http.client, to the server of `client`
    with its key: the request is encoded before the clock starts, the reply read in full."""

    def __init__(self, client: httpx.Client) -> None:
        url = client.base_url
        self.conn = http.client.HTTPConnection(url.host, url.port, timeout=180)
        self.headers = {"Authorization": client.headers["Authorization"],
                        "Content-Type": "application/json"}

    def step(self, item: Submission, seed: int) -> tuple[float, str]:
        body = json.dumps({**item.attempt(), "seed": seed}).encode()
        start = time.perf_counter()
        self.conn.request("POST", "/step", body=body, headers=self.headers)
        reply = self.conn.getresponse()
        data = reply.read()
        wall = time.perf_counter() - start
        return wall, _outcome(reply.status, data)


def honest(mix: Sequence[Submission], count: int) -> list[Submission]:
    """Compiler outputs of `count` different variants, in mix order."""
    picked: dict[str, Submission] = {}
    for s in mix:
        if s.category == "compiler" and s.variant_id not in picked:
            picked[s.variant_id] = s
    return list(picked.values())[:count]


def step_latency(items: Sequence[Submission], recs: dict[tuple[str, int], floor.Recording],
                 blobs: Path) -> dict[str, Any]:
    """Per item: warm-up /step, measured /step, then the median of 3 floor replays."""
    rows = []
    with embedded_api(verdict_cache=False) as client:
        for item in tqdm(items, desc="/step vs floor", unit="step", leave=False):
            step(client, item, core.WARM_SEED)
            wall, outcome = step(client, item, item.seed)
            base = floor.replay_one(recs[(item.variant_id, item.seed)], blobs)
            rows.append({"variant_id": item.variant_id, "label": item.label, "outcome": outcome,
                         "step_s": wall, "floor_s": base, "ratio": wall / base})
    ratios = [r["ratio"] for r in rows]
    return {"n": len(rows), "rows": rows, "median_ratio": statistics.median(ratios),
            "median_step_s": statistics.median(r["step_s"] for r in rows),
            "median_floor_s": statistics.median(r["floor_s"] for r in rows)}


def duplicates(items: Sequence[Submission]) -> dict[str, Any]:
    """Fresh vs resubmitted identical attempts, with the verdict cache on. Seeds are drawn
    anew each run so that a cache kept on disk cannot already hold the 'fresh' ones."""
    settings = core.bench_settings(verdict_cache=True)
    core_rows, api_rows = [], []
    for item in tqdm(items, desc="duplicates: core", unit="pair", leave=False):
        verify(item.variant_id, item.assembly, core.WARM_SEED, settings=settings)
        seed = secrets.randbits(62)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            verify(item.variant_id, item.assembly, seed, settings=settings)
            times.append(time.perf_counter() - start)
        core_rows.append({"variant_id": item.variant_id, "fresh_s": times[0],
                          "duplicate_s": times[1], "ratio": times[0] / times[1]})
    with embedded_api(verdict_cache=True) as client:
        plain = KeepAlive(client)
        for item in tqdm(items, desc="duplicates: /step", unit="pair", leave=False):
            step(client, item, core.WARM_SEED)
            seed = secrets.randbits(62)
            fresh, _ = plain.step(item, seed)
            again, _ = plain.step(item, seed)
            through_httpx, _ = step(client, item, seed)
            api_rows.append({"variant_id": item.variant_id, "fresh_s": fresh,
                             "duplicate_s": again, "ratio": fresh / again,
                             "duplicate_httpx_s": through_httpx,
                             "ratio_httpx": fresh / through_httpx})
    return {
        "core": {"rows": core_rows,
                 "median_ratio": statistics.median(r["ratio"] for r in core_rows)},
        "step": {"rows": api_rows,
                 "median_ratio": statistics.median(r["ratio"] for r in api_rows),
                 "median_ratio_httpx": statistics.median(r["ratio_httpx"] for r in api_rows),
                 "median_duplicate_s": statistics.median(r["duplicate_s"] for r in api_rows),
                 "median_duplicate_httpx_s":
                     statistics.median(r["duplicate_httpx_s"] for r in api_rows)},
    }


def run_batch(client: httpx.Client, attempts: list[dict[str, object]]) -> float:
    """Seconds from POST /batches to every result being in."""
    start = time.perf_counter()
    reply = client.post("/batches", json={"run_id": "bench-duplicates", "attempts": attempts})
    if reply.status_code not in (200, 202):
        raise RuntimeError(f"/batches answered {reply.status_code}: {reply.text[:300]}")
    batch_id = reply.json()["batch_id"]
    while not client.get(f"/batches/{batch_id}", params={"wait": 60}).json()["complete"]:
        pass
    return time.perf_counter() - start


def batch_duplicates(items: Sequence[Submission]) -> dict[str, Any]:
    """A trainer's view: a batch of distinct attempts, then the identical batch again (no
    idempotency keys, so new attempts are stored), through the embedded API with a pool process
    per core. Per attempt, from POST to the last result."""
    seed = secrets.randbits(62)
    attempts = [{**s.attempt(), "seed": seed + i} for i, s in enumerate(items)]
    with embedded_api(verdict_cache=True, workers=2) as client:
        run_batch(client, [{**a, "seed": core.WARM_SEED} for a in attempts[:2]])  # warm pool
        fresh = run_batch(client, attempts)
        again = run_batch(client, attempts)
    n = len(attempts)
    return {"n": n, "fresh_per_attempt_s": fresh / n, "duplicate_per_attempt_s": again / n,
            "ratio": fresh / again}
