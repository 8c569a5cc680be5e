"""workers.heap: what a pool process calls after each attempt really gives freed heap back."""

from __future__ import annotations

import os
import threading

from workers import heap


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_trim_returns_a_threads_freed_chunks_to_the_os() -> None:
    held: list[list[bytes]] = []

    def churn() -> None:  # a verification's tool runs allocate in threads (their own arenas)
        blocks = [os.urandom(8) * 250 for _ in range(60_000)]  # 2 kB each: malloc, not mmap
        held.append(blocks[::500])  # a few survivors pin the arena's top, as live data does
        del blocks

    thread = threading.Thread(target=churn)
    thread.start()
    thread.join()
    before = _rss_kib()
    assert heap.trim()  # glibc released something
    assert _rss_kib() < before - 16 * 1024  # and the process's RSS fell by more than 16 MiB
    assert held
