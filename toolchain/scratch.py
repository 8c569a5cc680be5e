"""Scratch directories named after the process that made them, so a process killed in the middle
of a verification (SIGKILL, a Celery hard time limit, an OOM kill) leaves nothing behind for
long: `sweep` removes every such directory whose process is gone, and workers run it when they
start.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "armgym-"
_OWNED = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")


def make(kind: str) -> Path:
    """A new private directory, e.g. /tmp/armgym-<pid>-<kind>-XXXX."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{kind}-"))


def alive(pid: int) -> bool:
    """Whether process `pid` exists (someone else's counts: it is not ours to sweep)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(root: Path | None = None) -> int:
    """Remove the scratch directories of processes that no longer exist; how many."""
    base = Path(root or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for entry in entries:
        m = _OWNED.match(entry.name)
        if m and entry.is_dir(follow_symlinks=False) and not alive(int(m.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed
