"""Everything a request needs, built once per API process: settings, database, dispatcher,
completion hub, metrics. Embedded mode migrates its SQLite file and re-queues attempts that an
earlier process left unfinished (their in-memory queue died with it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from store import attempts, db, keys
from store.settings import FarmSettings
from workers.dispatch import Dispatcher, make_dispatcher
from workers.sweeper import Sweeper

from .health import HealthProbe
from .keycache import KeyCache
from .metrics import Metrics
from .ratelimit import KeyRateLimit
from .recent import RecentVerdicts, Recorder
from .waiting import CompletionHub

log = logging.getLogger(__name__)


@dataclass
class Farm:
    settings: FarmSettings
    engine: Engine
    sessions: sessionmaker[Session]
    dispatcher: Dispatcher
    hub: CompletionHub
    metrics: Metrics
    sweeper: Sweeper
    rate_limit: KeyRateLimit
    health: HealthProbe
    recent: RecentVerdicts  # duplicates answered from memory, stored by `recorder` just after
    recorder: Recorder
    key_cache: KeyCache  # keys found valid, trusted for ARMGYM_KEY_CACHE_TTL_S
    # The last count of outstanding attempts: (monotonic time, count), raised by what this
    # process admitted since (completions only lower the true count: it errs on the safe side).
    _counted: tuple[float, int] | None = field(default=None, init=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _admitting: int = field(default=0, init=False)  # admitted, not yet stored

    @classmethod
    def start(cls, settings: FarmSettings) -> Farm:
        url = settings.sqlalchemy_url
        if settings.embedded or url.startswith("sqlite"):
            db.upgrade(url)  # the farm migrates by `alembic upgrade head` (scripts/farm.sh)
        engine = db.make_engine(url, pool_size=max(10, settings.pool_size + 4))
        sessions = db.sessions(engine)
        with sessions() as session, session.begin():
            for name, plaintext, scopes in keys.parse_config(settings.api_keys,
                                                             settings.admin_key):
                keys.ensure(session, name, plaintext, scopes)
        dispatcher = make_dispatcher(settings, sessions)
        farm = cls(settings, engine, sessions, dispatcher,
                   CompletionHub(settings.poll_interval_s), Metrics(),
                   Sweeper(settings, sessions, dispatcher), KeyRateLimit(settings),
                   HealthProbe(settings, dispatcher), RecentVerdicts(settings.recent_verdicts),
                   Recorder(settings, sessions), KeyCache(settings.key_cache_ttl_s))
        farm.metrics.outstanding.set_function(
            farm.metrics.guarded("database", farm.outstanding))
        farm.metrics.broker_depth.set_function(
            farm.metrics.guarded("broker", farm.broker_depth))
        if farm.dispatcher.mode == "embedded":
            with sessions() as session:
                left = attempts.unfinished(session)
            if left:
                log.warning("re-queueing %d unfinished attempts", len(left))
                farm.dispatcher.enqueue(left)
        farm.sweeper.start()
        return farm

    def outstanding(self, max_age_s: float = 0.0) -> int:
        """Attempts queued or running; a count up to `max_age_s` old will do (backpressure need
        not cost a query per submission)."""
        with self._count_lock:
            if self._counted and time.monotonic() - self._counted[0] <= max_age_s:
                return self._counted[1]
        with self.sessions() as session:
            count = attempts.outstanding(session)
        with self._count_lock:
            self._counted = (time.monotonic(), count)
        return count

    def broker_depth(self) -> float:
        """Messages waiting in the broker; raises when it cannot be asked (metrics say so)."""
        status = self.dispatcher.status()
        if status.get("reachable") is False:
            raise ConnectionError(status.get("error") or "broker unreachable")
        return float(status.get("queue_depth") or 0)

    @contextmanager
    def admission(self, incoming: int, limit: int, max_age_s: float) -> Iterator[int | None]:
        """Room for `incoming` more attempts by this process's count: yields None when there
        is, and counts them from that moment until they are stored and beyond (so concurrent
        requests of this process cannot all pass on one count), else yields the number
        waiting. An empty queue admits anything. A cheap first refusal, no query: what other
        API processes admitted is only seen by the store's own count when storing
        (attempts.submit with `limit`), which is exact."""
        self.outstanding(max_age_s=max_age_s)  # refreshes the count if it is too old
        with self._count_lock:
            assert self._counted is not None
            waiting = self._counted[1] + self._admitting
            if waiting and waiting + incoming > limit:
                full = True
            else:
                full, self._admitting = False, self._admitting + incoming
        if full:
            yield waiting
            return
        try:
            yield None
        finally:
            with self._count_lock:  # stored (or failed): in the count until the next refresh
                self._admitting -= incoming
                if self._counted:
                    self._counted = (self._counted[0], self._counted[1] + incoming)

    def close(self) -> None:
        self.recorder.close()
        self.sweeper.close()
        self.health.close()
        self.dispatcher.close()
        self.engine.dispose()
