"""Reward (brief §5.6): components from a verdict, reward profiles, GRPO group z-scores.

Components are returned separately so trainers can weight them their own way:

* format: 1/0 whether a raw completion held exactly one `<assembly>` block; None when bare
  assembly was submitted (not applicable).
* syntax: 1 when GNU as assembled the text and the object passed the object checks.
* correctness: 1 when the 20 tests passed and the traced timing run reproduced the reference
  (a kernel that behaves differently when traced, or never returns, gets 0).
* speedup: faster-compiler baseline cycles / candidate cycles under the same model; None when
  not measured or withheld because the two cost models disagree (correctness is kept then).

An `infra_error` verdict says nothing about the model: it yields no reward (None), never 0.

Each profile declares, CompilerGym style, whether it is deterministic (the same verdict inputs
always give the same reward) and platform dependent (depends on the host's speed). Both built-in
profiles read only the cycle model, so they are deterministic and platform independent.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ErrorKind, GateName
from .verdict import Components, Reward, Verdict

SPEEDUP_CAP = 3.0
Z_CLIP = 1.5
# The profile a reward is reported under when none is asked for: the store's `reward` column,
# the API's observations and OpenRLHF route, and the client (armgym_client.models, which keeps
# its own copy of `reward_of`; tests/test_client.py checks the two agree).
DEFAULT_PROFILE = "additive"


__all__ = ["DEFAULT_PROFILE", "PROFILES", "Components", "Profile", "components", "reward",
           "reward_of", "summary"]


def components(verdict: Verdict) -> Components | None:
    """The reward components of a verdict; None for infra_error (drop, don't score)."""
    if verdict.error_kind == ErrorKind.infra_error:
        return None
    gates = {g.name: g for g in verdict.gates}

    def ok(name: GateName) -> bool:
        return name in gates and gates[name].passed

    fmt = (1.0 if ok(GateName.format) else 0.0) if GateName.format in gates else None
    syntax = float(ok(GateName.syntax) and ok(GateName.object))
    perf = gates.get(GateName.performance)
    perf_broke_it = perf is not None and not perf.passed and \
        perf.kind != ErrorKind.cross_check_disagreement
    correct = float(ok(GateName.correctness) and not perf_broke_it)
    withheld = verdict.error_kind == ErrorKind.cross_check_disagreement
    speedup = None
    if correct and perf is not None and perf.passed and not withheld:
        figures = verdict.performance  # the gate's typed figures
        speedup = figures.speedup if figures is not None else None
    return Components(format=fmt, syntax=syntax, correctness=correct, speedup=speedup,
                      speedup_withheld=withheld)


def speedup_term(speedup: float | None, cap: float = SPEEDUP_CAP) -> float:
    """clip(speedup, 1, cap) - 1: zero at or below parity, at most cap - 1."""
    if speedup is None or math.isnan(speedup):
        return 0.0
    return min(max(speedup, 1.0), cap) - 1.0


@dataclass(frozen=True)
class Profile:
    name: str
    deterministic: bool
    platform_dependent: bool
    score: Callable[[Components], float]
    description: str


def _additive(c: Components) -> float:
    return (c.format or 0.0) + c.syntax + c.correctness + speedup_term(c.speedup)


def _binary_plus_speedup(c: Components) -> float:
    failed = c.correctness < 1.0 or c.syntax < 1.0 or c.format == 0.0 or c.speedup is None
    return 0.0 if failed else speedup_term(c.speedup)


PROFILES: dict[str, Profile] = {
    "additive": Profile(
        "additive", True, False, _additive,
        "the original's: format + syntax + correctness + (clip(speedup, 1, 3) - 1)"),
    "binary_plus_speedup": Profile(
        "binary_plus_speedup", True, False, _binary_plus_speedup,
        "0 on any failure (speedup withheld included), else clip(speedup, 1, 3) - 1"),
}


def reward(verdict: Verdict, profile: str = DEFAULT_PROFILE) -> float | None:
    """The verdict's reward under a profile; None for infra_error."""
    c = components(verdict)
    return None if c is None else PROFILES[profile].score(c)


def reward_of(verdict: Verdict | Mapping[str, Any] | None,
              profile: str = DEFAULT_PROFILE) -> float | None:
    """The reward under `profile` of a verdict as stored and served (the profiles `summary`
    attached; its JSON is read as a `Verdict`); None for infra_error and for a verdict that
    carries no reward. KeyError for a profile the verdict does not report."""
    typed = Verdict.load(verdict)
    if typed is None or typed.error_kind == ErrorKind.infra_error or typed.reward is None:
        return None
    return typed.reward.profiles[profile]


def summary(verdict: Verdict) -> Reward | None:
    """Components and every profile's reward, as attached to the verdict."""
    c = components(verdict)
    if c is None:
        return None
    return Reward(components=c,
                  profiles={name: p.score(c) for name, p in sorted(PROFILES.items())})


def group_zscores(rewards: Sequence[float | None], clip: float = Z_CLIP) -> list[float | None]:
    """GRPO advantages: (r - mean) / std within one group, clipped to +-clip.

    None (infra_error) stays None and is left out of the group's statistics; a group whose
    rewards are all equal gets zeros (no signal, no division by zero)."""
    scored = [r for r in rewards if r is not None]
    if not scored:
        return [None] * len(rewards)
    mean = statistics.fmean(scored)
    std = statistics.pstdev(scored) if len(scored) > 1 else 0.0
    out: list[float | None] = []
    for r in rewards:
        if r is None:
            out.append(None)
        elif std == 0.0:
            out.append(0.0)
        else:
            out.append(max(-clip, min(clip, (r - mean) / std)))
    return out
