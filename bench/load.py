"""Load, run by hand: many waiting clients against one API process, overload, and backpressure
with several API processes behind one database.

    .venv/bin/python -m bench.load [--clients 1000] [--seconds 60] [--apis 3]
    .venv/bin/python -m bench --only load [--load-clients 1000] [--load-seconds 45]   (as a part)

1. `--clients` clients wait at once on one embedded API process (half long polls on
   `GET /attempts/{id}?wait=`, re-sent when they return, half `GET /batches/{id}/stream`) on
   attempts that stay unfinished (the one pool process is busy with endless loops). Meanwhile:
   the API process's RSS, and the latency of `GET /health` (p50, p99).
2. Overload: 300 concurrent submissions against a queue limit of 50: every answer must be 202
   or 429 with Retry-After, none a timeout.
3. `--apis` farm-mode API processes on one PostgreSQL database (no workers, so nothing drains),
   queue limit 200, submissions spread over all of them at once: how far the outstanding count
   overshoots the limit (it must not: the store counts under a lock at the end of each
   submission).
4. What that exact count costs one process: 400 single-attempt submissions, 20 at a time, to
   one farm-mode API process far below its limit: latency (p50, p99) and submissions per second.
   Stages 3 and 4 need PostgreSQL (./scripts/services.sh) and Redis ($ARMGYM_BENCH_REDIS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
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

HEADER = "    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n"
LOOP = HEADER + "    b .\n"
VARIANT = "relu_n64_float32"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_api(env: dict[str, str], log: Path) -> tuple[Any, str]:
    port = process.free_port()
    return process.start(env, port, log=log), f"http://127.0.0.1:{port}"


def attempt(i: int, tag: str) -> dict[str, Any]:
    return {"variant_id": VARIANT, "assembly": LOOP + f"// {tag} {i}\n"}


async def waiting_clients(url: str, key: str, pid: int, clients: int, seconds: float
                          ) -> dict[str, Any]:
    headers = {"X-API-Key": key}
    limits = httpx.Limits(max_connections=clients + 50, max_keepalive_connections=clients + 50)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120,
                                 limits=limits) as client:
        # A long queue of endless loops ahead of the attempts the clients wait for.
        first = await client.post("/batches", json={"attempts": [attempt(i, "ahead")
                                                                 for i in range(60)]})
        target = await client.post("/batches", json={"attempts": [attempt(i, "waited")
                                                                  for i in range(50)]})
        assert first.status_code == target.status_code == 202, target.text
        ids = [a["attempt_id"] for a in target.json()["attempts"]]
        batch = target.json()["batch_id"]
        stop = time.monotonic() + seconds
        open_now, errors, polls = [0], Counter(), [0]

        async def long_poll(i: int) -> None:
            while time.monotonic() < stop:
                open_now[0] += 1
                try:
                    reply = await client.get(f"/attempts/{ids[i % len(ids)]}",
                                             params={"wait": min(30, stop - time.monotonic())})
                    polls[0] += 1
                    if reply.status_code != 200:
                        errors[reply.status_code] += 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                finally:
                    open_now[0] -= 1

        async def stream() -> None:
            open_now[0] += 1
            try:
                async with client.stream("GET", f"/batches/{batch}/stream") as reply:
                    if reply.status_code != 200:
                        errors[reply.status_code] += 1
                        return
                    async for _ in reply.aiter_lines():
                        if time.monotonic() > stop:
                            return
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
            finally:
                open_now[0] -= 1

        async def health_ms(count: int) -> list[float]:
            times = []
            async with httpx.AsyncClient(base_url=url, timeout=60) as probe:
                for _ in range(count):
                    t = time.perf_counter()
                    await probe.get("/health")
                    times.append(1000 * (time.perf_counter() - t))
                    await asyncio.sleep(0.05)
            return sorted(times)

        idle = await health_ms(20)  # the same probe with nobody waiting, to compare with
        tasks = [asyncio.create_task(long_poll(i)) for i in range(clients // 2)]
        tasks += [asyncio.create_task(stream()) for _ in range(clients - clients // 2)]
        await asyncio.sleep(min(10, seconds / 4))  # let every client connect
        health, rss, waiting = [], [], []
        async with httpx.AsyncClient(base_url=url, timeout=60) as probe:
            while time.monotonic() < stop - 2:
                t = time.perf_counter()
                try:
                    reply = await probe.get("/health")
                    if reply.status_code not in (200, 503):
                        errors[f"health {reply.status_code}"] += 1
                except httpx.HTTPError as exc:  # counted, and the run goes on
                    errors[f"health {type(exc).__name__}"] += 1
                health.append(time.perf_counter() - t)
                rss.append(rss_mib(pid))
                waiting.append(open_now[0])
                await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    health.sort()
    return {"clients": clients, "seconds": seconds, "waiting_min": min(waiting),
            "health_idle_p50_ms": round(statistics.median(idle), 1),
            "waiting_max": max(waiting), "health_requests": len(health),
            "health_p50_ms": round(1000 * statistics.median(health), 1),
            "health_p99_ms": round(1000 * health[int(0.99 * (len(health) - 1))], 1),
            "api_rss_mib_max": round(max(rss), 1), "api_rss_mib_first": round(rss[0], 1),
            "long_poll_answers": polls[0], "errors": dict(errors)}


async def overload(url: str, key: str, n: int = 300) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=30,
                                 limits=httpx.Limits(max_connections=n)) as client:
        async def one(i: int) -> tuple[str, float, bool]:
            t = time.perf_counter()
            try:
                reply = await client.post("/batches", json={"attempts": [attempt(i, "over")]})
                return (str(reply.status_code), time.perf_counter() - t,
                        reply.status_code != 429 or "Retry-After" in reply.headers)
            except httpx.HTTPError as exc:
                return type(exc).__name__, time.perf_counter() - t, False

        out = await asyncio.gather(*(one(i) for i in range(n)))
    return {"submissions": n, "answers": dict(Counter(s for s, _, _ in out)),
            "max_s": round(max(t for _, t, _ in out), 2),
            "all_429_with_retry_after": all(ok for _, _, ok in out)}


async def replicas(urls: list[str], key: str, limit: int, per_api: int = 100
                   ) -> dict[str, Any]:
    clients = [httpx.AsyncClient(base_url=u, headers={"X-API-Key": key}, timeout=60,
                                 limits=httpx.Limits(max_connections=per_api)) for u in urls]
    try:
        async def one(client: httpx.AsyncClient, i: int) -> int:
            reply = await client.post("/batches", json={"attempts": [
                attempt(i * 10 + j, f"rep-{id(client)}") for j in range(5)]})
            return reply.status_code

        codes = await asyncio.gather(*(one(c, i) for c in clients for i in range(per_api)))
    finally:
        for c in clients:
            await c.aclose()
    accepted = 5 * sum(1 for c in codes if c == 202)
    return {"apis": len(urls), "limit": limit, "submissions": len(codes),
            "answers": dict(Counter(codes)), "attempts_accepted": accepted,
            "overshoot": max(0, accepted - limit)}


async def submission_rate(url: str, key: str, n: int = 400, at_once: int = 20
                          ) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=120,
                                 limits=httpx.Limits(max_connections=at_once)) as client:
        gate = asyncio.Semaphore(at_once)

        async def one(i: int) -> tuple[int, float]:
            async with gate:
                t = time.perf_counter()
                reply = await client.post("/batches", json={"attempts": [attempt(i, "rate")]})
                return reply.status_code, time.perf_counter() - t

        await one(-1)  # connections and the key lookup warm
        start = time.perf_counter()
        out = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - start
    times = sorted(t for _, t in out)
    return {"submissions": n, "at_once": at_once, "answers": dict(Counter(c for c, _ in out)),
            "per_s": round(n / wall, 1), "p50_ms": round(1000 * statistics.median(times), 1),
            "p99_ms": round(1000 * times[int(0.99 * (n - 1))], 1)}


def run(clients: int = 1000, seconds: float = 60, apis: int = 3) -> dict[str, Any]:
    """The four stages' figures (the module's docstring)."""
    raise_fd_limit()
    key = new_plaintext()
    data = Path(tempfile.mkdtemp(prefix="armgym-bench-load-"))
    results: dict[str, Any] = {}
    try:
        env = process.embedded_env(data, ARMGYM_API_KEYS=f"load:{key}",
                                   ARMGYM_EMBEDDED_WORKERS="1", ARMGYM_VERDICT_CACHE="0",
                                   ARMGYM_RATE_LIMIT_PER_S="0", ARMGYM_MAX_WAIT_S="30")
        proc, url = start_api(env, data / "api.log")
        try:
            say(f"{clients} waiting clients for {seconds} s")
            results["waiting"] = asyncio.run(waiting_clients(url, key, proc.pid, clients,
                                                             seconds))
            say(json.dumps(results["waiting"]))
        finally:
            process.stop(proc)
        (data / "o").mkdir()
        env = {**env, "ARMGYM_DATA_DIR": str(data / "o"), "ARMGYM_QUEUE_LIMIT": "50"}
        proc, url = start_api(env, data / "api-over.log")
        try:
            say("overload: 300 submissions against a queue limit of 50")
            results["overload"] = asyncio.run(overload(url, key))
            say(json.dumps(results["overload"]))
        finally:
            process.stop(proc)
        db_url = POSTGRES.format(pid=f"load_{os.getpid()}")
        admin.drop(db_url)
        admin.create(db_url)
        db.upgrade(db_url)
        farm_env = {**env, "ARMGYM_DATABASE_URL": db_url, "ARMGYM_QUEUE_LIMIT": "200",
                    "ARMGYM_BROKER_URL": os.environ.get("ARMGYM_BENCH_REDIS",
                                                        "redis://127.0.0.1:6379/0"),
                    "ARMGYM_QUEUE_NAME": f"armgym-load-{os.getpid()}"}
        procs = [start_api(farm_env, data / f"api-farm-{i}.log") for i in range(apis)]
        try:
            say(f"backpressure across {apis} API processes, limit 200")
            results["replicas"] = asyncio.run(replicas([u for _, u in procs], key, 200))
            say(json.dumps(results["replicas"]))
        finally:
            for p, _ in procs:
                process.stop(p)
            admin.drop(db_url)
        admin.create(db_url)
        db.upgrade(db_url)
        proc, url = start_api({**farm_env, "ARMGYM_QUEUE_LIMIT": "20000"},
                              data / "api-rate.log")
        try:
            say("submission rate of one farm-mode API process, 20 at a time")
            results["submission_rate"] = asyncio.run(submission_rate(url, key))
            say(json.dumps(results["submission_rate"]))
        finally:
            process.stop(proc)
            admin.drop(db_url)
            redis.Redis.from_url(farm_env["ARMGYM_BROKER_URL"]).delete(
                farm_env["ARMGYM_QUEUE_NAME"])  # nothing consumed these messages
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--apis", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/load.json"))
    args = parser.parse_args()
    results = {"command": vars(args) | {"out": str(args.out)},
               **run(args.clients, args.seconds, args.apis)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
