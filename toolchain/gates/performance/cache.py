"""Figures per content key, for both cost models and the whole-listing figure: keyed by a hash
of the text the tool analysed and the model's version, so a figure is computed once per
toolchain and shared by every worker process on the machine (toolchain/cache.py keeps them).

Every file carries a digest of its key and value: a torn, truncated or bit-flipped file, or
one copied under another key's name, is a miss (the tool runs again), never a figure."""

from __future__ import annotations

from pathlib import Path

from ... import tools
from ...cache import DiskCache, texts

LRU_SIZE = 65536


def seal(key: str, value: str) -> str:
    """The file's text: the digest of (key, value), a newline, the value."""
    return f"{tools.fingerprint(key, value)}\n{value}"


def unseal(key: str, text: str) -> str | None:
    """The value `seal(key, value)` wrote, or None when `text` is not that."""
    digest, newline, value = text.partition("\n")
    return value if newline and digest == tools.fingerprint(key, value) else None


class FigureCache:
    """Text values by key, one file per key under `directory`."""

    def __init__(self, directory: Path, size: int = LRU_SIZE) -> None:
        self.directory = directory
        self._cache: DiskCache[str] = texts(size)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / key

    def get(self, key: str) -> str | None:
        text = self._cache.get(self._path(key))
        return None if text is None else unseal(key, text)

    def put(self, key: str, value: str) -> None:
        self._cache.put(self._path(key), seal(key, value))


_CACHES: dict[Path, FigureCache] = {}


def at(directory: Path, size: int = LRU_SIZE) -> FigureCache:
    """The process's cache for one directory (one per model and version); `size` entries are
    kept in memory (0 where the caller keeps its own)."""
    if directory not in _CACHES:
        _CACHES[directory] = FigureCache(directory, size)
    return _CACHES[directory]
