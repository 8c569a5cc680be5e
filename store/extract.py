"""From a verdict's JSON to the attempt's first-class columns and its gate rows.

The JSON is read as the verifier's typed `Verdict` (toolchain.verdict): the figures are its
fields (the reward's components, the performance gate's cycles, speedup and baseline), the
reward the default profile's by toolchain.reward.reward_of. A column is NULL where the verdict
has no such figure (the attempt failed before it was measured). The full JSON is kept next to
the columns either way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from toolchain.reward import reward_of
from toolchain.verdict import Verdict


def jsonable(value: Any, floats: bool = True) -> Any:
    """JSON that PostgreSQL's JSONB and strict JSON encoders accept: non-finite floats become
    strings ("nan", "inf", "-inf"; not with `floats` false) and NUL characters are replaced."""
    if floats and isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {str(k).replace("\x00", "\ufffd"): jsonable(v, floats)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, floats) for v in value]
    return value


def stored_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`jsonable(doc)` as a plain JSON copy, in C (json's encoder and decoder) when there is
    nothing to replace, as in nearly every verdict; the walk in Python only otherwise."""
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError):  # a non-finite float, or a value json cannot encode
        return jsonable(doc)  # type: ignore[no-any-return]
    return jsonable(doc) if "\\u0000" in text else json.loads(text)  # type: ignore[no-any-return]


def columns(verdict: Verdict | Mapping[str, Any]) -> dict[str, Any]:
    """The attempt columns a verdict fills, their text free of NUL characters as they are
    when read from the verdict's stored JSON (jsonable)."""
    typed = Verdict.load(verdict)
    if typed is None:
        raise ValueError("not a verdict: " + str(verdict)[:200])
    perf = typed.performance
    baseline = perf.baseline if perf else None
    compiler = baseline.compiler if baseline else None
    found = {
        "passed": typed.passed,
        "error_kind": typed.error_kind.value if typed.error_kind else None,
        "message": typed.message[:4000],
        "reward": reward_of(typed),
        "reward_components": asdict(typed.reward.components) if typed.reward else None,
        "speedup": perf.speedup if perf else None,
        "cycles": perf.cycles if perf else None,
        "baseline_cycles": baseline.cycles if baseline else None,
        "listing_cycles": perf.listing_cycles if perf else None,
        "baseline_compiler": compiler[:40] if compiler else None,
        "verify_seconds": sum(typed.timings.values()) or None,
        "verifier_version": typed.verifier_version,
        "sandbox": typed.sandbox,
        "versions": typed.versions or None,
    }
    return {k: jsonable(v, floats=False) for k, v in found.items()}


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


# The attempt columns a verdict fills, by name (those of a row still without one are all NULL).
COLUMNS = tuple(columns(Verdict(variant_id="", seed=0, passed=False, gates=[],
                                verifier_version="")))
