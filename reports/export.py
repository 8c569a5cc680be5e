"""Attempts as a table (CSV or Parquet) for pandas, DuckDB or a spreadsheet: one row per attempt,
the store's columns plus the reward components and every profile's reward flattened out of the
verdict; the verdict itself and the assembly on request."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from store.reads import ATTEMPT_FIELDS

COMPONENTS = ("format", "syntax", "correctness", "speedup", "speedup_withheld")
PROFILES = ("additive", "binary_plus_speedup")
_TYPES: dict[str, pa.DataType] = {
    "step": pa.int64(), "seed": pa.int64(), "tries": pa.int64(), "completion": pa.bool_(),
    "passed": pa.bool_(), "reward": pa.float64(), "speedup": pa.float64(),
    "cycles": pa.float64(), "baseline_cycles": pa.float64(), "listing_cycles": pa.float64(),
    "verify_seconds": pa.float64(), "created_at": pa.timestamp("us", tz="UTC"),
    "started_at": pa.timestamp("us", tz="UTC"), "finished_at": pa.timestamp("us", tz="UTC"),
    **{f"reward_{c}": pa.float64() for c in COMPONENTS[:-1]},
    "reward_speedup_withheld": pa.bool_(),
    **{f"reward_{p}": pa.float64() for p in PROFILES},
}
# JSON objects become JSON text in both formats.
_NESTED = ("meta", "reward_components", "verdict")


def columns(with_verdict: bool, with_assembly: bool) -> list[str]:
    base = ["attempt_id", *(f for f in ATTEMPT_FIELDS if f != "reward_components")]
    extra = [f"reward_{c}" for c in COMPONENTS] + [f"reward_{p}" for p in PROFILES]
    return base + extra + (["verdict"] if with_verdict else []) + \
        (["assembly"] if with_assembly else [])


def flatten(attempt: dict[str, Any], names: list[str]) -> dict[str, Any]:
    reward = (attempt.get("verdict") or {}).get("reward") or {}
    components = reward.get("components") or attempt.get("reward_components") or {}
    profiles = reward.get("profiles") or {}
    row = {name: attempt.get(name) for name in names}
    row.update({f"reward_{c}": components.get(c) for c in COMPONENTS})
    row.update({f"reward_{p}": profiles.get(p) for p in PROFILES})
    for name in _NESTED:
        if name in row and row[name] is not None:
            row[name] = json.dumps(row[name], sort_keys=True, default=str)
    return row


def write_csv(rows: Iterable[dict[str, Any]], names: list[str], path: Path) -> int:
    def cell(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    count = 0
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: cell(v) for k, v in row.items()})
            count += 1
    return count


def write_parquet(rows: Iterable[dict[str, Any]], names: list[str], path: Path) -> int:
    schema = pa.schema([(n, _TYPES.get(n, pa.string())) for n in names])
    table = pa.Table.from_pylist(list(rows), schema=schema)
    pq.write_table(table, path)
    return table.num_rows


WRITERS: dict[str, Callable[[Iterable[dict[str, Any]], list[str], Path], int]] = {
    "csv": write_csv, "parquet": write_parquet}


def export(attempts: Iterable[dict[str, Any]], path: Path, fmt: str | None = None,
           with_verdict: bool = False, with_assembly: bool = False) -> int:
    """Write the attempts to `path` (format from `fmt` or the suffix); returns the row count."""
    kind = fmt or path.suffix.lstrip(".").lower()
    if kind not in WRITERS:
        raise ValueError(f"unknown export format {kind!r}: csv or parquet")
    names = columns(with_verdict, with_assembly)
    path.parent.mkdir(parents=True, exist_ok=True)
    return WRITERS[kind]((flatten(a, names) for a in attempts), names, path)
