"""A request rate limit per API key (the `limits` library, sliding window of one minute).

In farm mode the counters live in the broker's Redis, so every API process behind one database
shares them; embedded, in process memory. The limiter is the library's asyncio one (Redis
through redis-py's asyncio client), so checking a request never leaves the event loop: a
duplicate /step answered from memory needs no thread at all. A limiter that cannot reach Redis
lets requests through: the limit protects the farm from one client, and must not add to an
outage.
"""

from __future__ import annotations

import logging
import math
import time

from fastapi import HTTPException
from limits import RateLimitItemPerMinute
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from store.settings import FarmSettings

log = logging.getLogger(__name__)


class KeyRateLimit:
    def __init__(self, settings: FarmSettings) -> None:
        per_minute = math.ceil(settings.rate_limit_per_s * 60)
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        broker = settings.broker_url
        self.limiter = SlidingWindowCounterRateLimiter(
            storage_from_string(f"async+{broker}", implementation="redispy", socket_timeout=1,
                                socket_connect_timeout=1)
            if broker.startswith("redis") else storage_from_string("async+memory://"))

    async def check(self, key_id: int) -> None:
        """429 with Retry-After when key `key_id` is over its rate."""
        if self.item is None:
            return
        try:
            allowed = await self.limiter.hit(self.item, "armgym-key", str(key_id))
            if allowed:
                return
            stats = await self.limiter.get_window_stats(self.item, "armgym-key", str(key_id))
        except Exception as exc:  # Redis away: fail open
            log.warning("rate limit not checked (%s)", type(exc).__name__)
            return
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        raise HTTPException(429, f"rate limit of {self.item.amount} requests per minute for "
                                 f"this API key exceeded; retry after {wait} s",
                            headers={"Retry-After": str(wait)})
