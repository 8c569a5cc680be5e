"""From a verdict's JSON to the attempt's first-class columns and its gate rows.

The verdict is the verifier's record and grows (cycle figures, speedup and reward components are
being added under `Verdict.extra`); this module looks for each figure in the places it may live
and leaves the column NULL when it is absent, so the store never depends on the verifier's exact
layout. The full JSON is kept next to the columns either way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

# Where a figure may sit: top level, inside one of these sub-objects, or in the details of the
# gate of that name.
_SECTIONS = ("performance", "reward", "cycles", "cost", "speed")


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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _places(verdict: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    yield verdict
    for name in _SECTIONS:
        section = verdict.get(name)
        if isinstance(section, Mapping):
            yield section
    for gate in verdict.get("gates") or []:
        if isinstance(gate, Mapping) and gate.get("name") in _SECTIONS:
            details = gate.get("details")
            if isinstance(details, Mapping):
                yield details


def _get(place: Mapping[str, Any], path: str) -> Any:
    """`place["a"]["b"]` for the path "a.b"; None where anything is missing."""
    for part in path.split("."):
        if not isinstance(place, Mapping):
            return None
        place = place.get(part)  # type: ignore[assignment]
    return place


def find_number(verdict: Mapping[str, Any], *paths: str) -> float | None:
    """The first finite number at any of `paths` in any of the places a figure may live."""
    for place in _places(verdict):
        for path in paths:
            found = _number(_get(place, path))
            if found is not None:
                return found
    return None


def _find_text(verdict: Mapping[str, Any], *paths: str) -> str | None:
    for place in _places(verdict):
        for path in paths:
            value = _get(place, path)
            if isinstance(value, str):
                return value[:40]
    return None


# The profile whose value goes into the `reward` column when a verdict reports several: the
# original's additive one (format + syntax + correctness + speedup term).
DEFAULT_PROFILE = "additive"


def reward(verdict: Mapping[str, Any]) -> tuple[float | None, dict[str, Any] | None]:
    """(total, components). `reward` may be a number (components then in `reward_components`)
    or an object with `components` and a `total`, or with `profiles` (the total is then the
    profile the object names in `profile`, else the additive one, else the first)."""
    value = verdict.get("reward")
    components = verdict.get("reward_components")
    if not isinstance(value, Mapping):
        total = _number(value)
    else:
        inner = value.get("components")
        components = inner if isinstance(inner, Mapping) else components or {
            k: v for k, v in value.items() if _number(v) is not None and k not in ("total", "value")
        }
        total = _number(value.get("total", value.get("value")))
        profiles = value.get("profiles")
        if total is None and isinstance(profiles, Mapping) and profiles:
            name = value.get("profile") or (DEFAULT_PROFILE if DEFAULT_PROFILE in profiles
                                            else next(iter(profiles)))
            total = _number(profiles.get(name))
    return total, (dict(components) if isinstance(components, Mapping) and components else None)


def columns(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """The attempt columns a verdict fills."""
    total, components = reward(verdict)
    timings = verdict.get("timings") or {}
    kind = verdict.get("error_kind")
    return {
        "passed": bool(verdict.get("passed")),
        "error_kind": str(kind) if kind else None,
        "message": str(verdict.get("message") or "")[:4000],
        "reward": total,
        "reward_components": components,
        "speedup": find_number(verdict, "speedup"),
        "cycles": find_number(verdict, "cycles", "candidate_cycles", "executed_cycles"),
        "baseline_cycles": find_number(verdict, "baseline_cycles", "baseline.cycles"),
        "listing_cycles": find_number(verdict, "listing_cycles", "whole_listing_cycles",
                                      "whole_listing.total_cycles"),
        "baseline_compiler": _find_text(verdict, "baseline_compiler", "baseline.compiler"),
        "verify_seconds": sum(v for v in timings.values() if _number(v) is not None) or None,
        "verifier_version": verdict.get("verifier_version"),
        "sandbox": verdict.get("sandbox"),
        "versions": verdict.get("versions") or None,
    }


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
