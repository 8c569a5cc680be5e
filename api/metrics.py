"""Prometheus metrics of the API, in a registry per app (tests build several apps per process)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


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

    async def middleware(self, request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        self.latency.labels(route).observe(time.perf_counter() - start)
        return response

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
