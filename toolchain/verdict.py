"""Gate results and the verdict: the one record a verification produces, as one typed model.

`Verdict` is a pydantic model whose JSON is the wire form everywhere: what a worker stores in
PostgreSQL, what the verdict cache keeps, what the API serves (api/schemas.py builds on it) and
what the store's columns are read from (`Verdict.load` of the stored JSON). The reward
(components and every profile) is a typed field; each gate's details are its own model
(DETAILS), and the performance gate's figures (cycles, speedup, the baseline) and the
cross-check's are lenient typed views of those details, read in one place (`performance`,
`cross_check`) instead of searched for by each reader.

Everything but `timings` is a pure function of (variant, assembly, seed, versions), so a verdict
serialises to the same bytes every time; wall-clock figures live in their own field. Verdicts
stored by earlier versions load: every field a verdict of any version carried is optional where
some version lacked it, and keys this model does not know are kept as they were.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.dataclasses import dataclass

from .errors import ErrorKind, GateName

# ------------------------------------------------------------------ gate details

Number = int | float  # as the gate wrote it: an int stays an int in the JSON


def _given(model: BaseModel, handler: Any) -> dict[str, Any]:
    out = handler(model)
    given = model.model_fields_set | set(model.__pydantic_extra__ or {})
    return {k: v for k, v in out.items() if k in given}


class GateDetails(BaseModel):
    """What a gate reports beside its outcome: one model per gate (DETAILS), every field
    optional because a gate reports different ones when it passes and when it fails. The JSON
    holds exactly the fields the gate gave (none of the absent ones as null), in the order it
    gave them, so the wire form is what the gate wrote; strict, so a figure is never coerced
    (an int stays an int); keys the model does not know are kept."""

    model_config = ConfigDict(extra="allow", strict=True)

    @model_serializer(mode="wrap")
    def _only_given(self, handler: Any):  # unannotated: the JSON schema stays the model's
        return _given(self, handler)


class NoDetails(GateDetails):
    """The details of a gate that reports nothing but its outcome and message (input, format,
    variant, infra)."""


class Unread(GateDetails):
    """Details that do not read as their gate's model (a verdict an earlier verifier stored
    with other figures, or non-finite figures the store wrote as strings): kept as they were."""


class Diagnostic(GateDetails):
    """One diagnostic: the submission's line and column (GNU as's, or the directive's)."""

    line: int
    column: int
    directive: str | None = Field(default=None, description="the forbidden directive")
    message: str


class DirectivesDetails(GateDetails):
    """The forbidden directives found (the first few), and the first's name and line."""

    errors: list[Diagnostic] | None = None
    directive: str | None = None
    line: int | None = None


class SyntaxDetails(GateDetails):
    """GNU as's outcome: the object's size when it assembled, its errors when it did not, and
    its warnings (when there were any) either way."""

    object_bytes: int | None = None
    errors: list[Diagnostic] | None = None
    warnings: list[Diagnostic] | None = None


class ObjectDetails(GateDetails):
    """The assembled object: its sizes, sections and library calls when it passed; every
    problem found (the first few) when it did not."""

    object_bytes: int | None = None
    code_bytes: int | None = None
    alloc_bytes: int | None = None
    sections: list[str] | None = None
    calls: list[str] | None = Field(default=None, description="math functions it calls")
    problems: list[str] | None = None


class CorrectnessDetails(GateDetails):
    """The tests run when they all passed; else the test that failed and what the finding
    says (memory: the buffer, side and distance; wrong output: the output, index, expected and
    got values as repr, the bound and whether arithmetic was exact; timeout: the budget;
    crash: the signal)."""

    test: int | None = None
    test_name: str | None = None
    buffer: str | None = None
    side: Literal["below", "above"] | None = None
    distance: int | None = None
    output: str | None = None
    index: int | None = None
    expected: str | None = None
    got: str | None = None
    bound: Number | None = None
    exact: bool | None = None
    budget_s: Number | None = None
    signal: str | None = None
    tests: int | None = Field(default=None, description="how many tests passed (all)")


class CompilerCycles(GateDetails):
    """One compiler baseline's cycles on the timing test."""

    compiler: str | None = None
    opt: str | None = None
    cycles: Number | None = None
    data_dependent: bool | None = None


class PerformanceDetails(GateDetails):
    """The timing test and, when measured, the candidate's cycles, its speedup over the faster
    baseline (`baseline`; both compilers' in `baselines`), the measurement, the branch
    predictor's share, the cost model and the whole-listing figure; `speedup_withheld` is the
    cross-check's."""

    timing_test: int | None = None
    cycles: Number | None = None
    speedup: Number | None = None
    baseline: CompilerCycles | None = None
    baselines: dict[str, CompilerCycles] | None = None
    measurement: dict[str, Any] | None = None
    branch_prediction: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    whole_listing: dict[str, Any] | None = None
    speedup_withheld: bool | None = None


class CrossCheckDetails(GateDetails):
    """OSACA against llvm-mca on the executed work: both estimates, their ratio and the IPC,
    the block class and its calibrated bands."""

    osaca_cycles: Number | None = None
    mca_cycles: Number | None = None
    ratio: Number | None = None
    block_class: str | None = None
    ratio_band: list[Number] | None = None
    instructions: int | None = None
    ipc: Number | None = None
    ipc_band: list[Number] | None = None
    osaca_fallbacks: int | None = None


# Each gate's details model (by GateName value); any other name's are NoDetails.
DETAILS: dict[str, type[GateDetails]] = {
    GateName.directives: DirectivesDetails, GateName.syntax: SyntaxDetails,
    GateName.object: ObjectDetails, GateName.correctness: CorrectnessDetails,
    GateName.performance: PerformanceDetails, GateName.cross_check: CrossCheckDetails}
AnyDetails = (DirectivesDetails | SyntaxDetails | ObjectDetails | CorrectnessDetails
              | PerformanceDetails | CrossCheckDetails | NoDetails | Unread)


def details_of(name: str, value: Any) -> GateDetails:
    """`value` as gate `name`'s details model; Unread when it does not read as one."""
    if isinstance(value, GateDetails):
        return value
    model = DETAILS.get(str(name), NoDetails)
    try:
        return model.model_validate(value or {})
    except ValidationError:
        return Unread.model_validate(value)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # None given is read as the gate's model, empty: never null


@dataclass
class GateResult:
    """One gate's outcome. In JSON: name, passed, error_kind, message, details (its time goes
    to the verdict's `timings`). `details` is the gate's model (DETAILS); a mapping given for
    it is read as that model."""

    name: str
    passed: bool
    error_kind: ErrorKind | None = None
    message: str = ""
    details: AnyDetails = Field(default=None, validate_default=True,  # type: ignore[assignment]
                                json_schema_extra=_no_default)
    seconds: float = Field(default=0.0, exclude=True)

    @field_validator("details", mode="before")
    @classmethod
    def _typed(cls, value: Any, info: ValidationInfo) -> GateDetails:
        return details_of(info.data.get("name", ""), value)  # none given: the gate's, empty

    @property
    def kind(self) -> ErrorKind | None:
        return self.error_kind

    @field_serializer("error_kind")
    def _kind(self, kind: ErrorKind | None) -> str | None:
        return kind.value if kind else None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed,
                "error_kind": self.error_kind.value if self.error_kind else None,
                "message": self.message, "details": self.details.model_dump()}

    @classmethod
    def fail(cls, name: str, kind: ErrorKind, message: str,
             details: GateDetails | None = None, **fields: Any) -> GateResult:
        """A failed gate: its details as a model, or as `fields` read into the gate's model."""
        return cls(name, False, kind, message, details if details is not None else fields)


# ------------------------------------------------------------------ the reward


@dataclass(frozen=True)
class Components:
    """The reward's components (toolchain.reward): None where not applicable or withheld."""

    format: float | None
    syntax: float
    correctness: float
    speedup: float | None
    speedup_withheld: bool = False


class Reward(BaseModel):
    """The reward attached to a verdict: its components and the reward under every profile."""

    components: Components
    profiles: dict[str, float | None]


# ------------------------------------------- typed views of the measuring gates


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class _View(BaseModel):
    """A lenient typed view of a gate's details: a figure that is absent, not a number or not
    finite reads as None (the store writes non-finite floats as strings)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return {}
        numeric = {n for n, f in cls.model_fields.items() if f.annotation == float | None}
        return {k: (_finite(v) if k in numeric else v) for k, v in data.items()}


class Baseline(_View):
    """The faster compiler baseline the speedup is measured against."""

    compiler: str | None = None
    opt: str | None = None
    cycles: float | None = None
    data_dependent: bool | None = None

    @field_validator("compiler", "opt", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str | None:
        return value if isinstance(value, str) else None

    @field_validator("data_dependent", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> bool | None:
        return value if isinstance(value, bool) else None


class Performance(_View):
    """The performance gate's figures (None where it failed before measuring them)."""

    passed: bool = False
    timing_test: int | None = None
    cycles: float | None = None
    speedup: float | None = None
    speedup_withheld: bool | None = None
    baseline: Baseline = Baseline()
    listing_cycles: float | None = Field(default=None, description="llvm-mca's whole-listing "
                                         "figure (the original verifier's; decides nothing)")

    @field_validator("baseline", mode="before")
    @classmethod
    def _baseline(cls, value: Any) -> Any:
        return value if isinstance(value, Mapping) else {}

    @field_validator("timing_test", mode="before")
    @classmethod
    def _test(cls, value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class CrossCheck(_View):
    """The cross-check's figures: OSACA against llvm-mca, IPC, and the calibrated bands."""

    passed: bool = False
    osaca_cycles: float | None = None
    mca_cycles: float | None = None
    ratio: float | None = None
    ipc: float | None = None
    block_class: str | None = None
    ratio_band: list[float] | None = None
    ipc_band: list[float] | None = None

    @field_validator("block_class", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str | None:
        return value if isinstance(value, str) else None

    @field_validator("ratio_band", "ipc_band", mode="before")
    @classmethod
    def _band(cls, value: Any) -> list[float] | None:
        ok = isinstance(value, list) and len(value) == 2 and all(
            _finite(v) is not None for v in value)
        return [float(v) for v in value] if ok else None


# ------------------------------------------------------------------ the verdict


def _timings_schema(schema: dict[str, Any]) -> None:
    schema["properties"]["timings"] = {
        "type": "object", "additionalProperties": {"type": "number"},
        "description": "seconds per gate, by name (wall clock: not part of the canonical form)"}


class Verdict(BaseModel):
    """One verification's record (see the module docstring)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_timings_schema)
    variant_id: str
    seed: int
    passed: bool
    error_kind: ErrorKind | None = None
    message: str = ""
    gates: list[GateResult]
    versions: dict[str, str] = Field(default_factory=dict)
    verifier_version: str
    sandbox: str = "unknown"
    reward: Reward | None = Field(default=None, description="null for infra_error (no reward: "
                                  "drop, don't score)")
    cached: bool = Field(default=False, description="served from the verdict cache (like "
                         "timings, not part of the canonical form)")

    @model_validator(mode="before")
    @classmethod
    def _timings_into_gates(cls, data: Any) -> Any:
        """The JSON's `timings` go back into the gates (the inverse of the serializer)."""
        if not isinstance(data, Mapping) or "timings" not in data:
            return data
        timings = data.get("timings") or {}
        out = {k: v for k, v in data.items() if k != "timings"}
        out["gates"] = [g if not isinstance(g, Mapping) else
                        {**g, "seconds": float(timings.get(g.get("name"), 0.0) or 0.0)}
                        for g in data.get("gates") or []]
        return out

    @field_validator("reward", mode="before")
    @classmethod
    def _reward(cls, value: Any) -> Any:
        # verdicts before the reward profiles had no reward object
        return value if isinstance(value, Mapping) and "components" in value else None

    @field_serializer("error_kind")
    def _kind(self, kind: ErrorKind | None) -> str | None:
        return kind.value if kind else None

    @model_serializer(mode="wrap")
    def _with_timings(self, handler: Any):  # unannotated: the JSON schema stays the model's
        out = handler(self)
        out["timings"] = self.timings
        if not self.cached:
            out.pop("cached", None)
        return out

    @property
    def timings(self) -> dict[str, float]:
        return {g.name: round(g.seconds, 6) for g in self.gates}

    def gate(self, name: GateName) -> GateResult | None:
        return next((g for g in self.gates if g.name == name), None)

    @property
    def performance(self) -> Performance | None:
        """The performance gate's figures; None when it did not run."""
        gate = self.gate(GateName.performance)
        if gate is None:
            return None
        details = gate.details.model_dump()
        listing = details.get("whole_listing")
        return Performance.model_validate({
            **details, "passed": gate.passed,
            "listing_cycles": listing.get("total_cycles") if isinstance(listing, Mapping)
            else None})

    @property
    def cross_check(self) -> CrossCheck | None:
        """The cross-check's figures; None when it did not run."""
        gate = self.gate(GateName.cross_check)
        return None if gate is None else CrossCheck.model_validate(
            {**gate.details.model_dump(), "passed": gate.passed})

    def to_json(self, with_timings: bool = True) -> dict[str, Any]:
        out = self.model_dump()
        if not with_timings:
            out.pop("timings")
            out.pop("cached", None)
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Verdict:
        """The inverse of to_json (timings go back into the gates)."""
        return cls.model_validate(doc)

    @classmethod
    def load(cls, doc: Verdict | Mapping[str, Any] | None) -> Verdict | None:
        """A verdict as stored or served, typed; None for no verdict or a document that is
        not one (a reader's figures are then all None, never a guess)."""
        if doc is None or isinstance(doc, Verdict):
            return doc
        try:
            return cls.model_validate(doc)
        except ValidationError:
            return None

    def canonical(self) -> str:
        """The deterministic part, as the bytes that identical inputs must reproduce."""
        return json.dumps(self.to_json(with_timings=False), sort_keys=True, separators=(",", ":"))
