"""Duplicates answered without the database in the response path.

A trainer resubmits identical attempts all the time (the same completion sampled twice in a
GRPO group, a retried request). Their verdict is known: the content-addressed verdict cache
holds it. Answering one still cost a database read, an insert of the attempt and its gate rows
and a commit, several times what the trainer waits for otherwise. Here an API process keeps the
verdicts it has answered or seen finish (a batch's results included), keyed like the verdict
cache (variant, assembly, seed, completion, verifier version), each as the `Answer` it is
stored with (store/attempts.py), answers a duplicate from memory, and hands the attempt's row to
a writer thread that stores it moments later, batched. Every attempt is still stored, with the
id the client was given. Duplicates in a batch are stored in the request (api/submit.py:
known_answers), from the same memory.

What this trades: a row appears a few milliseconds after its answer (GET /attempts/{id} waits
for it, see `settle`); an API process killed in that window loses the rows of the duplicates it
answered in it (their verdicts were given, and an identical attempt is stored already). Only
attempts without an idempotency key take this path: a key names one attempt across requests,
which only the database can tell. While the database is away the writer retries (as a worker
does, `workers.pipeline.durably`); once its queue is full, duplicates go through the database
again, which then refuses them with 503 like any other submission.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cachetools import LRUCache
from sqlalchemy.orm import Session

from store import attempts
from store.settings import FarmSettings
from workers.pipeline import durably

log = logging.getLogger(__name__)
BATCH = 256  # rows stored per transaction at most
# How long the writer waits for more answers before it stores what it has: one transaction for
# many rows costs far less than one each, and its thread competes with the requests for the GIL.
LINGER_S = 0.05
# How long the writer sleeps at most with nothing to do: an answer whose wake never came (its
# response failed before it was sent) is stored within it.
WAKE_S = 1.0
CACHE_WORKER = "verdict-cache"  # the `worker` of an attempt answered from an identical one
# Submitted text the memory of content keys (RecentVerdicts.address) holds at most.
ADDRESS_BYTES = 32 * 1024 * 1024
ENTRY_BYTES = 256  # what an entry holds besides its text, roughly


class RecentVerdicts:
    """Content key -> the Answer an identical attempt is answered and stored with (its verdict
    as_cached, columns and gate rows, worked out once). Thread-safe (the event loop reads it,
    threads fill it)."""

    def __init__(self, size: int) -> None:
        self._lru: LRUCache[str, attempts.Answer] = LRUCache(maxsize=max(size, 1))
        # (key, profile) -> (the verdict it was made from, the response body)
        self._bodies: LRUCache[tuple[str, str], tuple[dict[str, Any], bytes]] = \
            LRUCache(maxsize=max(size, 1))
        # what an attempt's content is -> (its seed, its content key, the size of its text)
        self._addresses: LRUCache[tuple[Any, ...], tuple[int, str, int]] = LRUCache(
            maxsize=ADDRESS_BYTES, getsizeof=lambda found: found[2])
        self._lock = threading.Lock()
        self.enabled = size > 0

    def get(self, key: str | None) -> attempts.Answer | None:
        if not self.enabled or not key:
            return None
        with self._lock:
            return self._lru.get(key)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._lru

    def put(self, key: str | None, verdict: dict[str, Any] | None) -> None:
        """Remember a finished verdict; never an infrastructure failure (the cache's rule)."""
        if self.enabled and key and verdict and verdict.get("error_kind") != "infra_error":
            self.keep(key, attempts.Answer.of(verdict))

    def rendered(self, key: str, verdict: dict[str, Any], profile: str,
                 render: Callable[[], bytes]) -> bytes:
        """The response body of `verdict` (an Answer's, from this memory) under `profile`,
        rendered once: building the observation (a typed verdict) and encoding the JSON cost
        more than the rest of a duplicate's answer. A body made from another verdict of the
        same key (an Answer replaced since) is rendered anew."""
        with self._lock:
            found = self._bodies.get((key, profile))
        if found is not None and found[0] is verdict:
            return found[1]
        body = render()
        with self._lock:
            self._bodies[(key, profile)] = (verdict, body)
        return body

    def address(self, content: tuple[Any, ...],
                work: Callable[[], tuple[int, str]]) -> tuple[int, str]:
        """The seed and content key of an attempt whose content (variant, text, seed fields,
        ...) is `content`: `work()` once, then remembered, as a duplicate's are its original's
        (the keyed hashes over the text and the variant's C cost more than the rest of its
        answer's own work). Bounded by the text held (ADDRESS_BYTES)."""
        if not self.enabled:
            return work()
        with self._lock:
            found = self._addresses.get(content)
        if found is not None:
            return found[0], found[1]
        seed, key = work()
        size = ENTRY_BYTES + sum(len(part) for part in content if isinstance(part, str | bytes))
        if size <= ADDRESS_BYTES:
            with self._lock:
                self._addresses[content] = (seed, key, size)
        return seed, key

    def keep(self, key: str, answer: attempts.Answer) -> None:
        """Remember an Answer already worked out (attempts.cached_answers: never infra_error)."""
        if self.enabled and key:
            with self._lock:
                self._lru[key] = answer


@dataclass
class Record:
    """One answered duplicate, to be stored."""
    key_id: int
    item: attempts.NewAttempt  # with its id, seed and content key
    answer: attempts.Answer
    run_id: str | None
    step: int | None
    model: str | None
    written: threading.Event = field(default_factory=threading.Event)


class Recorder:
    """The writer thread: stores answered duplicates in batches, in order."""

    def __init__(self, settings: FarmSettings, sessions: Callable[[], Session]) -> None:
        self._settings, self._sessions = settings, sessions
        self._queue: deque[Record] = deque()  # answered, not taken by the writer yet
        self._pending: dict[str, Record] = {}  # answered, not stored yet
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._idle = self._stop = False
        self._thread = threading.Thread(target=self._run, name="armgym-recorder", daemon=True)
        self._thread.start()

    def record(self, key_id: int, item: attempts.NewAttempt, answer: attempts.Answer, *,
               run_id: str | None, step: int | None, model: str | None,
               wake: bool = True) -> str | None:
        """The id the stored attempt will have, or None when the queue is full (the caller
        then takes the database path). `wake=False` leaves waking the writer to the caller,
        once its answer is sent (wake): woken at once, the writer's thread competes with the
        response for the GIL. Unwoken, it looks within WAKE_S anyway."""
        rec = Record(key_id, replace(item, id=str(uuid.uuid4())), answer, run_id, step, model)
        assert rec.item.id is not None
        with self._ready:
            if len(self._queue) >= self._settings.record_queue:
                return None
            self._pending[rec.item.id] = rec
            self._queue.append(rec)
            if wake:
                self._wake()
        return rec.item.id

    def wake(self) -> None:
        """Let the writer take what is queued (see record)."""
        with self._ready:
            self._wake()

    def _wake(self) -> None:
        if self._idle or len(self._queue) >= BATCH:  # else it lingers and takes it then
            self._ready.notify()

    def __contains__(self, attempt_id: object) -> bool:
        """Whether an attempt was answered from memory and is not stored yet."""
        with self._lock:
            return attempt_id in self._pending

    def settle(self, attempt_id: str, timeout: float) -> None:
        """Wait until an attempt answered from memory is stored (read-your-writes for GET)."""
        with self._lock:
            rec = self._pending.get(attempt_id)
        if rec is not None:
            rec.written.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Store what is queued, then stop (the lifespan's end)."""
        with self._ready:
            self._stop = True
            self._ready.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the recorder did not store %d answered duplicates within %.0f s",
                      len(self._pending), timeout)

    def _take(self) -> tuple[list[Record], bool]:
        """Up to BATCH records, once LINGER_S has passed since the first (or BATCH are in);
        and whether to stop after them (closed, nothing left)."""
        with self._ready:
            while not self._queue and not self._stop:
                self._idle = True
                self._ready.wait(WAKE_S)
            self._idle = False
            batch: list[Record] = []
            until = time.monotonic() + LINGER_S
            while True:
                batch += [self._queue.popleft() for _ in range(min(BATCH - len(batch),
                                                                   len(self._queue)))]
                left = until - time.monotonic()
                if len(batch) >= BATCH or self._stop or left <= 0:
                    return batch, self._stop and not self._queue
                self._ready.wait(left)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take()
            groups: dict[tuple[Any, ...], list[Record]] = {}
            for rec in batch:
                groups.setdefault((rec.key_id, rec.run_id, rec.step, rec.model), []).append(rec)
            for recs in groups.values():
                try:
                    durably(self._settings, lambda recs=recs: self._store(recs))
                except Exception:
                    log.exception("could not store %d answered duplicates", len(recs))
                for rec in recs:
                    with self._lock:
                        self._pending.pop(rec.item.id or "", None)
                    rec.written.set()

    def _store(self, recs: list[Record]) -> None:
        head = recs[0]
        with self._sessions() as session:
            attempts.submit(session, head.key_id, [r.item for r in recs], run_id=head.run_id,
                            step=head.step, model=head.model, worker=CACHE_WORKER,
                            cached={r.item.content_key or "": r.answer for r in recs})
