"""A Celery worker whose tool launches are counted by the benchmark's recorder (bench.floor):

    python tests/farm/counted_worker.py LOG celery-worker-arguments...

Each launch's argv is appended to LOG as one JSON line, from whichever pool process made it (the
pool forks from this process after the recorder patched the toolchain), so a test can count
how often a tool really ran across the whole worker."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import workers.celery_app  # noqa: E402, F401 - the toolchain modules the recorder patches
from bench.floor import Launch, Recorder  # noqa: E402
from toolchain import verify  # noqa: E402, F401


class LoggingRecorder(Recorder):
    """The recorder, also appending each launch's argv to a file shared by the pool."""

    def __init__(self, blobs: Path, log: Path) -> None:
        super().__init__(blobs)
        self.log = log

    def _record(self, via: str, argv: Sequence[str], scratch: str, stdin: bytes | None,
                kwargs: dict[str, Any]) -> Launch:
        launch = super()._record(via, argv, scratch, stdin, kwargs)
        self.launches.clear()  # a long-lived worker keeps only the file
        line = json.dumps({"pid": os.getpid(), "argv": launch.argv}) + "\n"
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write per line: O_APPEND keeps lines whole
        finally:
            os.close(fd)
        return launch


def main() -> None:
    log, argv = Path(sys.argv[1]), sys.argv[2:]
    from celery.bin.celery import main as celery

    with tempfile.TemporaryDirectory(prefix="armgym-counted-") as blobs, \
            LoggingRecorder(Path(blobs), log):
        sys.argv = ["celery", *argv]
        celery()


if __name__ == "__main__":
    main()
