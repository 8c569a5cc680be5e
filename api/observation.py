"""The original ARM-Gym's observation, computed from a verdict: what `/step` and the OpenEnv
environment answer at their top level (reward under one profile, speedup, cycles, baseline
cycles, done, error), beside the verdict itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException

from store import extract
from toolchain.reward import DEFAULT_PROFILE, PROFILES, reward_of

__all__ = ["DEFAULT_PROFILE", "check_profile", "observation", "profile_reward"]


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise HTTPException(422, f"unknown profile {profile[:100]!r}; one of {', '.join(PROFILES)}")
    return profile


def profile_reward(verdict: Mapping[str, Any], profile: str) -> float | None:
    """The verdict's reward under `profile` (toolchain.reward.reward_of); None for infra_error
    (the farm failed, not the model: a trainer drops it rather than scoring it)."""
    return reward_of(verdict, profile)


def observation(verdict: Mapping[str, Any], profile: str = DEFAULT_PROFILE) -> dict[str, Any]:
    """The original's fields. `done` is always true: one submission ends the episode. `cycles`,
    `speedup` and `baseline_cycles` are None when the performance gate did not run (the attempt
    failed earlier); `error` is None when every gate passed."""
    figures = extract.columns(verdict)
    kind = verdict.get("error_kind")
    return {
        "reward": profile_reward(verdict, profile),
        "profile": profile,
        "passed": bool(verdict.get("passed")),
        "speedup": figures["speedup"],
        "cycles": figures["cycles"],
        "baseline_cycles": figures["baseline_cycles"],
        "baseline_compiler": figures["baseline_compiler"],
        "error_kind": kind,
        "error": None if not kind else {"kind": kind, "message": verdict.get("message") or ""},
        "done": True,
    }
