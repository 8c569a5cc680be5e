"""What /health reports, gathered in the background and answered from the event loop.

With a thousand clients waiting, the request thread pool and the engine's connections are taken
by the waiters' database checks, and a probe queued behind them made a busy replica look dead
(p99 of 2.4 s, one answer in 27 s on a busier machine). Threads of its own were not enough: a
thread that does a few queries waits for the GIL behind forty busy ones at every step (seconds
under that load). So each API process checks its database and broker every REFRESH_S in the
background (two threads and a connection of its own; tool versions and sandbox mode found once)
and /health answers at once with the last report and its age. A report older than STALE_S (a
check that hangs) is answered as degraded.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from store import attempts, db
from store.settings import FarmSettings, redact
from toolchain import sandbox, tools
from toolchain.errors import InfraError
from toolchain.verify import TOOLS
from workers.dispatch import Dispatcher

log = logging.getLogger(__name__)
REFRESH_S = 1.0  # pause between two checks of one process
STALE_S = 30.0  # a report this old means the check itself hangs: degraded


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = tools.tool(name).version
        except (InfraError, KeyError) as exc:
            out[name] = f"missing: {exc}"
    return out


def sandbox_status(settings: FarmSettings) -> str:
    try:
        return sandbox.sandbox_mode(settings.core)
    except InfraError as exc:
        return f"unavailable: {exc}"


class HealthProbe:
    def __init__(self, settings: FarmSettings, dispatcher: Dispatcher) -> None:
        self.settings, self.dispatcher = settings, dispatcher
        self.engine = db.make_engine(settings.sqlalchemy_url, pool_size=1)
        self._threads = ThreadPoolExecutor(max_workers=3, thread_name_prefix="armgym-health")
        self._static: dict[str, Any] | None = None
        self._last: tuple[float, dict[str, Any]] | None = None  # (monotonic time, report)
        self._running: asyncio.Future[dict[str, Any]] | None = None
        self._refresher: asyncio.Future[None] | None = None

    def _database(self) -> tuple[dict[str, Any], int | None]:
        ok, detail = db.reachable(self.engine)
        status = {"reachable": ok, "url": redact(self.settings.sqlalchemy_url),
                  "backend": self.engine.dialect.name, ("revision" if ok else "error"): detail}
        if not ok:
            return status, None
        try:
            with Session(self.engine) as session:
                return status, attempts.outstanding(session)
        except Exception:  # gone between the two queries: reachable said what it could
            return status, None

    def _fixed(self) -> dict[str, Any]:
        """Tool versions and sandbox mode: found once (tools are looked up once per process
        anyway; the sandbox probe runs bubblewrap)."""
        if self._static is None:
            self._static = {"python": sys.version.split()[0],
                            "sandbox": sandbox_status(self.settings), "tools": tool_versions()}
        return self._static

    async def report(self) -> dict[str, Any]:
        """The last report with its age (`age_s`), waiting only for the first one."""
        if self._last is None:
            if self._running is None or self._running.done():
                self._running = asyncio.ensure_future(self._check())
            await asyncio.shield(self._running)  # a client gone cancels nobody else's
        assert self._last is not None
        at, found = self._last
        age = time.monotonic() - at
        if age > STALE_S:
            problem = f"no health check has completed for {age:.0f} s"
            found = {**found, "database": {**found["database"], "reachable": False,
                                           "error": problem}}
        return {**found, "age_s": round(age, 3)}

    def start(self) -> None:
        """Check every REFRESH_S from now on (on the running event loop) until close()."""
        self._refresher = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        while True:
            self._running = asyncio.ensure_future(self._check())
            try:
                await self._running
            except Exception as exc:  # never ends the loop; the report ages and turns stale
                log.error("health check failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(REFRESH_S)

    async def _check(self) -> dict[str, Any]:
        """Database (with the outstanding count), broker, and the fixed part, concurrently."""
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        run = partial(loop.run_in_executor, self._threads)
        (database, outstanding), broker, fixed = await asyncio.gather(
            run(self._database), run(self.dispatcher.status), run(self._fixed))
        found = {**fixed, "database": database, "broker": broker,
                 "queue": {"outstanding": outstanding, "limit": self.settings.queue_limit}}
        self._last = (started, found)
        return found

    def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
