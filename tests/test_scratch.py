"""Scratch directories of killed verifications are swept by the next worker process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from toolchain import scratch


def test_sweep_removes_only_directories_of_processes_that_are_gone(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f"armgym-{dead}-verify-abc"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "kernel.s").write_text("ret\n")
    mine = tmp_path / f"armgym-{os.getpid()}-verify-xyz"
    mine.mkdir()
    unrelated = tmp_path / "armgym-cache"
    unrelated.mkdir()
    assert scratch.sweep(tmp_path) == 1
    assert not stale.exists() and mine.exists() and unrelated.exists()


def test_scratch_names_carry_the_pid() -> None:
    made = scratch.make("verify")
    try:
        assert made.name.startswith(f"armgym-{os.getpid()}-verify-")
    finally:
        made.rmdir()
