"""Figures per content key, for both cost models: keyed by a hash of the cycle text and the
model's version, so a figure is computed once per toolchain and shared by every worker process
on the machine (toolchain/cache.py keeps them)."""

from __future__ import annotations

from pathlib import Path

from ...cache import DiskCache, texts

LRU_SIZE = 65536


class FigureCache:
    """Text values by key, one file per key under `directory`."""

    def __init__(self, directory: Path, size: int = LRU_SIZE) -> None:
        self.directory = directory
        self._cache: DiskCache[str] = texts(size)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / key

    def get(self, key: str) -> str | None:
        return self._cache.get(self._path(key))

    def put(self, key: str, value: str) -> None:
        self._cache.put(self._path(key), value)


_CACHES: dict[Path, FigureCache] = {}


def at(directory: Path, size: int = LRU_SIZE) -> FigureCache:
    """The process's cache for one directory (one per model and version); `size` entries are
    kept in memory (0 where the caller keeps its own)."""
    if directory not in _CACHES:
        _CACHES[directory] = FigureCache(directory, size)
    return _CACHES[directory]
