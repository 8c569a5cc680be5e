"""Backpressure is exact however many API processes share the database: three real API
processes on one PostgreSQL database of the test's own, with no worker draining it, get bursts
of submissions at once; exactly the queue limit is stored, every other answer is 429 with
Retry-After. (Each process reusing a count up to 0.5 s old let 360 in against a limit of 200.)"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select

from api import process
from store import admin, db
from store.models import Attempt

from .conftest import FARM, USER_KEY, base_env, database_url
from .mix import VARIANTS, asm

pytestmark = FARM
LIMIT, APIS, PER_API, BATCH = 60, 3, 30, 3  # 270 attempts offered, 60 fit


@pytest.fixture
def replicas(redis_url: str, logs: Path) -> Iterator[tuple[list[str], str]]:
    url = database_url(f"armgym_test_{os.getpid()}_bp")
    admin.drop(url)
    admin.create(url)
    db.upgrade(url)
    env = base_env(ARMGYM_DATABASE_URL=url, ARMGYM_BROKER_URL=redis_url,
                   ARMGYM_QUEUE_LIMIT=str(LIMIT), ARMGYM_RATE_LIMIT_PER_S="0",
                   ARMGYM_QUEUE_NAME=f"armgym-test-bp-{os.getpid()}")
    procs = []
    try:
        for _ in range(APIS):
            port = process.free_port()
            procs.append((process.start(env, port, log=logs / f"api-bp-{port}.log"),
                          f"http://127.0.0.1:{port}"))
        yield [u for _, u in procs], url
    finally:
        for proc, _ in procs:
            process.stop(proc)
        redis.Redis.from_url(redis_url).delete(env["ARMGYM_QUEUE_NAME"])  # never consumed
        admin.drop(url)


async def burst(urls: list[str], tag: str) -> list[httpx.Response]:
    """PER_API batches of BATCH attempts sent to each API process at once."""
    clients = [httpx.AsyncClient(base_url=u, headers={"X-API-Key": USER_KEY}, timeout=120,
                                 limits=httpx.Limits(max_connections=PER_API)) for u in urls]
    try:
        async def one(client: httpx.AsyncClient, n: int) -> httpx.Response:
            return await client.post("/batches", json={"attempts": [
                {"variant_id": VARIANTS[0], "assembly": asm(f"    b .\n// {tag} {n} {j}")}
                for j in range(BATCH)]})

        return await asyncio.gather(*(one(c, i * PER_API + n) for i, c in enumerate(clients)
                                      for n in range(PER_API)))
    finally:
        for client in clients:
            await client.aclose()


def test_the_queue_limit_holds_across_api_processes(
        replicas: tuple[list[str], str]) -> None:
    urls, url = replicas
    engine = db.make_engine(url, pool_size=1)
    try:
        for round_ in range(2):  # the second finds the queue full from the start
            replies = asyncio.run(burst(urls, f"round {round_}"))
            codes = Counter(r.status_code for r in replies)
            assert set(codes) <= {202, 429}, codes
            assert all(int(r.headers["Retry-After"]) >= 1 for r in replies
                       if r.status_code == 429)
            assert all("queue full" in r.json()["detail"] for r in replies
                       if r.status_code == 429)
            with engine.connect() as conn:
                stored = conn.scalar(select(func.count()).select_from(Attempt))
            accepted = BATCH * sum(1 for r in replies if r.status_code == 202)
            assert stored == LIMIT, (round_, codes, stored)
            assert accepted == (LIMIT if round_ == 0 else 0), (round_, codes)
    finally:
        engine.dispose()
