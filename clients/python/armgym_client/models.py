"""What goes to the farm (Submission) and what comes back (Result, StepResult, BestKernel).

The distinction trainers must not get wrong lives here: a `Result` whose attempt ended in
`infra_error` (the verifier failed, not the model) or never finished is *dropped*: its reward is
None, and it must be left out of the step rather than scored as 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INFRA_ERROR = "infra_error"
DEFAULT_PROFILE = "additive"
MAX_KEY = 200  # the API's limit on idempotency keys


@dataclass(frozen=True)
class Submission:
    """One attempt: a variant id and either a raw model completion (`completion=True`: the farm's
    format gate extracts the single `<assembly>` block and scores the format component) or bare
    assembly text (`completion=False`)."""

    variant_id: str
    text: str
    completion: bool = True
    idempotency_key: str | None = None
    seed: int | None = None
    meta: Mapping[str, Any] | None = None

    @classmethod
    def assembly(cls, variant_id: str, text: str, **kw: Any) -> Submission:
        return cls(variant_id, text, completion=False, **kw)

    def digest(self) -> str:
        """A short hash of what is verified, so a key never points at different content."""
        raw = f"{self.variant_id}\0{int(self.completion)}\0{self.text}".encode()
        return hashlib.sha256(raw).hexdigest()[:16]

    def body(self, key: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"variant_id": self.variant_id, "assembly": self.text,
                               "completion": self.completion}
        if key is not None:
            out["idempotency_key"] = key
        if self.seed is not None:
            out["seed"] = self.seed
        if self.meta is not None:
            out["meta"] = dict(self.meta)
        return out


SubmissionLike = Submission | Mapping[str, Any] | Sequence[str]


def as_submission(item: SubmissionLike, completion: bool = True) -> Submission:
    """Accept a Submission, a mapping with `variant_id` and `completion` or `assembly` text, or a
    `(variant_id, text)` pair (whose kind is the caller's `completion` default)."""
    if isinstance(item, Submission):
        return item
    if isinstance(item, Mapping):
        if "completion" in item and isinstance(item["completion"], str):
            text, is_completion = item["completion"], True
        elif "assembly" in item:  # the API's own shape: assembly text, completion flag
            text, is_completion = item["assembly"], bool(item.get("completion", False))
        else:
            raise ValueError("a submission mapping needs 'completion' or 'assembly' text")
        return Submission(item["variant_id"], text, is_completion,
                          item.get("idempotency_key"), item.get("seed"), item.get("meta"))
    variant_id, text = item
    return Submission(variant_id, text, completion)


def derive_key(run_id: str, step: int | None, index: int, sub: Submission) -> str:
    """`run/step/index/content-hash`: a retried request maps onto the attempts it created, while a
    run resumed from a checkpoint that regenerates the step with new text gets new attempts."""
    key = f"{run_id}/{'-' if step is None else step}/{index}/{sub.digest()}"
    if len(key) > MAX_KEY:
        key = "sha256/" + hashlib.sha256(key.encode()).hexdigest()
    return key


def batch_key(item_keys: Iterable[str]) -> str:
    return "batch/" + hashlib.sha256("\n".join(item_keys).encode()).hexdigest()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        and value == value and abs(value) != float("inf") else None


@dataclass(frozen=True)
class Verdict:
    """What the client reads of a verdict, typed: the fields of the farm's verdict model
    (toolchain.verdict.Verdict, the API's `Verdict` schema) that a trainer needs. The client
    may not import the server's code, so this is a reading of the same JSON;
    tests/test_client.py checks it reads what the server's model reads on stored verdicts."""

    passed: bool
    error_kind: str | None
    profiles: Mapping[str, float | None] | None  # the reward under every profile
    components: Mapping[str, Any] | None  # format, syntax, correctness, speedup, withheld
    cycles: float | None  # the performance gate's figures (None where it did not measure)
    speedup: float | None
    baseline_cycles: float | None
    baseline_compiler: str | None

    @classmethod
    def read(cls, doc: Mapping[str, Any]) -> Verdict:
        reward = doc.get("reward")
        reward = reward if isinstance(reward, Mapping) and "components" in reward else {}
        profiles, components = reward.get("profiles"), reward.get("components")
        perf = next((g for g in doc.get("gates") or [] if isinstance(g, Mapping)
                     and g.get("name") == "performance"), {})
        details = perf.get("details") if isinstance(perf.get("details"), Mapping) else {}
        base = details.get("baseline") if isinstance(details.get("baseline"), Mapping) else {}
        compiler = base.get("compiler")
        return cls(passed=bool(doc.get("passed")), error_kind=doc.get("error_kind"),
                   profiles=profiles if isinstance(profiles, Mapping) else None,
                   components=components if isinstance(components, Mapping) else None,
                   cycles=_number(details.get("cycles")), speedup=_number(details.get("speedup")),
                   baseline_cycles=_number(base.get("cycles")),
                   baseline_compiler=compiler if isinstance(compiler, str) else None)

    def reward(self, profile: str = DEFAULT_PROFILE) -> float | None:
        """The reward under `profile`; None for infra_error or a verdict without a reward.
        ValueError for a profile the farm does not report."""
        if self.error_kind == INFRA_ERROR or self.profiles is None:
            return None
        if profile not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise ValueError(f"unknown reward profile {profile!r}; the farm reports {known}")
        value = self.profiles[profile]
        return None if value is None else float(value)


def profile_reward(attempt: Mapping[str, Any], profile: str) -> float | None:
    """The attempt's reward under `profile` (from the verdict's reward profiles); None for
    infra_error and unfinished attempts."""
    if attempt.get("status") != "done" or attempt.get("error_kind") == INFRA_ERROR:
        return None
    verdict = Verdict.read(attempt.get("verdict") or {})
    if verdict.profiles is not None:
        return verdict.reward(profile)
    # Older verdicts carry one number; the stored column is the additive profile.
    column = attempt.get("reward")
    return float(column) if column is not None and profile == DEFAULT_PROFILE else None


@dataclass(frozen=True)
class Result:
    """One attempt's outcome as a trainer needs it."""

    attempt_id: str
    variant_id: str
    status: str
    passed: bool | None
    error_kind: str | None
    message: str | None
    reward: float | None
    speedup: float | None
    components: Mapping[str, Any] | None
    position: int | None = None
    idempotency_key: str | None = None
    verdict: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_attempt(cls, attempt: Mapping[str, Any], profile: str = DEFAULT_PROFILE) -> Result:
        verdict = attempt.get("verdict")
        components = Verdict.read(verdict).components if isinstance(verdict, Mapping) else None
        return cls(attempt_id=attempt["attempt_id"], variant_id=attempt["variant_id"],
                   status=attempt.get("status", "done"), passed=attempt.get("passed"),
                   error_kind=attempt.get("error_kind"), message=attempt.get("message"),
                   reward=profile_reward(attempt, profile), speedup=attempt.get("speedup"),
                   components=components or attempt.get("reward_components"),
                   position=attempt.get("position"),
                   idempotency_key=attempt.get("idempotency_key"), verdict=verdict)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def infra_error(self) -> bool:
        """The verifier failed (a tool, the sandbox, a lost worker), not the model."""
        return self.error_kind == INFRA_ERROR

    @property
    def dropped(self) -> bool:
        """Leave this attempt out of the step: infra_error or not finished in time."""
        return not self.done or self.infra_error

    @property
    def model_failure(self) -> bool:
        """The model's own failure (format, syntax, wrong output, ...): scored, usually low."""
        return self.done and not self.passed and not self.infra_error


@dataclass(frozen=True)
class StepResult:
    """Every result of one generation step, in submission order."""

    results: list[Result]
    batch_ids: list[str]
    run_id: str | None = None
    step: int | None = None

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.results)

    def __getitem__(self, index: int) -> Result:
        return self.results[index]

    @property
    def rewards(self) -> list[float | None]:
        """One reward per submission; None where the result is dropped."""
        return [r.reward for r in self.results]

    @property
    def scored(self) -> list[Result]:
        return [r for r in self.results if not r.dropped]

    @property
    def dropped(self) -> list[Result]:
        return [r for r in self.results if r.dropped]

    @property
    def complete(self) -> bool:
        return all(r.done for r in self.results)

    @property
    def correctness_rate(self) -> float | None:
        """Passed / scored, as the farm's run_step_summary view counts it."""
        scored = self.scored
        return sum(bool(r.passed) for r in scored) / len(scored) if scored else None

    @property
    def mean_reward(self) -> float | None:
        values = [r.reward for r in self.scored if r.reward is not None]
        return sum(values) / len(values) if values else None

    @property
    def best_speedup(self) -> float | None:
        values = [r.speedup for r in self.scored if r.passed and r.speedup is not None]
        return max(values) if values else None


@dataclass(frozen=True)
class BestKernel:
    """The best verified kernel of a variant: its exact assembly and the verdict that earned it."""

    variant_id: str
    attempt_id: str
    assembly: str
    verdict: Mapping[str, Any]
    speedup: float | None
    cycles: float | None
    found_by: str | None
    run_id: str | None
    step: int | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BestKernel:
        return cls(variant_id=body["variant_id"], attempt_id=body["attempt_id"],
                   assembly=body["assembly"], verdict=body.get("verdict") or {},
                   speedup=body.get("speedup"), cycles=body.get("cycles"),
                   found_by=body.get("found_by"), run_id=body.get("run_id"),
                   step=body.get("step"))

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write `<variant>.s` and `<variant>.verdict.json`; returns both paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        asm, verdict = out / f"{self.variant_id}.s", out / f"{self.variant_id}.verdict.json"
        asm.write_text(self.assembly)
        verdict.write_text(json.dumps(dict(self.verdict), indent=2, sort_keys=True) + "\n")
        return asm, verdict
