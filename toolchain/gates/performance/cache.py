"""Figures per content key: an in-process LRU in front of one small file per key on disk.

Both cost models use it, keyed by a hash of the cycle text and the model's version, so a figure
is computed once per toolchain and shared by every worker process on the machine.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

LRU_SIZE = 65536


class FigureCache:
    """Text values by key; writes are atomic renames, so concurrent workers never see half."""

    def __init__(self, directory: Path, size: int = LRU_SIZE) -> None:
        self.directory = directory
        self.size = size
        self.lru: OrderedDict[str, str] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self.lock:
            if key in self.lru:
                self.lru.move_to_end(key)
                return self.lru[key]
        try:
            value = (self.directory / key[:2] / key).read_text()
        except OSError:
            return None
        self._remember(key, value)
        return value

    def put(self, key: str, value: str) -> None:
        self._remember(key, value)
        folder = self.directory / key[:2]
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        os.replace(tmp, folder / key)

    def _remember(self, key: str, value: str) -> None:
        with self.lock:
            self.lru[key] = value
            self.lru.move_to_end(key)
            while len(self.lru) > self.size:
                self.lru.popitem(last=False)


_CACHES: dict[Path, FigureCache] = {}


def at(directory: Path, size: int = LRU_SIZE) -> FigureCache:
    """The process's cache for one directory (one per model and version); `size` entries are
    kept in memory (0 where the caller keeps its own)."""
    if directory not in _CACHES:
        _CACHES[directory] = FigureCache(directory, size)
    return _CACHES[directory]
