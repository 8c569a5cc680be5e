"""Databases left by killed test sessions are dropped by the next session; a live session's
never are."""

from __future__ import annotations

import os
import subprocess
import sys

from store import admin

from .conftest import FARM, database_url, drop_stale_databases

pytestmark = FARM


def test_only_databases_of_dead_sessions_are_dropped() -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = database_url(f"armgym_test_{int(gone.stdout)}_stale")
    live = database_url(f"armgym_test_{os.getpid()}_live")
    for url in (dead, live):
        admin.create(url)
    try:
        dropped = drop_stale_databases()
        assert dead.rsplit("/", 1)[1] in dropped
        assert live.rsplit("/", 1)[1] not in dropped
        assert not admin.create(live)  # still there
        assert admin.create(dead)  # was gone
    finally:
        for url in (dead, live):
            admin.drop(url)
