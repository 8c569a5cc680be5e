"""Part 3, the core library alone: `toolchain.verify.verify` over the mix in 1 and 2 worker
processes, plus the process-pool plumbing the other parts reuse (warm-up, recording).

Worker processes are spawned fresh (no in-memory cache inherited from this process), started
and warmed by one throwaway verification each before the clock starts, so the figure is the
steady state of a long-running worker, not its start-up.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tqdm import tqdm

from toolchain.execution.runs import reference_dir
from toolchain.settings import Settings, get_settings
from toolchain.verify import verify

from .mix import Submission

T = TypeVar("T")
R = TypeVar("R")
# Seeds of throwaway verifications: never one of the mix's (those are >= 1 and < 2**62).
WARM_SEED = 2**62 + 7


def bench_settings(verdict_cache: bool = False, overlap: bool = True,
                   unsandboxed: bool = False) -> Settings:
    """This process's settings with the verdict cache on or off (ARMGYM_VERDICT_CACHE=0 is also
    set in the environment for the services), a verification's tool runs overlapped or not,
    and with `unsandboxed` the sandbox's weaker mode (the bench's own, trusted mix only: a
    sandboxed tool's CPU time never reaches this process's rusage, see cpu_s)."""
    settings = get_settings().replace(verdict_cache=verdict_cache, overlap=overlap)
    return settings.replace(sandbox="none", allow_unsandboxed=True) if unsandboxed else settings


def forget_references() -> None:
    """Empty the C reference's file cache: a timed pass verifies items an earlier pass (the
    warm-up, another part) verified with the same seeds, whose references a fresh attempt
    would not find."""
    shutil.rmtree(reference_dir(get_settings()), ignore_errors=True)


def cpu_s() -> float:
    """CPU seconds of this process (every thread) and of its waited-for children (the tools).
    A sandboxed step's processes are not among those: bwrap exits without reaping its PID
    namespace, so their time is never added to RUSAGE_CHILDREN (a 150 ms shell loop counts
    6 ms through sandbox.run); CPU comparisons run unsandboxed."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def outcome(verdict: Any) -> str:
    """'pass' or the error kind, from a Verdict or its JSON."""
    data = verdict if isinstance(verdict, dict) else verdict.to_json()
    return "pass" if data["passed"] else str(data["error_kind"])


@dataclass
class Verified:
    """One verification as a worker saw it."""

    index: int
    outcome: str
    wall_s: float
    gates: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0


def verify_one(index: int, item: Submission, verdict_cache: bool = False,
               overlap: bool = True, unsandboxed: bool = False) -> Verified:
    cpu, start = cpu_s(), time.perf_counter()
    verdict = verify(item.variant_id, item.assembly, item.seed,
                     settings=bench_settings(verdict_cache, overlap, unsandboxed))
    wall = time.perf_counter() - start
    return Verified(index, outcome(verdict), wall, dict(verdict.timings), cpu_s() - cpu)


def _warm(item: Submission | None) -> None:
    """Pool initializer: pay this process's one-time costs (imports, sandbox probe, tool
    versions, per-tool layouts) on a throwaway seed, so no timed item pays them."""
    if item is not None:
        verify(item.variant_id, item.assembly, WARM_SEED, settings=bench_settings())


POOL_START_S = 300.0


def _pid() -> int:
    time.sleep(0.3)  # long enough that every pool process gets one
    return os.getpid()


def warm_item(mix: Sequence[Submission]) -> Submission | None:
    """An item that runs every gate (compiler output), to warm a process with."""
    return next((s for s in mix if s.category == "compiler"), None)


class Pool:
    """`workers` fresh processes, started and warmed on entry."""

    def __init__(self, workers: int, warm: Submission | None) -> None:
        self.workers = workers
        ctx = multiprocessing.get_context("spawn")
        self.executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_warm,
                                            initargs=(warm,))

    def __enter__(self) -> Pool:
        # Probes until every process answered: on a loaded machine one process can still be
        # warming up while the other takes every probe of a round.
        pids: set[int] = set()
        deadline = time.monotonic() + POOL_START_S
        while len(pids) < self.workers and time.monotonic() < deadline:
            pids |= {f.result() for f in [self.executor.submit(_pid)
                                          for _ in range(self.workers)]}
        if len(pids) != self.workers:
            raise RuntimeError(f"only {len(pids)} of {self.workers} pool processes started")
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def map(self, fn: Callable[..., R], args: Iterable[tuple[Any, ...]], desc: str,
            total: int) -> list[R]:
        """fn(*a) for every a, one task each, in completion order, with a progress bar."""
        futures = [self.executor.submit(fn, *a) for a in args]
        out = []
        with tqdm(total=total, desc=desc, unit="verif", leave=False) as bar:
            for fut in as_completed(futures):
                out.append(fut.result())
                bar.update()
        return out


def run_pass(mix: Sequence[Submission], workers: int, desc: str,
             verdict_cache: bool = False, overlap: bool = True,
             unsandboxed: bool = False) -> dict[str, Any]:
    """Verify the whole mix in a pool of `workers` processes; throughput from the first task
    submitted to the last result."""
    forget_references()
    with Pool(workers, warm_item(mix)) as pool:
        start = time.perf_counter()
        done = pool.map(verify_one, ((i, s, verdict_cache, overlap, unsandboxed)
                                     for i, s in enumerate(mix)), desc, len(mix))
        wall = time.perf_counter() - start
    done.sort(key=lambda v: v.index)
    return {"workers": workers, "n": len(mix), "wall_s": wall, "per_s": len(mix) / wall,
            "outcomes": [v.outcome for v in done], "walls": [v.wall_s for v in done],
            "gates": [v.gates for v in done], "cpu": [v.cpu_s for v in done]}


def run(mix: Sequence[Submission]) -> dict[str, Any]:
    """1 worker, then 2 workers, over the same mix; then both again with each verification's
    tool runs one after another (ARMGYM_OVERLAP=0). With overlap a single worker already keeps
    more than one core busy at times, so process scaling shows in the second pair."""
    one = run_pass(mix, 1, "core, 1 worker")
    two = run_pass(mix, 2, "core, 2 workers")
    one_seq = run_pass(mix, 1, "core, 1 worker, no overlap", overlap=False)
    two_seq = run_pass(mix, 2, "core, 2 workers, no overlap", overlap=False)
    passes = (one, two, one_seq, two_seq)
    mismatches = sum(len(set(o)) > 1 for o in zip(*(p["outcomes"] for p in passes), strict=True))
    return {"one": one, "two": two, "ratio_2w_1w": two["per_s"] / one["per_s"],
            "one_sequential": one_seq, "two_sequential": two_seq,
            "ratio_2w_1w_sequential": two_seq["per_s"] / one_seq["per_s"],
            "outcome_mismatches_1w_2w": mismatches,
            "outcome_counts": dict(Counter(one["outcomes"]))}


def subset_mean(result: dict[str, Any], count: int) -> float:
    """Mean wall time per verification over the first `count` items of a pass."""
    return statistics.fmean(result["walls"][:count])
