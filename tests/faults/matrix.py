"""The fault matrix in the terminal summary (tests/conftest.py calls `summary`)."""

from __future__ import annotations

from typing import Any

MATRIX_PROPERTY = "fault_matrix_row"
COLUMNS = ("fault", "attempts", "stored", "done", "duplicates", "infra_error", "reruns",
           "recover_s", "total_s")


def summary(terminalreporter: Any) -> None:
    rows = [value for kind in ("passed", "failed") for rep in terminalreporter.stats.get(kind, [])
            if getattr(rep, "when", "") == "call"
            for name, value in getattr(rep, "user_properties", []) if name == MATRIX_PROPERTY]
    if not rows:
        return
    terminalreporter.section("fault matrix")
    terminalreporter.write_line(" | ".join(COLUMNS))
    for row in rows:
        terminalreporter.write_line(" | ".join(str(row.get(c, "")) for c in COLUMNS))
