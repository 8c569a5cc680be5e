"""How the API hands attempts to workers: Celery over Redis, or the embedded in-process pool.

Both take attempt ids that are already stored, both end in `pipeline.process`, and both report
completions through a callback so waiting requests wake at once instead of on their next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from store.settings import FarmSettings, redact

from . import pipeline

log = logging.getLogger(__name__)
OnDone = Callable[[str], None]


class Dispatcher(Protocol):
    mode: str

    def enqueue(self, attempt_ids: Sequence[str]) -> None: ...

    def on_done(self, callback: OnDone) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class EmbeddedDispatcher:
    """A thread pool inside the API process. Threads suffice: a verification spends its time in
    the assembler, linker and emulator subprocesses, not in Python."""

    mode = "embedded"

    def __init__(self, settings: FarmSettings, sessions: pipeline.Sessions) -> None:
        self.settings, self.sessions = settings, sessions
        self.pool = ThreadPoolExecutor(settings.pool_size, thread_name_prefix="armgym-verify")
        self.worker = pipeline.worker_name("embedded")
        self._callback: OnDone | None = None
        self._pending = 0
        self._lock = threading.Lock()

    def enqueue(self, attempt_ids: Sequence[str]) -> None:
        with self._lock:
            self._pending += len(attempt_ids)
        for attempt_id in attempt_ids:
            self.pool.submit(self._run, attempt_id)

    def _run(self, attempt_id: str) -> None:
        """The same retry policy as the Celery task, as a loop instead of re-sent messages."""
        try:
            for retry in range(self.settings.max_retries + 1):
                final = retry == self.settings.max_retries
                try:
                    pipeline.process(self.sessions, attempt_id, worker=self.worker,
                                     settings=self.settings, final=final)
                    break
                except Exception as exc:
                    if final:
                        pipeline.give_up(self.sessions, attempt_id, self.worker,
                                         f"verification failed after {retry + 1} tries: "
                                         f"{type(exc).__name__}: {exc}")
                    else:
                        time.sleep(pipeline.backoff(retry, self.settings.retry_backoff_s))
        except Exception:
            log.exception("attempt %s could not be stored", attempt_id)
        finally:
            with self._lock:
                self._pending -= 1
            if self._callback:
                self._callback(attempt_id)

    def on_done(self, callback: OnDone) -> None:
        self._callback = callback

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "reachable": True, "url": None,
                "queue_depth": self._pending, "workers": self.settings.pool_size}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class CeleryDispatcher:
    """Sends `armgym.verify_attempt` messages; listens for the workers' completion notices."""

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
        from .celery_app import TASK_NAME

        with self.app.producer_or_acquire() as producer:
            for attempt_id in attempt_ids:
                self.app.send_task(TASK_NAME, args=[attempt_id], queue=self.settings.queue_name,
                                   producer=producer)

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
