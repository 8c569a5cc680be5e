"""Soak, run by hand: many verifications through one Celery worker, watching its memory and
what it leaves behind.

    .venv/bin/python -m bench.soak [--n 5000] [--concurrency 2] [--batch 500]
    .venv/bin/python -m bench --only soak [--soak-n 5000]     (the same, as a part of the suite)

The farm runs as in the fault tests' setup (PostgreSQL database of its own on the shared server,
Redis from $ARMGYM_BENCH_REDIS, one worker, one API), with the verdict cache off and every attempt
distinct (so each gets a seed of its own and a fresh C reference run), over VARIANT_COUNT (32
variants spread over the catalogue, so what a process keeps per variant shows), in batches of
--batch (500; a tenth of n when n is smaller, never fewer than the variants): 5/8 honest compiler
output (every gate: as, ld, the decoder, the emulator's tests and timing run, the cost model), 1/8
a wrong kernel (through the emulator's tests), 1/8 refused by GNU as, 1/8 by the source scan. After
each batch: the RSS of the worker's main and each pool process. At the end: the worker's scratch
directory (a TMPDIR of its own) must be empty, and no process but the pool may be left under the
worker. Flat means the last sample within 10% of the first sample after warm-up (the second
batch's: the first one meets every variant), for the main process and for each pool process.
The C reference's servers (toolchain/execution/reference_server.py) are the one kind of process
a pool process may keep: at most `reference_servers` each, children of a pool process running
reference.elf in serve mode; every one of them must be gone once the worker has stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis

from api import process
from deploy.measure import POSTGRES, rss_mib
from store import admin, db
from store.keys import new_plaintext
from toolchain import baselines, kernels
from toolchain.execution import reference_server
from toolchain.settings import get_settings

VARIANT_COUNT = 32
HEADER = "    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n"
REFUSED_BY_AS = (HEADER + "    mov x8, #93\n    svc #0\n    ret\n", HEADER + "    fadd.x v0, v1\n")
SCANNED = (HEADER + '    .incbin "/etc/passwd"\n    ret\n',)
BATCH = 500


def variants(count: int = VARIANT_COUNT) -> list[str]:
    """`count` variants evenly spread over the catalogue (sorted ids: deterministic)."""
    ids = sorted(v.id for v in kernels.build_all())
    return ids[:: max(1, len(ids) // count)][:count]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def text_for(i: int, chosen: list[str]) -> str:
    variant = chosen[i % len(chosen)]
    kind = i % 8
    if kind < 5:
        body = baselines.get(kernels.get(variant), "gcc" if i // 8 % 2 else "clang",
                             settings=get_settings()).assembly
    elif kind == 5:
        body = HEADER + "    ret\n"
    elif kind == 6:
        body = REFUSED_BY_AS[i // 8 % len(REFUSED_BY_AS)]
    else:
        body = SCANNED[0]
    return body + f"// soak {i}\n"


def children(pid: int) -> list[int]:
    """The children of every thread of `pid`: /proc/<pid>/task/<pid>/children lists only the main
    thread's, and a verification's tool runs and reference servers are started from the overlap
    threads (background.py)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += map(int, (task / "children").read_text().split())
        except OSError:
            continue
    return sorted(set(out))


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def reference_servers(pool: set[int]) -> dict[int, list[int]]:
    """The reference servers under each pool process (their direct children in serve mode)."""
    out: dict[int, list[int]] = {}
    for parent in pool:
        for kid in children(parent):
            try:
                argv = Path(f"/proc/{kid}/cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if len(argv) > 1 and argv[-1] == b"serve" and argv[-2].endswith(b"/reference.elf"):
                out.setdefault(parent, []).append(kid)
    return out


def running(pid: int) -> bool:
    try:
        return reference_server.proc_stat(pid)[0] != "Z"
    except OSError:
        return False


def worker_rss(main: int) -> dict[str, Any]:
    """The main process's and each pool process's RSS; the reference servers' apart."""
    kids = children(main)
    pools = [round(rss_mib(k), 1) for k in kids]
    servers = [p for ps in reference_servers(set(kids)).values() for p in ps]
    return {"main": round(rss_mib(main), 1), "pool": round(sum(pools), 1), "pools": pools,
            "servers": len(servers), "servers_mib": round(sum(map(rss_mib, servers)), 1),
            "processes": 1 + len(kids)}


def growth(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Each process's RSS at the last sample against the first after warm-up (the second)."""
    warm = samples[1] if len(samples) > 1 else samples[0]
    last = samples[-1]
    out = {"main": round(last["main"] / warm["main"] - 1, 3)} if warm["main"] else {}
    for i, (a, b) in enumerate(zip(warm["pools"], last["pools"], strict=False)):
        if a:
            out[f"pool {i + 1}"] = round(b / a - 1, 3)
    return out


def run(n: int = 5000, concurrency: int = 2, batch: int | None = None,
        variant_count: int = VARIANT_COUNT) -> dict[str, Any]:
    """The soak's figures: outcomes, RSS samples, growth after warm-up, leftovers."""
    chosen = variants(variant_count)
    batch = batch or max(len(chosen), min(BATCH, n // 10))  # the first batch meets them all
    tag = f"soak_{os.getpid()}"
    db_url = POSTGRES.format(pid=tag)
    broker = os.environ.get("ARMGYM_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    work = Path(tempfile.mkdtemp(prefix="armgym-bench-soak-"))
    work.chmod(0o755)  # the sandbox (another user) reaches its scratch through here
    scratch = work / "tmp"
    scratch.mkdir(mode=0o1777)
    scratch.chmod(0o1777)  # the sandbox user writes here too
    key = new_plaintext()
    env = {**os.environ, "ARMGYM_DATABASE_URL": db_url, "ARMGYM_BROKER_URL": broker,
           "ARMGYM_QUEUE_NAME": f"armgym-{tag}", "ARMGYM_API_KEYS": f"soak:{key}",
           "ARMGYM_VERDICT_CACHE": "0", "ARMGYM_RATE_LIMIT_PER_S": "0"}
    admin.drop(db_url)
    admin.create(db_url)
    db.upgrade(db_url)
    worker_log = open(work / "worker.log", "wb")  # noqa: SIM115 (closed below)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-n",
         f"{tag}@%h", "--concurrency", str(concurrency), "--without-mingle",
         "--without-gossip", "--loglevel", "warning"],
        env={**env, "TMPDIR": str(scratch)}, stdout=worker_log, stderr=subprocess.STDOUT)
    port = process.free_port()
    api = process.start(env, port, log=work / "api.log")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                          headers={"X-API-Key": key})
    samples: list[dict[str, Any]] = []
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    try:
        for first in range(0, n, batch):
            count = min(batch, n - first)
            reply = client.post("/batches", json={"attempts": [
                {"variant_id": chosen[i % len(chosen)], "assembly": text_for(i, chosen)}
                for i in range(first, first + count)]})
            reply.raise_for_status()
            batch_id = reply.json()["batch_id"]
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                body = client.get(f"/batches/{batch_id}", params={"wait": 30}).json()
                if body["complete"]:
                    break
            else:
                raise SystemExit(f"batch {batch_id} not done after 30 minutes")
            outcomes.update("pass" if r["passed"] else str(r["error_kind"])
                            for r in body["results"])
            if outcomes["infra_error"]:
                raise SystemExit(f"infra_error verdicts: the setup is broken ({work})")
            samples.append({"done": first + count,
                            "seconds": round(time.monotonic() - started, 1),
                            **worker_rss(worker.pid)})
            say(json.dumps(samples[-1]))
        time.sleep(2)  # the last verification's tools exit
        pool = set(children(worker.pid))
        servers = reference_servers(pool)
        served = {p for kids in servers.values() for p in kids}
        left = [p for p in descendants(worker.pid) if p not in pool and p not in served]
        # pymp-*: the live pool's own multiprocessing directory, removed when the worker exits
        leftovers = {"scratch_entries": sorted(e for e in os.listdir(scratch)
                                               if not e.startswith("pymp-"))[:20],
                     "processes_under_worker": len(descendants(worker.pid)),
                     "extra_processes": left,
                     "reference_servers": {str(k): len(v) for k, v in servers.items()},
                     "reference_servers_over_bound": [
                         k for k, v in servers.items()
                         if len(v) > get_settings().reference_servers]}
    finally:
        process.stop(api)
        worker.terminate()
        worker.wait(60)
        worker_log.close()
        admin.drop(db_url)
        redis.Redis.from_url(broker).delete(env["ARMGYM_QUEUE_NAME"])
    # a server ends at EOF on its stdin, i.e. with its pool process
    deadline = time.monotonic() + 10
    while any(running(p) for p in served) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers["servers_after_stop"] = [p for p in served if running(p)]
    grown = growth(samples)
    results = {"n": n, "concurrency": concurrency, "batch": batch, "variants": len(chosen),
               "outcomes": dict(outcomes), "samples": samples, "growth_after_warmup": grown,
               "flat_within_10pct": all(abs(g) <= 0.10 for g in grown.values()),
               "rss_max_mib": max(max([s["main"], *s["pools"]]) for s in samples),
               "worker_total_max_mib": max(round(s["main"] + s["pool"], 1) for s in samples),
               "leftovers": leftovers,
               "verifications_per_s": round(n / (time.monotonic() - started), 1)}
    shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None,
                        help=f"attempts per batch, one RSS sample each (default: {BATCH}, "
                             "a tenth of n when n is smaller)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))
    args = parser.parse_args()
    results = {"command": vars(args) | {"out": str(args.out)},
               **run(args.n, args.concurrency, args.batch)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    say(json.dumps({k: results[k] for k in ("outcomes", "growth_after_warmup",
                                            "flat_within_10pct", "rss_max_mib", "leftovers",
                                            "verifications_per_s")}))


if __name__ == "__main__":
    main()
