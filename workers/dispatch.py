"""How the API hands attempts to workers: Celery over Redis, or the embedded in-process pool.

Both take attempt ids that are already stored, both end in `pipeline.process`, and both report
completions through a callback so waiting requests wake at once instead of on their next poll.
"""

from __future__ import annotations

import base64
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from store import attempts
from store.db import make_engine, sessions
from store.settings import FarmSettings, redact

from . import pipeline

log = logging.getLogger(__name__)
OnDone = Callable[[str], None]


class Dispatcher(Protocol):
    mode: str

    def enqueue(self, attempt_ids: Sequence[str]) -> None: ...

    def in_flight(self) -> set[str]:
        """The attempts this dispatcher's queue holds (queued, or handed to a worker and not
        acknowledged): what the sweeper must not queue a second time."""
        ...

    def on_done(self, callback: OnDone) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


# State of an embedded pool process, set by _child_init (processes are spawned, not forked: the
# API process has threads and open connections that a fork would copy half-way).
_child: tuple[FarmSettings, pipeline.Sessions, str] | None = None


def _child_init(settings: FarmSettings) -> None:
    global _child
    engine = make_engine(settings.sqlalchemy_url, pool_size=1)
    _child = (settings, sessions(engine), pipeline.worker_name("embedded"))
    pipeline.sweep_scratch()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A pool process must not outlive the API (a SIGKILLed API cannot tell it to stop)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _child_run(attempt_id: str) -> None:
    """The Celery task's retry policy, as a loop instead of re-sent messages."""
    assert _child is not None
    settings, session_factory, worker = _child
    for retry in range(settings.max_retries + 1):
        try:
            pipeline.process(session_factory, attempt_id, worker=worker, settings=settings,
                             final=pipeline.is_final(retry, settings))
            return
        except Exception as exc:
            delay = pipeline.retry_after(retry, exc, settings)
            if delay is None:
                pipeline.give_up(session_factory, attempt_id, worker,
                                 pipeline.give_up_reason(retry, exc), settings)
                return
            time.sleep(delay)


class EmbeddedDispatcher:
    """A pool of worker processes owned by the API process. Processes, not threads: the
    verifier's own Python work (building inputs, comparing outputs) would otherwise share one
    interpreter lock with the API. A pool process that dies takes the pool with it; the pool is
    then rebuilt and every unfinished attempt queued again (the store makes that idempotent)."""

    mode = "embedded"

    def __init__(self, settings: FarmSettings, session_factory: pipeline.Sessions) -> None:
        self.settings, self.sessions = settings, session_factory
        self._callback: OnDone | None = None
        self._pending: dict[str, int] = {}  # attempt id -> times queued and not yet settled
        self._lock = threading.Lock()
        self._closed = False
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.settings.pool_size,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_child_init, initargs=(self.settings,))

    def enqueue(self, attempt_ids: Sequence[str]) -> None:
        with self._lock:
            for attempt_id in attempt_ids:
                self._pending[attempt_id] = self._pending.get(attempt_id, 0) + 1
            pool = self.pool
        for attempt_id in attempt_ids:
            try:
                future = pool.submit(_child_run, attempt_id)
            except BrokenProcessPool:
                self._settle(attempt_id, broken=pool)
                continue
            future.add_done_callback(lambda f, a=attempt_id, p=pool: self._finished(f, a, p))

    def _finished(self, future: Future[None], attempt_id: str, pool: ProcessPoolExecutor) -> None:
        lost = not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)
        self._settle(attempt_id, broken=pool if lost else None)

    def _settle(self, attempt_id: str, broken: ProcessPoolExecutor | None) -> None:
        with self._lock:
            left = self._pending.pop(attempt_id, 1) - 1
            if left > 0:
                self._pending[attempt_id] = left
            rebuild = broken is not None and broken is self.pool and not self._closed
            if rebuild:
                self.pool = self._new_pool()
        if rebuild:
            log.error("an embedded worker process died; re-queueing unfinished attempts")
            with self.sessions() as session:
                self.enqueue(attempts.unfinished(session))
        if self._callback and broken is None:
            self._callback(attempt_id)

    def in_flight(self) -> set[str]:
        with self._lock:
            return set(self._pending)

    def on_done(self, callback: OnDone) -> None:
        self._callback = callback

    def status(self) -> dict[str, Any]:
        with self._lock:
            depth = sum(self._pending.values())
        return {"mode": self.mode, "reachable": True, "url": None,
                "queue_depth": depth, "workers": self.settings.pool_size}

    def close(self) -> None:
        """Drop what is queued (it stays unfinished in the store and is re-queued on the next
        start) and wait for the verifications in progress."""
        self._closed = True
        self.pool.shutdown(wait=True, cancel_futures=True)


UNACKED_KEY = "unacked"  # kombu's Redis transport default (`unacked_key`)


def chunks(attempt_ids: Sequence[str], size: int) -> list[Sequence[str]]:
    """`attempt_ids` in as few messages of at most `size` as can be, of even lengths (10 in
    chunks of 8 are 5 + 5, not 8 + 2: two pool processes get one each)."""
    count = -(-len(attempt_ids) // size)
    return [attempt_ids[i * len(attempt_ids) // count:(i + 1) * len(attempt_ids) // count]
            for i in range(count)]


def _attempt_ids(raw: bytes) -> list[str]:
    """The attempt ids a kombu message in Redis carries: a JSON envelope (in the unacked hash,
    the first of [envelope, exchange, routing key]) whose body is the task's [args, kwargs,
    embed], base64-encoded; its first argument is a list of ids, or one id (a message of an
    earlier release). Anything else is not ours and carries none."""
    try:
        doc = json.loads(raw)
        envelope = doc[0] if isinstance(doc, list) else doc
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        first = json.loads(body)[0][0]
        ids = [first] if isinstance(first, str) else first if isinstance(first, list) else []
        return [a for a in ids if isinstance(a, str)]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return []


class CeleryDispatcher:
    """Sends `armgym.verify_attempt` messages, `dispatch_chunk` attempts each; listens for the
    workers' completion notices."""

    mode = "farm"

    def __init__(self, settings: FarmSettings) -> None:
        import redis

        from .celery_app import make_celery

        self.settings = settings
        self.app = make_celery(settings)
        self.redis = redis.Redis.from_url(settings.broker_url, socket_timeout=5,
                                          socket_connect_timeout=5)
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None

    def enqueue(self, attempt_ids: Sequence[str]) -> None:
        from .celery_app import send

        with self.app.producer_or_acquire() as producer:
            for chunk in chunks(attempt_ids, self.settings.dispatch_chunk):
                send(self.app, self.settings, chunk, producer=producer)

    def in_flight(self) -> set[str]:
        """Scans the queue and kombu's hash of unacknowledged messages (those a worker holds,
        including retries waiting out their countdown); O(queue length), run by the sweeper only
        when some attempt's lease ran out."""
        found: set[str] = set()
        for raw in self.redis.lrange(self.settings.queue_name, 0, -1):
            found.update(_attempt_ids(raw))
        for raw in self.redis.hvals(UNACKED_KEY):
            found.update(_attempt_ids(raw))
        return found

    def on_done(self, callback: OnDone) -> None:
        self._listener = threading.Thread(target=self._listen, args=(callback,), daemon=True,
                                          name="armgym-done-listener")
        self._listener.start()

    def _listen(self, callback: OnDone) -> None:
        from .celery_app import DONE_CHANNEL

        while not self._stop.is_set():
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(DONE_CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        callback(message["data"].decode())
                pubsub.close()
            except Exception:  # Redis restarting: the API keeps polling meanwhile
                log.warning("completion listener lost Redis; retrying", exc_info=True)
                self._stop.wait(2.0)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "url": redact(self.settings.broker_url)}
        try:
            self.redis.ping()
            out.update(reachable=True, queue_depth=self.redis.llen(self.settings.queue_name))
        except Exception as exc:
            out.update(reachable=False, error=f"{type(exc).__name__}: {exc}"[:200])
        return out

    def close(self) -> None:
        self._stop.set()
        if self._listener:
            self._listener.join(timeout=3)
        self.redis.close()


def make_dispatcher(settings: FarmSettings, sessions: pipeline.Sessions) -> Dispatcher:
    return EmbeddedDispatcher(settings, sessions) if settings.embedded else \
        CeleryDispatcher(settings)
