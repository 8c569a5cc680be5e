"""The Celery app: one task, `armgym.verify_attempt(attempt_ids)`, over Redis.

  celery -A workers.celery_app worker --concurrency 2 -E

A message carries the ids of up to `dispatch_chunk` attempts of one submission (the submission
is in the database), verified in order, each stored and announced as it is done; a message of
an earlier release carries one id as a string, and is taken too. Messages are acknowledged
after the last of their verdicts is stored (`acks_late`) and re-queued when the process running
them dies (`reject_on_worker_lost`); a worker reserves one message at a time (prefetch 1), so a
dead worker strands at most one message per pool process (up to `dispatch_chunk` attempts),
which Redis hands out again after the visibility timeout. A message's time limits are one
attempt's times its length. The gates of one verification run inside `toolchain.verify`;
parallelism comes from the pool's processes, one verification each.

A message is acknowledged only once its outcomes are stored: the pipeline waits out a database
outage (tenacity, up to `store_retry_s`), and if the database is still away after that the
message is rejected back onto the queue (`Reject(requeue=True)`), never acknowledged; the
attempts of it already done are skipped when it comes back. An attempt the verifier reports as
infra_error is sent again alone, with the retry count and backoff, not its whole message.
Whatever the broker loses (a Redis restart without persistence) the API's sweeper re-queues
from the database (workers/sweeper.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import (
    celeryd_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)
from sqlalchemy.orm import Session, sessionmaker

from store.db import make_engine, sessions
from store.settings import FarmSettings, get_farm_settings
from toolchain.errors import InfraError
from toolchain.prepare import prepare

from . import metrics, pipeline

TASK_NAME = "armgym.verify_attempt"
DONE_CHANNEL = "armgym:attempts-done"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
log = logging.getLogger(__name__)


def make_celery(settings: FarmSettings) -> Celery:
    """The app, configured from the farm settings (the API builds one to send tasks)."""
    app = Celery("armgym", broker=settings.broker_url or DEFAULT_BROKER)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task killed at its time limit was not stored: leave its message to be re-delivered.
        task_acks_on_failure_or_timeout=False,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        task_default_queue=settings.queue_name,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # kombu scans for messages of dead workers every interval x throttle seconds
            # (default 10 x 10); scan every interval so recovery takes about the timeout.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 3)),
            "unacked_restore_throttle": 1,
        },
        # A verification running when Redis goes away finishes and stores its verdict (the
        # database is the record; a duplicate delivery later finds it done). Cancelling it
        # would only throw the work away.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
    )
    return app


def send(app: Celery, settings: FarmSettings, attempt_ids: Sequence[str], *,
         producer: Any = None, retries: int = 0, countdown: float | None = None) -> None:
    """One message for `attempt_ids`, with time limits for that many attempts."""
    soft, hard = pipeline.message_limits(settings, len(attempt_ids))
    app.send_task(TASK_NAME, args=[list(attempt_ids)], queue=settings.queue_name,
                  producer=producer, retries=retries, countdown=countdown,
                  soft_time_limit=soft, time_limit=hard)


settings = get_farm_settings()
app = make_celery(settings)


@celeryd_init.connect
def _prepare_tools(**_: object) -> None:
    """Before the pool forks and before any message is taken: the spawn helper and the execution
    guard (toolchain/prepare.py). A worker that cannot have the guard exits instead of turning
    every attempt it takes into an infra_error."""
    try:
        done = prepare(settings.core.cache_dir)
    except InfraError as exc:
        log.critical("the verifier cannot run on this machine, not starting: %s", exc)
        raise SystemExit(78) from exc  # EX_CONFIG, as for settings that do not validate
    log.info("execution guard %s, spawn helper %s", done.guard, done.spawn_helper)


@celeryd_init.connect
def _metrics_endpoint(**_: object) -> None:
    """The worker's main process, before the pool forks: multiprocess samples and /metrics."""
    if settings.worker_metrics_port:
        metrics.prepare_multiprocess()
        metrics.serve(settings.worker_metrics_port, settings.worker_metrics_address)


@worker_shutdown.connect
def _metrics_cleanup(**_: object) -> None:
    metrics.cleanup_samples()


@worker_process_shutdown.connect
def _metrics_process_exited(**_: object) -> None:
    metrics.process_exited(os.getpid())


@worker_process_init.connect
def _sweep_scratch(**_: object) -> None:
    """A pool process that replaces a killed one removes what the dead left in /tmp."""
    removed = pipeline.sweep_scratch()
    if removed:
        log.info("removed %d scratch directories of processes that are gone", removed)


@cache
def _process_state(pid: int) -> tuple[sessionmaker[Session], object | None]:
    """Per process (pool children are forked): a database engine and a Redis publisher. The
    engine does not ping each connection it hands out: every statement of a pool process runs
    under pipeline.durably, which retries a dropped connection on a fresh one."""
    engine = make_engine(settings.sqlalchemy_url, pool_size=2, pre_ping=False)
    publisher = None
    if settings.broker_url.startswith("redis"):
        import redis

        publisher = redis.Redis.from_url(settings.broker_url)
    return sessions(engine), publisher


def _notify(publisher: object | None, attempt_id: str) -> None:
    """Tell waiting API requests to look again; they also poll, so a lost message costs only
    latency."""
    if publisher is not None:
        try:
            publisher.publish(DONE_CHANNEL, attempt_id)  # type: ignore[attr-defined]
        except Exception:  # a notification is an optimisation, never a failure
            log.warning("could not publish completion of %s", attempt_id, exc_info=True)


@app.task(bind=True, name=TASK_NAME)
def verify_attempt(self: Task, attempt_ids: str | list[str]) -> str:
    """Verify stored attempts in order; retry infrastructure failures with backoff, each alone,
    then infra_error."""
    ids = [attempt_ids] if isinstance(attempt_ids, str) else list(attempt_ids)
    session_factory, publisher = _process_state(os.getpid())
    started = time.monotonic()
    hard, soft = self.request.timelimit or (None, None)
    default_soft, default_hard = pipeline.message_limits(settings, 1)
    soft, hard = soft or default_soft, hard or default_hard
    # Waiting for the database must end before the soft time limit interrupts it.
    deadline = started + max(1.0, soft - 10.0)
    # Celery kills this process `hard` seconds after the message started: an attempt claimed
    # later is leased until then (plus the sweeper's grace), not for one attempt's limit.
    killed_at = started + hard
    # A message Redis hands out again because its worker was lost may take its attempts over;
    # a first delivery leaves each to a worker that holds it under a live lease (a duplicate).
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    run = _Run(session_factory, publisher, f"{self.request.hostname}:{os.getpid()}",
               retries=self.request.retries, takeover=redelivered or self.request.retries > 0,
               deadline=deadline)
    for at, attempt_id in enumerate(ids):
        lease = killed_at - time.monotonic() + settings.sweep_grace_s
        if not run.one(attempt_id, lease):  # the soft time limit passed: no time for the rest
            if ids[at + 1:]:
                send(app, settings, ids[at + 1:], retries=self.request.retries)
            break
    return ", ".join(f"{n} {what}" for what, n in run.outcomes.items()) or "nothing"


class _Run:
    """One message's attempts: how each ended, counted for the task's result."""

    def __init__(self, session_factory: sessionmaker[Session], publisher: object, worker: str,
                 *, retries: int, takeover: bool, deadline: float) -> None:
        self.sessions, self.publisher, self.worker = session_factory, publisher, worker
        self.retries, self.takeover, self.deadline = retries, takeover, deadline
        self.outcomes: dict[str, int] = {}

    def one(self, attempt_id: str, lease_s: float) -> bool:
        """Verify and store one attempt (or send it again alone); False once the message's
        soft time limit interrupted it. A database outage rejects the whole message."""
        out_of_time = False
        try:
            try:
                outcome = self._verify(attempt_id, lease_s)
            except Exception as exc:
                if pipeline.is_outage(exc):
                    raise
                out_of_time = isinstance(exc, SoftTimeLimitExceeded)
                outcome = self._failed(attempt_id, exc)
        except Exception as exc:
            if pipeline.is_outage(exc):  # the outcome is not stored: the message goes back
                log.error("database still unreachable; handing %s back to the queue",
                          attempt_id)
                raise Reject(exc, requeue=True) from exc
            raise
        if outcome == "stored":
            _notify(self.publisher, attempt_id)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return not out_of_time

    def _verify(self, attempt_id: str, lease_s: float) -> str:
        stored = pipeline.process(self.sessions, attempt_id, worker=self.worker,
                                  settings=settings, final=pipeline.is_final(self.retries,
                                                                             settings),
                                  takeover=self.takeover, deadline=self.deadline,
                                  observe=metrics.record_verdict, lease_s=lease_s)
        return "stored" if stored else "already done"

    def _failed(self, attempt_id: str, exc: Exception) -> str:
        """A try that raised: sent again alone after the backoff, or given up (infra_error)."""
        delay = pipeline.retry_after(self.retries, exc, settings)
        if delay is not None:
            metrics.record_retry(type(exc).__name__)
            send(app, settings, [attempt_id], retries=self.retries + 1, countdown=delay)
            return "retried"
        log.error("attempt %s failed %d times: %r", attempt_id, self.retries + 1, exc)
        stored = pipeline.give_up(self.sessions, attempt_id, self.worker,
                                  pipeline.give_up_reason(self.retries, exc), settings,
                                  self.deadline)
        if stored:
            metrics.record_given_up()
        return "stored" if stored else "already done"
