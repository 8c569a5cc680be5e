"""Prometheus metrics of the API, in a registry per app (tests build several apps per process).

Gauges that ask the database or the broker (outstanding attempts, queue depth) are read at scrape
time through `guarded`: when that dependency is down the gauge reports NaN and
`armgym_dependency_up{dependency}` reports 0, so /metrics itself keeps answering 200 (a scrape
that fails would hide every other series exactly when they matter). Verdict counters and gate
durations come from the workers (workers/metrics.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from fastapi import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from workers.metrics import BuildInfo

log = logging.getLogger(__name__)
# Requests range from a cached /step (milliseconds) to long polls held up to ARMGYM_MAX_WAIT_S
# (120 s by default; clients may ask for longer on a farm configured so).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0, 600.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("armgym_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("armgym_http_request_duration_seconds",
                                 "HTTP request latency, long polls included", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
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
        self.dependency_up = Gauge("armgym_dependency_up", "Whether the last scrape reached "
                                   "the database / the broker (1) or not (0)", ["dependency"],
                                   registry=r)
        r.register(BuildInfo("api"))  # type: ignore[arg-type]

    def guarded(self, dependency: str, read: Callable[[], float]) -> Callable[[], float]:
        """`read`, or NaN (and dependency_up 0) when it raises: a scrape never fails on it."""
        up = self.dependency_up.labels(dependency)

        def safe() -> float:
            try:
                value = float(read())
            except Exception as exc:
                log.warning("metrics: %s unreachable: %s", dependency, str(exc)[:200])
                up.set(0)
                return math.nan
            up.set(1)
            return value

        return safe

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
