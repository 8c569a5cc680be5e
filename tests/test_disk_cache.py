"""The one memory-plus-file cache (toolchain/cache.py): text files for the caches of text, the
bytes as they are for a binary one, a miss for what does not decode, and the pruning."""

from __future__ import annotations

import os
from pathlib import Path

from toolchain.cache import DiskCache, prune, texts

RAW = b"\x00\xff\r\n\n\x1a" * 3  # what a text file would not keep as it is


def test_a_binary_cache_keeps_the_bytes_a_text_cache_the_text(tmp_path: Path) -> None:
    binary = DiskCache(0, bytes, bytes, binary=True)
    binary.put(tmp_path / "a.bin", RAW)
    assert (tmp_path / "a.bin").read_bytes() == RAW
    assert binary.get(tmp_path / "a.bin") == RAW
    text = texts(0)
    text.put(tmp_path / "a.txt", "é\nline\n")
    assert (tmp_path / "a.txt").read_text() == "é\nline\n"
    assert text.get(tmp_path / "a.txt") == "é\nline\n"
    assert not list(tmp_path.glob("*.tmp"))  # the renames left no temporary file


def test_a_file_that_does_not_decode_or_is_missing_is_a_miss(tmp_path: Path) -> None:
    def strict(data: bytes) -> bytes:
        if not data.startswith(b"ok"):
            raise ValueError("foreign")
        return data

    cache = DiskCache(4, bytes, strict, binary=True)
    (tmp_path / "foreign.bin").write_bytes(RAW)
    assert cache.get(tmp_path / "foreign.bin") is None
    assert cache.get(tmp_path / "missing.bin") is None
    assert texts(0).get(tmp_path / "foreign.bin") is None  # not UTF-8: a miss as well


def test_prune_keeps_the_newest_of_a_suffix(tmp_path: Path) -> None:
    for i, name in enumerate(["a.ref", "b.ref", "c.ref", "d.json", "e.json"]):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (i, i))
    prune(tmp_path, 2, ".ref")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.ref", "c.ref", "d.json", "e.json"]
    prune(tmp_path, 0, ".json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.ref", "c.ref"]
