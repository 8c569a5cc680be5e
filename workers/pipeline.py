"""The one function that verifies a stored attempt; the Celery task and the embedded pool call it.

Verification is `toolchain.verify.verify`, unchanged. What this adds is the attempt's life cycle:
claim the row, verify, and store the verdict exactly once; a tool's infrastructure failure is
raised for the caller to retry with backoff, and after the last retry it is stored as
`infra_error`, a verdict trainers drop instead of scoring.

The database itself failing is another matter: it is not the attempt's fault, so every read and
write of the row waits the outage out (tenacity, exponential backoff up to
`store_retry_max_wait_s`, for `store_retry_s` in all) while the verdict stays in memory; only
then does the error reach the caller, which must hand the message back, never acknowledge it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_before_delay,
    wait_exponential,
)

from store import attempts, baselines
from store.db import is_outage
from store.models import Attempt
from store.settings import FarmSettings
from toolchain import scratch
from toolchain.errors import ErrorKind
from toolchain.verdict import Verdict
from toolchain.verify import infra_verdict, verify

from . import heap

Sessions = Callable[[], Session]
T = TypeVar("T")
log = logging.getLogger(__name__)
# Told of each verdict this process stored, with the verification's wall time (metrics).
Observer = Callable[[Verdict, float], None]
# Deliveries beyond the planned retries that are tolerated before an attempt is given up: a
# worker that dies on the same submission again and again must not keep the queue busy forever.
EXTRA_DELIVERIES = 2


class Retryable(RuntimeError):
    """The verifier reported infra_error; worth another try on (perhaps) another worker."""


def worker_name(prefix: str = "embedded") -> str:
    return f"{prefix}@{socket.gethostname()}:{os.getpid()}"


def sweep_scratch() -> int:
    """Scratch directories of verifications whose process was killed (scratch.py)."""
    return scratch.sweep()


def backoff(retries: int, base_s: float) -> float:
    return min(base_s * 2 ** retries, 60.0)


def is_final(retries: int, settings: FarmSettings) -> bool:
    """Whether the try after `retries` earlier ones is the last (a failure then is stored)."""
    return retries >= settings.max_retries


def retry_after(retries: int, exc: BaseException, settings: FarmSettings) -> float | None:
    """The one retry decision of both dispatchers, after a try failed with `exc`: the seconds
    to wait before the next try, or None when it was the last (then `give_up` with
    `give_up_reason`)."""
    if is_final(retries, settings):
        return None
    return backoff(retries, settings.retry_backoff_s)


def give_up_reason(retries: int, exc: BaseException) -> str:
    return f"verification failed after {retries + 1} tries: {type(exc).__name__}: {exc}"


def durably(settings: FarmSettings, fn: Callable[[], T], deadline: float | None = None) -> T:
    """`fn()` (a database round trip), retried through an outage of the database for
    `store_retry_s`, or until the monotonic `deadline` (a Celery task's soft time limit)."""
    budget = settings.store_retry_s
    if deadline is not None:
        budget = max(0.0, min(budget, deadline - time.monotonic()))
    retrying = Retrying(
        retry=retry_if_exception(is_outage),
        wait=wait_exponential(multiplier=0.5, max=settings.store_retry_max_wait_s),
        stop=stop_before_delay(budget),
        before_sleep=before_sleep_log(log, logging.WARNING), reraise=True)
    return retrying(fn)


def running_lease_s(settings: FarmSettings) -> float:
    """How long a worker may hold an attempt before the sweeper re-queues it: the task's hard
    time limit (Celery kills it then) plus the sweeper's grace."""
    return settings.task_time_limit_s + settings.sweep_grace_s


def message_limits(settings: FarmSettings, attempts: int) -> tuple[int, int]:
    """(soft, hard) time limits of a Celery message carrying `attempts` attempts: each keeps
    the budget one attempt alone has."""
    return settings.task_soft_time_limit_s * attempts, settings.task_time_limit_s * attempts


def process(sessions: Sessions, attempt_id: str, *, worker: str, settings: FarmSettings,
            final: bool, takeover: bool = True, deadline: float | None = None,
            observe: Observer | None = None, lease_s: float | None = None) -> bool:
    """Verify one attempt and store its verdict; True when this call stored it.

    Raises Retryable when the caller should try again (the attempt is given back to the queue
    first), or the database's error once `durably` gave up on it (at `deadline` at the
    latest). `takeover`: see attempts.claim (False for a message the broker delivers for the
    first time). `lease_s`: how long the claim holds the attempt, when its process may run
    longer than `running_lease_s` (a later attempt of a multi-attempt message). Then the
    process's free heap goes back to the OS (heap.py), whatever happened.
    """
    try:
        return _process(sessions, attempt_id, worker=worker, settings=settings, final=final,
                        takeover=takeover, deadline=deadline, observe=observe,
                        lease_s=running_lease_s(settings) if lease_s is None else lease_s)
    finally:
        if settings.malloc_trim:
            heap.trim()


def _process(sessions: Sessions, attempt_id: str, *, worker: str, settings: FarmSettings,
             final: bool, takeover: bool, deadline: float | None,
             observe: Observer | None, lease_s: float) -> bool:
    def claim() -> attempts.Job | None:
        with sessions() as session:
            return attempts.claim(session, attempt_id, worker, lease_s=lease_s,
                                  takeover=takeover)

    job = durably(settings, claim, deadline)
    if job is None:
        return False  # done, or run by another worker: a duplicate message, nothing to store
    if job.tries > settings.max_retries + 1 + EXTRA_DELIVERIES:
        return give_up(sessions, attempt_id, worker,
                       f"delivered {job.tries} times without completing; the worker running it "
                       "was lost each time", settings, deadline)
    start = time.perf_counter()
    verdict = verify(job.variant_id, job.assembly, job.seed, completion=job.completion,
                     settings=settings.core)
    seconds = time.perf_counter() - start
    if verdict.error_kind is ErrorKind.infra_error and not final:
        release(sessions, attempt_id, settings, deadline)
        raise Retryable(verdict.message)

    def finish() -> bool:
        with sessions() as session:
            return attempts.finish(session, attempt_id, verdict, worker)

    stored = durably(settings, finish, deadline)
    if stored:
        if observe is not None:
            observe(verdict, seconds)
        record_baselines(sessions, verdict, settings)
    return stored


def record_baselines(sessions: Sessions, verdict: Verdict, settings: FarmSettings) -> None:
    """The baseline cycles this verification measured, into the baselines table (once per row
    and process: no session at all once this process stored them); a failure here costs the
    table a figure, never the attempt its verdict."""
    found = baselines.measurements(verdict)
    if not found:
        return
    try:
        with sessions() as session:
            baselines.record_found(session, verdict.variant_id, found, settings.core)
    except Exception:
        log.warning("could not store the baseline measurements of %s", verdict.variant_id,
                    exc_info=True)


def release(sessions: Sessions, attempt_id: str, settings: FarmSettings,
            deadline: float | None = None) -> None:
    """Queued again for a retry that comes within the backoff (at most a minute)."""
    def run() -> None:
        with sessions() as session:
            attempts.release(session, attempt_id, 60.0 + settings.sweep_grace_s)

    durably(settings, run, deadline)


def give_up(sessions: Sessions, attempt_id: str, worker: str, reason: str,
            settings: FarmSettings, deadline: float | None = None) -> bool:
    """Record infra_error after the last retry, so nobody waits forever on this attempt."""
    def run() -> bool:
        with sessions() as session:
            row = session.get(Attempt, attempt_id)
            if row is None:
                return False
            verdict = infra_verdict(row.variant_id, row.seed, reason[:2000])
            session.rollback()
            return attempts.finish(session, attempt_id, verdict.to_json(), worker)

    return durably(settings, run, deadline)
