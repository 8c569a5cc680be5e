"""A pool process gives glibc's free heap back to the OS after each attempt (malloc_trim(0)).

A verification allocates and frees megabytes (the C reference's records and buffers, the
emulator's streams, the tools' outputs) in threads of its own (background.py), so glibc spreads
them over several arenas; what is freed stays mapped as free chunks, and a pool process's RSS
rose about 45% over its first 600 verifications with Python's live memory flat (docs/
benchmarks.md). FarmSettings.malloc_trim switches it off; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any


@cache
def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def trim() -> bool:
    """Return free heap memory of every arena to the OS; True when glibc released any."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
