"""The Celery app: one task, `armgym.verify_attempt(attempt_id)`, over Redis.

  celery -A workers.celery_app worker --concurrency 2 -E

Messages carry only the attempt id (the submission is in the database), are acknowledged after
the verdict is stored (`acks_late`) and re-queued when the process running them dies
(`reject_on_worker_lost`); a worker reserves one message at a time (prefetch 1), so a dead worker
strands at most one message per pool process, which Redis hands out again after the visibility
timeout. The gates of one verification run inside `toolchain.verify`; parallelism comes from the
pool's processes, one verification each.

A message is acknowledged only once its outcome is stored: the pipeline waits out a database
outage (tenacity, up to `store_retry_s`), and if the database is still away after that the
message is rejected back onto the queue (`Reject(requeue=True)`), never acknowledged. Whatever
the broker loses (a Redis restart without persistence) the API's sweeper re-queues from the
database (workers/sweeper.py).
"""

from __future__ import annotations

import logging
import os
import time
from functools import cache

from celery import Celery, Task
from celery.exceptions import Reject
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
    """Per process (pool children are forked): a database engine and a Redis publisher."""
    engine = make_engine(settings.sqlalchemy_url, pool_size=2)
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
def verify_attempt(self: Task, attempt_id: str) -> str:
    """Verify a stored attempt; retry infrastructure failures with backoff, then infra_error."""
    session_factory, publisher = _process_state(os.getpid())
    # Waiting for the database must end before the soft time limit interrupts it.
    deadline = time.monotonic() + max(1.0, settings.task_soft_time_limit_s - 10.0)
    worker = f"{self.request.hostname}:{os.getpid()}"
    retries = self.request.retries
    final = pipeline.is_final(retries, settings)
    # A message Redis hands out again because its worker was lost may take the attempt over;
    # a first delivery leaves it to a worker that holds it under a live lease (a duplicate).
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        try:
            stored = pipeline.process(session_factory, attempt_id, worker=worker,
                                      settings=settings, final=final,
                                      takeover=redelivered or self.request.retries > 0,
                                      deadline=deadline, observe=metrics.record_verdict)
        except Exception as exc:
            if pipeline.is_outage(exc):
                raise
            delay = pipeline.retry_after(retries, exc, settings)
            if delay is not None:
                metrics.record_retry(type(exc).__name__)
                raise self.retry(exc=exc, countdown=delay) from exc
            log.error("attempt %s failed %d times: %r", attempt_id, retries + 1, exc)
            stored = pipeline.give_up(session_factory, attempt_id, worker,
                                      pipeline.give_up_reason(retries, exc), settings, deadline)
            if stored:
                metrics.record_given_up()
    except Exception as exc:
        if pipeline.is_outage(exc):  # the outcome is not stored: the message goes back
            log.error("database still unreachable; handing %s back to the queue", attempt_id)
            raise Reject(exc, requeue=True) from exc
        raise
    if stored:
        _notify(publisher, attempt_id)
    return "stored" if stored else "already done"
