"""What verification builds once per machine and source, done ahead of the first attempt: the
static spawn helper and the execution guard (which fetches qemu's plugin header the first time).

`armgym prepare` and a starting worker both call `prepare`. A worker that skipped it would pay a
download and a compile inside its first attempts' time limits, and those attempts would end as
`infra_error`; a worker that cannot build the guard refuses to start instead of taking work."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import sandbox
from .errors import InfraError
from .execution import guard


@dataclass(frozen=True)
class Prepared:
    spawn_helper: str | None  # None: limits fall back to a Python preexec_fn (slower, equivalent)
    guard: Path


def prepare(cache_dir: Path) -> Prepared:
    """Build (or find) both; InfraError when the guard cannot be had, since no test runs
    without it."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)  # before a download there is no room for
        if not os.access(cache_dir, os.W_OK | os.X_OK):
            raise PermissionError(f"{cache_dir} is not writable")
        helper = sandbox.spawn_helper(cache_dir)
        return Prepared(helper, guard.prepare(cache_dir))
    except OSError as exc:  # an unwritable or missing cache directory
        raise InfraError(f"cannot prepare the verifier in {cache_dir}: {exc}") from exc
