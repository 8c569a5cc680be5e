"""Prometheus metrics of the API, in a registry per app (tests build several apps per process)."""

from __future__ import annotations

import time

from fastapi import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("armgym_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("armgym_http_request_seconds", "HTTP request latency",
                                 ["route"], registry=r)
        self.submitted = Counter("armgym_attempts_submitted", "Attempts created and queued",
                                 registry=r)
        self.deduplicated = Counter("armgym_attempts_deduplicated",
                                    "Submitted attempts answered by an existing one "
                                    "(same idempotency key)", registry=r)
        self.cached = Counter("armgym_attempts_cached",
                              "Submitted attempts answered from the verdict cache (a done "
                              "attempt with the same content key)", registry=r)
        self.rejected = Counter("armgym_backpressure_rejections",
                                "Submissions refused with 429 because the queue was full",
                                registry=r)
        self.outstanding = Gauge("armgym_outstanding_attempts",
                                 "Attempts queued or running (the backpressure measure)",
                                 registry=r)
        self.broker_depth = Gauge("armgym_broker_queue_depth",
                                  "Messages waiting in the broker (or the embedded pool)",
                                  registry=r)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts and times every HTTP request, as plain ASGI: Starlette's BaseHTTPMiddleware runs
    each request through an extra task and stream, about a millisecond per request (visible on
    a cached /step, which takes a few)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics: Metrics = scope["app"].state.farm.metrics
            metrics.observe(scope["method"], route, status, time.perf_counter() - start)
