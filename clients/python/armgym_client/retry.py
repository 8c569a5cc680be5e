"""When to retry a request and how long to wait: the farm answers overload with 429 or 503 and a
Retry-After header, never by timing out, so honouring that header is the fast path back in."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, overridden by the server's Retry-After when it sends one.

    `max_retries` counts retries after the first try. Jitter spreads the retries of many trainer
    ranks that were refused at the same moment.
    """

    max_retries: int = 8
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 300.0
    jitter: float = 0.1
    statuses: frozenset[int] = RETRY_STATUSES

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds before retry number `retry` (0-based); None when retries are exhausted."""
        if retry >= self.max_retries:
            return None
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        base = min(self.backoff_s * 2 ** retry, self.max_backoff_s)
        return base * (1 + self.jitter * (2 * random.random() - 1))


NO_RETRY = RetryPolicy(max_retries=0)
