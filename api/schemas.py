"""Every request and response body of the API, in one place: the routes import them, OpenAPI
documents them, and the fuzz test (tests/farm/test_fuzz.py) checks the answers against them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from store import keys
from toolchain.verdict import GateResult, Reward, Verdict

from .vocab import NO_NUL, STEP_RANGE, DType, Scope, SeedScope, Split, Template

SEED = Field(default=None, ge=0, lt=2**63, description="per-attempt seed (random when omitted)")
SEED_SCOPE_TEXT = ("'attempt' (the default): a seed of the attempt's own, the client's or one "
                   "derived from its content; 'group': the seed every attempt of the same run, "
                   "step and variant shares, derived from the deployment's secret (needs run_id "
                   "and step, and no seed)")
# A count or a figure as the SQL views give it: PostgreSQL and SQLite may differ int / float.
Number = int | float
# A timestamp from a view: PostgreSQL gives datetimes, SQLite the stored text; written as
# datetime.isoformat() writes it (what these routes answered before they had a model).
Stamp = Annotated[datetime | str, PlainSerializer(
    lambda v: v.isoformat() if isinstance(v, datetime) else v, when_used="json")]


# --------------------------------------------------------------------- errors


class Problem(BaseModel):
    detail: str = Field(description="what was wrong, in one sentence")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="request validation only: each problem's loc, msg and type")


# ---------------------------- the environment: /health, /tasks, /reset, /step


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    mode: Literal["embedded", "farm"]
    verifier_version: str
    python: str
    sandbox: str
    tools: dict[str, str]
    broker: dict[str, Any]
    database: dict[str, Any]
    queue: dict[str, Any]
    age_s: float = Field(description="how long ago this report was gathered: each API process "
                                     "checks every second in the background")


class TaskOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    variant_id: str
    template: str
    dtype: str
    params: dict[str, int]
    difficulty: int
    split: str
    signature: dict[str, Any]


class TasksOut(BaseModel):
    count: int
    tasks: list[TaskOut]


class BaselineOut(BaseModel):
    compiler: str
    opt: str
    toolchain: str
    flags: list[str]
    assembly: str
    cycles: float | None = Field(description="cycles under the cost model on the input an "
                                             "attempt with this seed is timed on (null when "
                                             "this API host cannot measure)")


class ResetIn(BaseModel):
    """What /reset takes as a JSON body (the query parameters are still read: the body wins)."""

    model_config = ConfigDict(extra="forbid")
    seed: int | None = Field(default=None, ge=0, lt=2**63,
                             description="picks the variant deterministically; also the seed "
                                         "baseline cycles are measured with")
    variant_id: str | None = Field(default=None, max_length=200)
    template: Template | None = None
    dtype: DType | None = None
    difficulty: int | None = Field(default=None, ge=1, le=3)
    split: Split | None = None


class ResetOut(TaskOut):
    seed: int
    c_source: str
    prototype: str
    baseline: BaselineOut | None
    baselines: list[BaselineOut]
    baseline_cycles: float | None = Field(description="the reference a candidate must beat: "
                                                      "the faster baseline's cycles")
    baseline_compiler: str | None
    reward: None = None
    done: bool = False


class StepIn(BaseModel):
    variant_id: str = Field(json_schema_extra=NO_NUL)
    assembly: str = Field(description="AArch64 assembly, or a completion with <assembly> tags "
                                      "when completion=true", json_schema_extra=NO_NUL)
    seed: int | None = SEED
    seed_scope: SeedScope = Field(default="attempt", description=SEED_SCOPE_TEXT)
    completion: bool = False
    idempotency_key: str | None = Field(default=None, max_length=200, json_schema_extra=NO_NUL)
    run_id: str | None = Field(default=None, max_length=200, json_schema_extra=NO_NUL)
    step: int | None = Field(default=None, **STEP_RANGE)
    model: str | None = Field(default=None, max_length=200, json_schema_extra=NO_NUL)


class ErrorOut(BaseModel):
    kind: str
    message: str


class VerdictOut(BaseModel):
    """The original environment's observation (reward under the chosen profile, speedup, cycles,
    baseline cycles, done, error) beside the verifier's verdict (toolchain.verdict.Verdict, as
    its JSON), whose reward object (components and every profile) is `reward_detail` here; plus
    the stored attempt's id."""

    model_config = ConfigDict(extra="allow")
    attempt_id: str
    variant_id: str
    seed: int
    reward: float | None = Field(description="under `profile`; null for infra_error")
    profile: str
    passed: bool
    speedup: float | None
    cycles: float | None
    baseline_cycles: float | None
    baseline_compiler: str | None
    error_kind: str | None
    error: ErrorOut | None
    done: bool
    reward_detail: Reward | None
    message: str
    gates: list[GateResult]
    versions: dict[str, str]
    verifier_version: str
    sandbox: str
    timings: dict[str, float] = {}


class PendingOut(BaseModel):
    attempt_id: str
    status: str
    detail: str


# ------------------------------------------------------------------ baselines


class StoredBaseline(BaseModel):
    compiler: str
    opt: str
    toolchain: str
    toolchain_key: str = Field(description="compiler version and flags, hashed: the row's key")
    flags: list[str]
    assembly: str
    cycles: float | None = Field(description="cycles under the cost model; null until a worker "
                                             "measured it, and for a data-dependent baseline")
    data_dependent: bool | None
    cost_model: str | None
    built_at: datetime
    measured_at: datetime | None


class VariantBaselines(BaseModel):
    variant_id: str
    prototype: str
    c_source: str
    baselines: list[StoredBaseline]


# ------------------------------------------------------------------- attempts


class AttemptOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    attempt_id: str
    status: str
    variant_id: str
    idempotency_key: str | None = None
    run_id: str | None = None
    step: int | None = None
    model: str | None = None
    seed: int
    created_at: datetime
    finished_at: datetime | None = None
    worker: str | None = None
    passed: bool | None = None
    error_kind: str | None = None
    reward: float | None = None
    speedup: float | None = None
    cycles: float | None = None
    verdict: Verdict | None = None


class HistoryOut(BaseModel):
    attempts: list[AttemptOut]
    next_cursor: str | None


# -------------------------------------------------------------------- batches


class AttemptIn(BaseModel):
    variant_id: str = Field(json_schema_extra=NO_NUL)
    assembly: str = Field(json_schema_extra=NO_NUL)
    idempotency_key: str | None = Field(
        default=None, max_length=200, json_schema_extra=NO_NUL,
        description="the client's key; resending it (with this API key) returns the existing "
                    "attempt instead of creating another")
    seed: int | None = SEED
    seed_scope: SeedScope | None = Field(default=None,
                                         description="overrides the batch's seed_scope")
    completion: bool = False
    step: int | None = Field(default=None, description="overrides the batch's step",
                             **STEP_RANGE)
    meta: dict[str, Any] | None = Field(default=None, description="stored with the attempt; "
                                        "any JSON without NUL characters")


class BatchIn(BaseModel):
    run_id: str | None = Field(default=None, max_length=200, json_schema_extra=NO_NUL)
    step: int | None = Field(default=None, **STEP_RANGE)
    model: str | None = Field(default=None, max_length=200, json_schema_extra=NO_NUL)
    idempotency_key: str | None = Field(
        default=None, max_length=200, json_schema_extra=NO_NUL,
        description="resending a batch with this key returns the first batch unchanged")
    seed_scope: SeedScope = Field(default="attempt", description=SEED_SCOPE_TEXT)
    attempts: list[AttemptIn] = Field(min_length=1)


class Accepted(BaseModel):
    position: int
    attempt_id: str
    idempotency_key: str | None


class BatchAccepted(BaseModel):
    batch_id: str
    total: int
    created: int = Field(description="attempts this request created and queued")
    existing: int = Field(description="attempts answered by earlier ones (same keys)")
    batch_reused: bool
    attempts: list[Accepted]
    results: str
    stream: str


class BatchOut(BaseModel):
    batch_id: str
    idempotency_key: str | None
    run_id: str | None
    step: int | None
    model: str | None
    created_at: datetime
    total: int
    done: int
    queued: int
    running: int
    passed: int
    failed: int
    infra_errors: int
    complete: bool
    results: list[AttemptOut] | None = None


# ----------------------------------------------------------------------- keys


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(default=list(keys.DEFAULT_SCOPES))


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime | None = None
    revoked_at: datetime | None = None


class NewKeyOut(KeyOut):
    key: str = Field(description="the key itself; shown only now, stored only as a hash")


# ------------------------------------------------------------------- OpenRLHF


class RewardIn(BaseModel):
    query: list[str] = Field(description="prompt + response, as OpenRLHF decodes them")
    prompts: list[str] | None = Field(default=None, description="the prompts, to cut off")
    labels: list[str] | None = Field(default=None,
                                     description="variant ids (--data.label_key)")


class RewardOut(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


# --------------------------------------------------------------------------------- best kernels


class BestKernel(BaseModel):
    """A row of the view variant_best: a variant's best verified attempt, and who found it."""

    model_config = ConfigDict(extra="allow")
    variant_id: str
    attempt_id: str
    speedup: Number | None
    cycles: Number | None
    reward: Number | None
    run_id: str | None
    step: int | None
    model: str | None
    found_by: str
    found_at: Stamp | None
    assembly_sha256: str


class BestKernels(BaseModel):
    count: int
    kernels: list[BestKernel]


class BestKernelWithAssembly(BestKernel):
    assembly: str = Field(description="the submitted text, exactly")


# ------------------------------------------------------------------------------ runs and errors


class StepSummary(BaseModel):
    """A row of the view run_step_summary (rates and means leave infra errors out)."""

    model_config = ConfigDict(extra="allow")
    run_id: str | None
    step: int | None
    attempts: int
    done: Number | None
    infra_errors: Number | None
    passed: Number | None
    correctness_rate: Number | None
    mean_reward: Number | None
    best_speedup: Number | None
    first_submitted_at: Stamp | None
    last_finished_at: Stamp | None


class RunSummary(BaseModel):
    run_id: str
    steps: list[StepSummary]


class Outcome(BaseModel):
    outcome: str = Field(description="an error kind, or 'pass'")
    attempts: Number


class Outcomes(BaseModel):
    run_id: str | None
    outcomes: list[Outcome]


# -------------------------------------------------------------------------------- the dashboard


class ViewRows(BaseModel):
    """Rows of one of the documented example queries (docs/store.md), as the views give them."""

    model_config = ConfigDict(extra="allow")


class DashboardRunRow(ViewRows):
    run_id: str
    steps: int
    attempts: Number
    first_submitted_at: Stamp | None
    last_finished_at: Stamp | None


class DashboardRuns(BaseModel):
    runs: list[DashboardRunRow]


class DashboardRun(BaseModel):
    run_id: str
    steps: list[ViewRows]
    mix: list[ViewRows]


class DashboardBest(BaseModel):
    best: list[ViewRows]


class RecentBatch(BaseModel):
    model_config = ConfigDict(extra="allow")
    batch_id: str
    run_id: str | None
    step: int | None
    total: int
    created_at: Stamp
    done: Number | None


class DashboardBatches(BaseModel):
    batches: list[RecentBatch]
