"""A small thread pool for tool runs that do not depend on each other, so one verification's
latency is not the sum of its tools: the C reference runs while the candidate is assembled and
checked, the whole-listing figure while the candidate is traced, llvm-mca's runs side by side.
Threads suffice: the work is in child processes, the threads only wait for them.

Made per process on first use (a pool created before a fork would be dead in the child).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREADS = 4
_pool: tuple[int, ThreadPoolExecutor] | None = None
_lock = threading.Lock()


def submit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(THREADS, thread_name_prefix="armgym"))
        return _pool[1].submit(fn, *args, **kwargs)
