"""What /health reports, gathered off the request thread pool.

With a thousand clients waiting, that pool's queue and the engine's connections are taken by the
waiters' database checks, and a probe queued behind them made a busy replica look dead (p99 of
2.4 s, one answer in 27 s on a busier machine). So the probe has threads and a database
connection of its own, what cannot change while the process runs (tool versions, sandbox mode)
is found once, and a report is reused for MAX_AGE_S: however many probes come (readiness,
liveness, load balancers), a process checks its dependencies at most once a second, one check
at a time, and most probes are answered from the event loop without waiting for a thread (which
under load waits for the GIL behind every busy request thread).
"""

from __future__ import annotations

import asyncio
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

MAX_AGE_S = 1.0  # how old a report /health answers with may be


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
        """The last report if it is under MAX_AGE_S old, else the check in progress, else a
        new one."""
        if self._last and time.monotonic() - self._last[0] < MAX_AGE_S:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._running)  # a client gone cancels nobody else's

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
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
