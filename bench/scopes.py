"""Part `scopes`: the cost of a fresh verification with per-attempt seeds against group seeds
(seed_scope='group': a GRPO group of one run, step and variant shares its seed, so one C
reference run serves the whole group), side by side in one run.

Both passes verify the same items in the same order (a group's items next to each other, as a
trainer's batch brings them) in 2 fresh worker processes, the reference files emptied before
each; only the seeds differ, and neither scope's seeds are the mix's own: the warm-up measured
the data-dependent baselines on those, which fresh attempts of either scope find unmeasured.
For each: tool launches per verification, counted as the floor counts them
(bench.floor.record), then CPU per verification (the worker's own and its tools') in a plain
pass without the recorder, in the sandbox's weaker mode: a sandboxed tool's CPU time never
reaches the worker's rusage (bench.core.cpu_s), and bwrap costs the same per launch in both.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from . import core, floor
from .mix import Submission, grouped, reseeded

FRESH_SALT = 15  # the per-attempt pass's seeds


def _scope(items: list[Submission], blobs: Path, name: str) -> dict[str, Any]:
    recs = floor.record(items, blobs)
    plain = core.run_pass(items, 2, f"scopes: {name}, CPU", unsandboxed=True)
    cpu = plain["cpu"]
    launches = floor.counts(recs)
    return {"launches": launches["launches"],
            "per_verification": launches["launches"] / len(items),
            "by_tool": launches["launches_by_tool"],
            "served_requests": launches["served_requests"],
            "cpu_s": sum(cpu), "cpu_median_s": statistics.median(cpu),
            "per_s": plain["per_s"], "outcomes": dict(Counter(plain["outcomes"]))}


def run(mix: list[Submission], blobs: Path, size: int) -> dict[str, Any]:
    group = grouped(mix, size)
    order = {(s.variant_id, s.assembly): k for k, s in enumerate(group)}
    attempt = reseeded(sorted(mix, key=lambda s: order[(s.variant_id, s.assembly)]), FRESH_SALT)
    sizes = Counter(s.seed for s in group)
    out: dict[str, Any] = {"group_size": size, "groups": len(sizes),
                           "mean_group": statistics.fmean(sizes.values())}
    out["attempt"] = _scope(attempt, blobs, "per-attempt seeds")
    out["group"] = _scope(group, blobs, f"group seeds ({size})")
    out["launch_ratio"] = out["group"]["per_verification"] / out["attempt"]["per_verification"]
    out["cpu_ratio"] = out["group"]["cpu_s"] / out["attempt"]["cpu_s"]
    return out
