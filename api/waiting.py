"""Waiting for results without a poll loop per request.

Workers report each stored verdict (Redis pub/sub in the farm, a callback in embedded mode).
A request waiting for one attempt is woken by exactly that attempt's notice; requests waiting for
a batch share one wake-up, at most every `batch_gap_s`. Every waiter also re-checks the database
on its own, first after `poll_s`, then at doubling intervals up to `max_poll_s`, so a lost notice
costs latency, never a result, and a thousand idle waiters cost a few hundred queries a second
instead of thousands (bench/load.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from store import reads

if TYPE_CHECKING:
    from .farm import Farm

T = TypeVar("T")

MAX_POLL_S = 5.0  # the longest a waiter goes without looking at the database itself


class CompletionHub:
    def __init__(self, poll_s: float, batch_gap_s: float = 0.1,
                 max_poll_s: float = MAX_POLL_S) -> None:
        self.poll_s, self.batch_gap_s = poll_s, batch_gap_s
        self.max_poll_s = max(poll_s, max_poll_s)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attempts: dict[str, set[asyncio.Event]] = {}
        self._any = asyncio.Event()
        self._any_scheduled = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, attempt_id: str) -> None:
        """Called from any thread when an attempt's verdict is stored."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, attempt_id)

    def _wake(self, attempt_id: str) -> None:
        for event in self._attempts.get(attempt_id, ()):
            event.set()
        if not self._any_scheduled:
            self._any_scheduled = True
            assert self._loop is not None
            self._loop.call_later(self.batch_gap_s, self._wake_any)

    def _wake_any(self) -> None:
        self._any_scheduled = False
        event, self._any = self._any, asyncio.Event()
        event.set()

    async def wait(self, check: Callable[[], Any], timeout: float,
                   attempt_id: str | None = None) -> Any:
        """Run `check` (blocking, in a thread) until it returns something truthy or `timeout`
        passes; return its last result."""
        deadline = time.monotonic() + timeout
        own = asyncio.Event()
        if attempt_id:
            self._attempts.setdefault(attempt_id, set()).add(own)
        interval = self.poll_s
        try:
            while True:
                result = await run_in_threadpool(check)
                remaining = deadline - time.monotonic()
                if result or remaining <= 0:
                    return result
                event = own if attempt_id else self._any
                try:
                    await asyncio.wait_for(event.wait(), min(remaining, interval))
                except TimeoutError:  # no notice: look less often from now on
                    interval = self.next_poll(interval)
                own.clear()
        finally:
            if attempt_id:
                waiters = self._attempts.get(attempt_id, set())
                waiters.discard(own)
                if not waiters:
                    self._attempts.pop(attempt_id, None)

    def next_poll(self, interval: float) -> float:
        return min(interval * 2, self.max_poll_s)

    async def changes(self, timeout: float) -> bool:
        """Sleep until some attempt finishes (batch-level granularity) or `timeout`; whether
        something finished."""
        try:
            await asyncio.wait_for(self._any.wait(), timeout)
            return True
        except TimeoutError:
            return False


async def wait_until(farm: Farm, read: Callable[[Session], T], timeout: float,
                     attempt_id: str | None = None) -> T:
    """The one way a request waits for results: run `read` on a session of its own (in a
    thread) until it returns something truthy or `timeout` passes, and return its last result.
    With `attempt_id` the wait is woken by exactly that attempt's notice, else by the farm's
    batch-level signal; the store is re-read either way (CompletionHub.wait)."""

    def check() -> T:
        with farm.sessions() as session:
            return read(session)

    return await farm.hub.wait(check, timeout, attempt_id=attempt_id)


def finished(attempt_id: str) -> Callable[[Session], dict[str, Any] | None]:
    """A read for wait_until: the attempt (reads.attempt) once it is done, else None."""

    def read(session: Session) -> dict[str, Any] | None:
        found = reads.attempt(session, attempt_id)
        return found if found and found["status"] == "done" else None

    return read


def wait_limit(farm: Farm, wait: float) -> float:
    """A client's ?wait=, capped at ARMGYM_MAX_WAIT_S."""
    return min(wait, farm.settings.max_wait_s)
