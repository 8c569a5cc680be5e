"""The one function that verifies a stored attempt; the Celery task and the embedded pool call it.

Verification is `toolchain.verify.verify`, unchanged. What this adds is the attempt's life cycle:
claim the row, verify, and store the verdict exactly once; an infrastructure failure is raised
for the caller to retry with backoff, and after the last retry it is stored as `infra_error`, a
verdict trainers drop instead of scoring.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from store import attempts, baselines
from store.models import Attempt
from store.settings import FarmSettings
from toolchain import VERIFIER_VERSION, scratch
from toolchain.errors import ErrorKind
from toolchain.verdict import GateResult, Verdict
from toolchain.verify import verify

log = logging.getLogger(__name__)
Sessions = Callable[[], Session]
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


def infra_verdict(variant_id: str, seed: int, message: str) -> Verdict:
    gate = GateResult.fail("infra", ErrorKind.infra_error, message)
    return Verdict(variant_id=variant_id, seed=seed, passed=False,
                   error_kind=ErrorKind.infra_error, message=message, gates=[gate], versions={},
                   verifier_version=VERIFIER_VERSION, sandbox="unknown")


def process(sessions: Sessions, attempt_id: str, *, worker: str, settings: FarmSettings,
            final: bool, observe: Observer | None = None) -> bool:
    """Verify one attempt and store its verdict; True when this call stored it.

    Raises Retryable (or whatever the database raised) when the caller should try again.
    """
    with sessions() as session:
        job = attempts.claim(session, attempt_id, worker)
    if job is None:
        return False  # already done: a re-delivery, nothing to store
    if job.tries > settings.max_retries + 1 + EXTRA_DELIVERIES:
        return give_up(sessions, attempt_id, worker,
                       f"delivered {job.tries} times without completing; the worker running it "
                       "was lost each time")
    start = time.perf_counter()
    verdict = verify(job.variant_id, job.assembly, job.seed, completion=job.completion,
                     settings=settings)
    seconds = time.perf_counter() - start
    if verdict.error_kind is ErrorKind.infra_error and not final:
        raise Retryable(verdict.message)
    doc = verdict.to_json()
    with sessions() as session:
        stored = attempts.finish(session, attempt_id, doc, worker)
    if stored:
        if observe is not None:
            observe(verdict, seconds)
        record_baselines(sessions, doc)
    return stored


def record_baselines(sessions: Sessions, verdict: dict[str, Any]) -> None:
    """The baseline cycles this verification measured, into the baselines table (once per row
    and process); a failure here costs the table a figure, never the attempt its verdict."""
    try:
        with sessions() as session:
            baselines.record_from_verdict(session, verdict)
    except Exception:
        log.warning("could not store the baseline measurements of %s",
                    verdict.get("variant_id"), exc_info=True)


def give_up(sessions: Sessions, attempt_id: str, worker: str, reason: str) -> bool:
    """Record infra_error after the last retry, so nobody waits forever on this attempt."""
    with sessions() as session:
        row = session.get(Attempt, attempt_id)
        if row is None:
            return False
        verdict = infra_verdict(row.variant_id, row.seed, reason[:2000])
        session.rollback()
        return attempts.finish(session, attempt_id, verdict.to_json(), worker)
