"""Gate results and the verdict: the one record a verification produces.

Everything but `timings` is a pure function of (variant, assembly, seed, versions), so a verdict
serialises to the same bytes every time; wall-clock figures live in their own field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorKind, GateName


@dataclass
class GateResult:
    name: str
    passed: bool
    kind: ErrorKind | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "error_kind": self.kind.value if self.kind else None,
            "message": self.message,
            "details": self.details,
        }

    @classmethod
    def fail(cls, name: str, kind: ErrorKind, message: str, **details: Any) -> GateResult:
        return cls(name, False, kind, message, details)


@dataclass
class Verdict:
    variant_id: str
    seed: int
    passed: bool
    error_kind: ErrorKind | None
    message: str
    gates: list[GateResult]
    versions: dict[str, str]
    verifier_version: str
    sandbox: str
    extra: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # served from the verdict cache (like timings: not part of canonical)

    @property
    def timings(self) -> dict[str, float]:
        return {g.name: round(g.seconds, 6) for g in self.gates}

    def to_json(self, with_timings: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "variant_id": self.variant_id,
            "seed": self.seed,
            "passed": self.passed,
            "error_kind": self.error_kind.value if self.error_kind else None,
            "message": self.message,
            "gates": [g.to_json() for g in self.gates],
            "versions": self.versions,
            "verifier_version": self.verifier_version,
            "sandbox": self.sandbox,
            **self.extra,
        }
        if with_timings:
            out["timings"] = self.timings
            if self.cached:
                out["cached"] = True
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Verdict:
        """The inverse of to_json (timings go back into the gates)."""
        timings = doc.get("timings") or {}
        gates = [GateResult(g["name"], g["passed"],
                            ErrorKind(g["error_kind"]) if g.get("error_kind") else None,
                            g.get("message", ""), g.get("details") or {},
                            float(timings.get(g["name"], 0.0))) for g in doc["gates"]]
        known = {"variant_id", "seed", "passed", "error_kind", "message", "gates", "versions",
                 "verifier_version", "sandbox", "timings", "cached"}
        return cls(
            variant_id=doc["variant_id"], seed=doc["seed"], passed=doc["passed"],
            error_kind=ErrorKind(doc["error_kind"]) if doc.get("error_kind") else None,
            message=doc["message"], gates=gates, versions=doc.get("versions") or {},
            verifier_version=doc["verifier_version"], sandbox=doc["sandbox"],
            extra={k: v for k, v in doc.items() if k not in known},
        )

    def canonical(self) -> str:
        """The deterministic part, as the bytes that identical inputs must reproduce."""
        return json.dumps(self.to_json(with_timings=False), sort_keys=True, separators=(",", ":"))


def performance_figures(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The performance gate's headline figures from a verdict's JSON (None where the gate did
    not measure): the candidate's cycles and speedup, the faster baseline's cycles and compiler,
    and llvm-mca's whole-listing figure."""
    gate = next((g for g in doc.get("gates") or [] if isinstance(g, Mapping)
                 and g.get("name") == GateName.performance), None)
    details = gate.get("details") if gate else None
    details = details if isinstance(details, Mapping) else {}
    baseline = details.get("baseline") if isinstance(details.get("baseline"), Mapping) else {}
    listing = details.get("whole_listing")
    listing = listing if isinstance(listing, Mapping) else {}
    return {"cycles": _number(details.get("cycles")), "speedup": _number(details.get("speedup")),
            "baseline_cycles": _number(baseline.get("cycles")),
            "baseline_compiler": baseline.get("compiler") if isinstance(
                baseline.get("compiler"), str) else None,
            "listing_cycles": _number(listing.get("total_cycles"))}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
