"""Prometheus metrics of the Celery workers: verdicts by outcome and error kind, gate durations,
the C reference's runs by path.

Celery's prefork pool verifies in child processes, which a scrape of the main process cannot see,
so the worker runs prometheus_client's multiprocess mode: every process writes its samples to
memory-mapped files in one directory (`PROMETHEUS_MULTIPROC_DIR`, a fresh one per worker start),
and the main process serves their sum on `ARMGYM_WORKER_METRICS_PORT` (0: no endpoint). Chosen
over a separate exporter that follows Celery's task events: those events carry no verdict, so an
exporter would have to read every attempt back from the database, and it is one more service to
deploy and keep alive per farm. Counters of a pool process that was replaced stay in the sum (its
files remain), which is what a counter must do.

The API has its own registry (api/metrics.py); both export `armgym_build_info`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from toolchain import VERIFIER_VERSION
from toolchain.errors import InfraError
from toolchain.verdict import Verdict

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Tools named in armgym_build_info (the label is the tool's name, the value its version line).
BUILD_TOOLS = ("as", "qemu", "mca", "gcc", "clang", "osaca")
# Gates take milliseconds (syntax) to minutes (a slow kernel under the emulator, the task limit).
GATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                120.0, 300.0)


def tool_versions(names: Iterable[str] = BUILD_TOOLS) -> dict[str, str]:
    """Version line per tool; "missing" where this host lacks it (the API image has no qemu)."""
    from toolchain import tools

    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = tools.tool(name).version
        except (InfraError, OSError, KeyError, ValueError):
            found[name] = "missing"
    return found


class BuildInfo:
    """`armgym_build_info{verifier_version, <tool>...} 1`, the usual info-as-gauge idiom (the
    client's Info metric is not available in multiprocess mode)."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._found: dict[str, str] | None = None

    def _labels(self) -> dict[str, str]:
        if self._found is None:  # once per process: versions do not change while it runs
            self._found = {"component": self.component, "verifier_version": VERIFIER_VERSION,
                           **tool_versions()}
        return self._found

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        labels = self._labels()
        family = GaugeMetricFamily("armgym_build_info", "Verifier and tool versions of this "
                                   "process (value 1)", labels=list(labels))
        family.add_metric(list(labels.values()), 1.0)
        yield family


def prepare_multiprocess() -> str:
    """In the worker's main process, before the pool forks: an empty samples directory, and the
    client switched to multiprocess values (it chose its value class when first imported)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for entry in os.listdir(path):  # samples of an earlier run would be summed in
            if entry.endswith(".db"):
                os.unlink(os.path.join(path, entry))
    else:
        path = tempfile.mkdtemp(prefix="armgym-metrics-")
        os.environ[MULTIPROC_ENV] = path
        _created.append(path)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    return path


def serve(port: int, address: str = "0.0.0.0") -> None:
    """The worker's /metrics: the sum over its processes, plus build_info and pool size."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(BuildInfo("worker"))  # type: ignore[arg-type]
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as exc:  # verifying matters more; Prometheus shows the target down
        log.error("worker metrics: cannot listen on %s:%d (%s); serving without them",
                  address, port, exc)
        return
    log.info("worker metrics on %s:%d/metrics (samples in %s)", address, port,
             os.environ.get(MULTIPROC_ENV))


_created: list[str] = []


def cleanup_samples() -> None:
    """At the worker's shutdown: remove the samples directory it made (not one it was given)."""
    for path in _created:
        shutil.rmtree(path, ignore_errors=True)


def process_exited(pid: int) -> None:
    """A pool process ended: drop its live gauges (counters and histograms stay summed)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


@cache
def _instruments() -> dict[str, Any]:
    """Created on first use, in the pool process that records (after prepare_multiprocess)."""
    from prometheus_client import Counter, Histogram

    return {
        "verdicts": Counter("armgym_verdicts", "Verdicts stored, by outcome and error kind "
                            "(error_kind=none when passed)", ["passed", "error_kind"]),
        "gate": Histogram("armgym_gate_duration_seconds", "Wall time of one gate of one "
                          "verification", ["gate"], buckets=GATE_BUCKETS),
        "verification": Histogram("armgym_verification_duration_seconds", "Wall time of one "
                                  "verification, all gates (a verdict-cache hit included)",
                                  ["cached"], buckets=GATE_BUCKETS),
        "retries": Counter("armgym_verification_retries", "Verifications that ended in an "
                           "infrastructure failure and were queued again", ["reason"]),
        "reference_runs": Counter("armgym_reference_runs", "C reference runs by how they went: "
                                  "cached, served by a reference server, or made one-off and "
                                  "why (off, busy, full, no_room, failed, status, ...)",
                                  ["path"]),
        "reference_servers": Counter("armgym_reference_server_events", "Reference servers "
                                     "started and closed (evicted, retired, idle)", ["event"]),
    }


_reference_seen: dict[str, int] = {}


def _record_reference_paths() -> None:
    """What this process's reference runs did since the last verdict (the toolchain counts
    them per process, knowing nothing of Prometheus): added to the counters by difference."""
    from toolchain.execution import reference_server

    m = _instruments()
    for path, total in reference_server.paths().items():
        grew = total - _reference_seen.get(path, 0)
        if grew > 0:
            kind = "reference_servers" if path in reference_server.SERVER_EVENTS \
                else "reference_runs"
            m[kind].labels(path).inc(grew)
            _reference_seen[path] = total


def record_verdict(verdict: Verdict, seconds: float) -> None:
    m = _instruments()
    kind = verdict.error_kind.value if verdict.error_kind else "none"
    m["verdicts"].labels("true" if verdict.passed else "false", kind).inc()
    m["verification"].labels("true" if verdict.cached else "false").observe(seconds)
    if not verdict.cached:
        for gate in verdict.gates:
            m["gate"].labels(gate.name).observe(gate.seconds)
        _record_reference_paths()


def record_given_up() -> None:
    """An attempt stored as infra_error after its last retry (no verifier verdict to read)."""
    _instruments()["verdicts"].labels("false", "infra_error").inc()


def record_retry(reason: str) -> None:
    _instruments()["retries"].labels(reason).inc()
