"""The API's edge layer (api/edge.py) around a small Starlette app, over httpx's ASGI transport:
over-size bodies refused with 413 whether announced or streamed, every request counted in a
real metrics registry with its route and status, and `Cache-Control: no-store` on every
response that sets none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.edge import Edge
from api.metrics import Metrics

LIMIT = 1000


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


async def cached(_request: Request) -> Response:
    return Response("x", headers={"Cache-Control": "max-age=60"})


def _app() -> tuple[Starlette, Metrics]:
    """As api.app installs it: a middleware of the app, whose state holds the metrics."""
    app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/cached", cached)],
                    middleware=[Middleware(Edge, limit=LIMIT)])
    metrics = Metrics()
    app.state.farm = SimpleNamespace(metrics=metrics)
    return app, metrics


async def _chunks(size: int, pieces: int) -> AsyncIterator[bytes]:
    for _ in range(pieces):
        yield b"x" * size


def _count(metrics: Metrics, route: str, status: int) -> float:
    line = (f'armgym_http_requests_total{{method="POST",route="{route}",status="{status}"}}')
    found = [t for t in generate_latest(metrics.registry).decode().splitlines()
             if t.startswith(line)]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def test_edge_limits_bodies_counts_requests_and_forbids_caching() -> None:
    app, metrics = _app()

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.post("/echo", content=b"x" * 10),
                    await client.post("/echo", content=b"x" * (LIMIT + 1)),
                    await client.post("/echo", content=_chunks(400, 3)),  # no Content-Length
                    await client.post("/echo", content=_chunks(400, 2)),
                    await client.get("/cached"),
                    await client.post("/nowhere")]

    small, announced, streamed, streamed_ok, own, missing = asyncio.run(run())
    assert small.status_code == 200 and small.json() == {"bytes": 10}
    assert streamed_ok.status_code == 200 and streamed_ok.json() == {"bytes": 800}
    for refused in (announced, streamed):
        assert refused.status_code == 413, refused.text
        assert f"larger than {LIMIT} bytes" in refused.json()["detail"]
    for reply in (small, announced, streamed, streamed_ok, missing):
        assert reply.headers["cache-control"] == "no-store"
    assert own.headers["cache-control"] == "max-age=60"
    assert _count(metrics, "/echo", 200) == 2
    assert _count(metrics, "/echo", 413) == 1  # streamed: the route had taken it
    assert _count(metrics, "unmatched", 413) == 1  # refused before any route saw it
    assert _count(metrics, "unmatched", 404) == 1
