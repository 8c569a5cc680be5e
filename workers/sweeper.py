"""Recovery from the database, the source of truth: Redis holds messages, not state.

Every attempt not done carries a lease (attempts.lease_until). A sweep takes the attempts whose
lease ran out, asks the dispatcher which of them its broker still holds, and queues the others
again: queued attempts whose message is gone (Redis restarted without persistence, the API died
between storing and queueing), and running attempts past the task's hard time limit (their
worker died with the message unacknowledged). Every API process sweeps; the row locks (SKIP
LOCKED) and the new lease keep two of them from queueing the same attempt twice, and a
duplicate message would be harmless anyway: the store keeps one verdict per attempt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from store import attempts
from store.settings import FarmSettings

from . import pipeline
from .dispatch import Dispatcher

log = logging.getLogger(__name__)
MAX_ROUNDS = 50  # sweeps in a row while each finds a full batch (bounds one wake-up)


class Sweeper:
    def __init__(self, settings: FarmSettings, sessions: pipeline.Sessions,
                 dispatcher: Dispatcher) -> None:
        self.settings, self.sessions, self.dispatcher = settings, sessions, dispatcher
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.requeued = 0  # attempts this process queued again, for /metrics and the tests

    def sweep(self, ids: Sequence[str] | None = None) -> list[str]:
        """Queue again what is stuck (among `ids` only, when given); the ids queued."""
        with self.sessions() as session:
            again = attempts.recover(session, self.dispatcher.in_flight,
                                     lease_s=self.settings.sweep_grace_s,
                                     limit=self.settings.sweep_batch, ids=ids)
        if again:
            log.warning("re-queueing %d attempts the broker had lost", len(again))
            self.dispatcher.enqueue(again)  # if the broker is down, the next sweep tries again
            self.requeued += len(again)
        return again

    def start(self) -> None:
        if self.settings.sweep_interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, daemon=True, name="armgym-sweeper")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                for _ in range(MAX_ROUNDS):
                    if len(self.sweep()) < self.settings.sweep_batch:
                        break
            except Exception as exc:  # database or broker away: try again next interval
                log.warning("sweep failed (%s: %s); next in %s s", type(exc).__name__,
                            str(exc).splitlines()[0][:200] if str(exc) else "",
                            self.settings.sweep_interval_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
