"""Values by file path: an in-process LRU in front of one small file per entry on disk.

The one memory-plus-file cache of the core: the cost models' figures, the baselines' measured
cycles, the compiler baselines, the verdict cache and the C references all keep their entries
through it. A cache's files are text, or bytes when it is binary (the references: megabytes of
buffers that text would have to spell out). Writes are atomic renames, so concurrent workers
sharing the directory never read half a file; an unreadable or undecodable file is a miss, never
an error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
Content = TypeVar("Content", str, bytes)  # what a cache's files hold


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write `content` (text, or bytes as they are) under a temporary name and rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as fh:
        fh.write(content)
    os.replace(tmp, path)


class DiskCache(Generic[T]):
    """`size` entries kept in memory (0: none, the files only); `encode`/`decode` turn a value
    into a file's text and back, or into its bytes when `binary`."""

    def __init__(self, size: int, encode: Callable[[T], Content],
                 decode: Callable[[Content], T], *, binary: bool = False) -> None:
        self.size, self.encode, self.decode, self.binary = size, encode, decode, binary
        self._memory: OrderedDict[Path, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> T | None:
        with self._lock:
            if path in self._memory:
                self._memory.move_to_end(path)
                return self._memory[path]
        try:
            value = self.decode(path.read_bytes() if self.binary else path.read_text())
        except (OSError, ValueError):
            return None
        self._remember(path, value)
        return value

    def put(self, path: Path, value: T) -> None:
        """Remember `value` and write it (an OSError is the caller's to handle)."""
        self._remember(path, value)
        write_atomic(path, self.encode(value))

    def _remember(self, path: Path, value: T) -> None:
        with self._lock:
            self._memory[path] = value
            self._memory.move_to_end(path)
            while len(self._memory) > self.size:
                self._memory.popitem(last=False)


def prune(folder: Path, keep: int, suffix: str) -> None:
    """Remove the oldest files of `folder` ending in `suffix` beyond `keep`: what bounds a
    cache's files on disk (a cache calls it now and then after a put, not on every one)."""
    try:
        files = [e for e in os.scandir(folder) if e.name.endswith(suffix)]
    except OSError:
        return
    if len(files) <= keep:
        return
    files.sort(key=lambda e: e.stat().st_mtime)
    for entry in files[: len(files) - keep]:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def texts(size: int) -> DiskCache[str]:
    return DiskCache(size, str, str)
