"""A small thread pool for tool runs that do not depend on each other, so one verification's
latency is not the sum of its tools: the C reference runs while the candidate is assembled and
checked, the whole-listing figure while the candidate is traced, llvm-mca's runs side by side.
Threads suffice: the work is in child processes, the threads only wait for them.

Made per process on first use (a pool created before a fork would be dead in the child).
`ARMGYM_OVERLAP=0` runs everything in the calling thread instead: a farm's worker processes
(one more than the cores) keep the cores busy, and the overlap only buys latency.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .settings import Settings

T = TypeVar("T")
THREADS = 4
_pool: tuple[int, ThreadPoolExecutor] | None = None
_lock = threading.Lock()


def submit(settings: Settings, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """`fn(*args, **kwargs)` in the pool, or done at once when `settings.overlap` is off."""
    if not settings.overlap:
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            done.set_exception(exc)
        return done
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(THREADS, thread_name_prefix="armgym"))
        return _pool[1].submit(fn, *args, **kwargs)
