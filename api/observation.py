"""The original ARM-Gym's observation, computed from a verdict: what `/step` and the OpenEnv
environment answer at their top level (reward under one profile, speedup, cycles, baseline
cycles, done, error), beside the verdict itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException

from toolchain.reward import DEFAULT_PROFILE, PROFILES, reward_of
from toolchain.verdict import Verdict

__all__ = ["DEFAULT_PROFILE", "check_profile", "observation", "profile_reward"]


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise HTTPException(422, f"unknown profile {profile[:100]!r}; one of {', '.join(PROFILES)}")
    return profile


def profile_reward(verdict: Verdict | Mapping[str, Any] | None, profile: str) -> float | None:
    """The verdict's reward under `profile` (toolchain.reward.reward_of); None for infra_error
    (the farm failed, not the model: a trainer drops it rather than scoring it)."""
    return reward_of(verdict, profile)


def observation(verdict: Verdict | Mapping[str, Any],
                profile: str = DEFAULT_PROFILE) -> dict[str, Any]:
    """The original's fields, from the typed verdict. `done` is always true: one submission
    ends the episode. `cycles`, `speedup` and `baseline_cycles` are None when the performance
    gate did not run (the attempt failed earlier); `error` is None when every gate passed."""
    typed = Verdict.load(verdict)
    if typed is None:
        raise ValueError("not a verdict: " + str(verdict)[:200])
    perf = typed.performance
    kind = typed.error_kind.value if typed.error_kind else None
    return {
        "reward": profile_reward(typed, profile),
        "profile": profile,
        "passed": typed.passed,
        "speedup": perf.speedup if perf else None,
        "cycles": perf.cycles if perf else None,
        "baseline_cycles": perf.baseline.cycles if perf else None,
        "baseline_compiler": perf.baseline.compiler if perf else None,
        "error_kind": kind,
        "error": None if not kind else {"kind": kind, "message": typed.message},
        "done": True,
    }
