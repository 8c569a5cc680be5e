"""API keys found valid, kept in the API process for a few seconds (ARMGYM_KEY_CACHE_TTL_S).

Authentication was a database read per request, done in the thread pool: on a duplicate /step
answered from memory it cost more than the answer. A key found valid is kept here, keyed by the
SHA-256 of what was sent (as the database's index is), so the next requests with it are checked
on the event loop without the database. Revoking through this process forgets the key at once;
another API process keeps accepting a revoked key until its entry, made when it last read the
key, expires: at most ARMGYM_KEY_CACHE_TTL_S after the revoke. Unknown keys are not kept (a
key created on another process works here at once, and guessed keys cannot fill the cache).
"""

from __future__ import annotations

import threading

from cachetools import TTLCache

from store import keys

SIZE = 4096  # distinct valid keys kept per API process


class KeyCache:
    """Digest -> KeyInfo, thread-safe (the event loop reads it, a revoke in the thread pool
    forgets)."""

    def __init__(self, ttl_s: float, size: int = SIZE) -> None:
        self._keys: TTLCache[str, keys.KeyInfo] | None = \
            TTLCache(maxsize=size, ttl=ttl_s) if ttl_s > 0 else None
        self._lock = threading.Lock()

    def get(self, token: str) -> keys.KeyInfo | None:
        if self._keys is None:
            return None
        digest = keys.hash_key(token)
        with self._lock:
            return self._keys.get(digest)

    def put(self, token: str, info: keys.KeyInfo) -> None:
        if self._keys is not None:
            digest = keys.hash_key(token)
            with self._lock:
                self._keys[digest] = info

    def forget(self, key_id: int) -> None:
        """Drop every entry of key `key_id` (revoked through this process)."""
        if self._keys is None:
            return
        with self._lock:
            for digest in [d for d, info in self._keys.items() if info.id == key_id]:
                self._keys.pop(digest, None)
