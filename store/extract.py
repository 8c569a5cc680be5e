"""From a verdict's JSON to the attempt's first-class columns and its gate rows.

The figures are read where the verifier puts them (toolchain.verdict.performance_figures, the
reward under the default profile by toolchain.reward.reward_of); a column is NULL where the
verdict has no such figure (the attempt failed before it was measured). The full JSON is kept
next to the columns either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from toolchain.reward import reward_of
from toolchain.verdict import performance_figures


def jsonable(value: Any) -> Any:
    """JSON that PostgreSQL's JSONB and strict JSON encoders accept: non-finite floats become
    strings ("nan", "inf", "-inf") and NUL characters are replaced."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {str(k).replace("\x00", "\ufffd"): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def columns(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """The attempt columns a verdict fills."""
    timings = verdict.get("timings") or {}
    kind = verdict.get("error_kind")
    figures = performance_figures(verdict)
    found = verdict.get("reward")
    components = found.get("components") if isinstance(found, Mapping) else None
    compiler = figures["baseline_compiler"]
    return {
        "passed": bool(verdict.get("passed")),
        "error_kind": str(kind) if kind else None,
        "message": str(verdict.get("message") or "")[:4000],
        "reward": reward_of(verdict),
        "reward_components": dict(components) if isinstance(components, Mapping)
        and components else None,
        "speedup": figures["speedup"],
        "cycles": figures["cycles"],
        "baseline_cycles": figures["baseline_cycles"],
        "listing_cycles": figures["listing_cycles"],
        "baseline_compiler": compiler[:40] if compiler else None,
        "verify_seconds": sum(v for v in timings.values() if _number(v) is not None) or None,
        "verifier_version": verdict.get("verifier_version"),
        "sandbox": verdict.get("sandbox"),
        "versions": verdict.get("versions") or None,
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def gate_rows(verdict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per gate, in pipeline order, with its time from the verdict's `timings`."""
    timings = verdict.get("timings") or {}
    rows = []
    for position, gate in enumerate(verdict.get("gates") or []):
        rows.append({
            "position": position,
            "name": str(gate.get("name"))[:40],
            "passed": bool(gate.get("passed")),
            "error_kind": gate.get("error_kind"),
            "message": str(gate.get("message") or "")[:4000],
            "seconds": _number(timings.get(gate.get("name"))),
            "details": gate.get("details") or None,
        })
    return rows
