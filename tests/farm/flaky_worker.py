"""A Celery worker whose verifier fails once, as infrastructure, on each submission marked so:

    python tests/farm/flaky_worker.py DIR celery-worker-arguments...

An attempt whose text contains MARK gets an infra_error verdict the first time any pool process
verifies it (a file under DIR, created exclusively, remembers it across the pool), as a tool
that failed to start would give; every later try, and every other attempt, is verified for
real. What the tests see is the farm's handling of a real infra_error: the retry the worker
sends, the backoff, the second verification and the verdict stored once."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import workers.celery_app  # noqa: E402, F401 - loads the pipeline this patches
from toolchain.verdict import Verdict  # noqa: E402
from toolchain.verify import infra_verdict  # noqa: E402
from workers import pipeline  # noqa: E402

MARK = "// test: infra_error on the first try"


def main() -> None:
    seen, argv = Path(sys.argv[1]), sys.argv[2:]
    real = pipeline.verify

    def first_time(assembly: str) -> bool:
        try:
            fd = os.open(seen / hashlib.sha256(assembly.encode()).hexdigest(),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def flaky(variant_id: str, assembly: str, seed: int, **kwargs: Any) -> Verdict:
        if MARK in assembly and first_time(assembly):
            return infra_verdict(variant_id, seed, "the test's tool failed to start")
        return real(variant_id, assembly, seed, **kwargs)

    pipeline.verify = flaky  # type: ignore[assignment]
    from celery.bin.celery import main as celery

    sys.argv = ["celery", *argv]
    celery()


if __name__ == "__main__":
    main()
