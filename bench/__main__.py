"""The benchmark suite of issue 8, run by hand (not part of pytest or CI): every figure of the
brief's §8 as ratios measured side by side in one run on this machine.

    .venv/bin/python -m bench [--n 512] [--original-n 64] [--out bench/results]
                              [--only floor,core,farm,original,step,duplicates,profile,scopes,
                                      soak,load]
                              [--group-size 8] [--farm-processes N] [--farm-passes 3]
                              [--soak-n 1000] [--load-clients 1000]

Parts: floor (the verifier's tool launches replayed bare and sandboxed, 1 and 2 lanes and as
many as the farm's pool processes), core
(verify() in 1 and 2 worker processes), farm (HTTP -> Redis -> Celery -> PostgreSQL; the median
of --farm-passes passes of the mix through one farm), original
(one process per gate, one emulator run per test, on the first --original-n items), step
(embedded /step against its floor), duplicates (verdict cache: resubmitted vs fresh), profile
(py-spy and the per-gate breakdown), scopes (launches and CPU per verification with
per-attempt seeds against group seeds, groups of --group-size), soak (bench.soak: one Celery
worker's RSS over --soak-n verifications and what it leaves behind; issue 15's figure is
--soak-n 5000) and load (bench.load: the API's RSS with --load-clients clients waiting, overload
and backpressure). Every verification is fresh
(ARMGYM_VERDICT_CACHE=0, the C reference's files emptied before each timed pass)
except in `duplicates`. A warm-up pass over the mix first fills the disk caches (harnesses,
baseline cycles, cost-model cycles), so every timed part sees the same warm disk caches and
fresh processes; the recording for the floor is the second pass. The farm needs PostgreSQL and
Redis (./scripts/services.sh). Writes results.json under --out after every part (a part that
raises is recorded under "crashed" with its error and the suite goes on, so a crash late in a
30-minute run keeps what the earlier parts measured), and results.png at the end.
"""

from __future__ import annotations

import os

os.environ["ARMGYM_VERDICT_CACHE"] = "0"  # before any settings are read, here or in children

import argparse  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from deploy.entrypoints import default_concurrency  # noqa: E402

from . import (  # noqa: E402
    api_latency,
    core,
    farm,
    floor,
    load,
    mix,
    original_design,
    profile,
    report,
    scopes,
    soak,
)

REPO = Path(__file__).resolve().parents[1]
CORE_DIRS = ("toolchain", "workers", "api", "store")
PARTS = ("floor", "core", "farm", "original", "step", "duplicates", "profile", "scopes", "soak",
         "load")
MEMORY_PARTS = {"soak", "load"}  # they make their own attempts: no mix, no warm-up
STEP_ITEMS = 20
DUPLICATE_ITEMS = 10
DUPLICATE_BATCH = 64  # attempts in the resubmitted batch
PROFILE_ITEMS = 96


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def code_state() -> str:
    """HEAD and whether the core's sources differ from it: the parts import the code when they
    start, so a change in the middle of a run makes its ratios compare different code."""
    def git(*argv: str) -> str:
        proc = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip()

    dirty = git("status", "--porcelain", "--", *CORE_DIRS)
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def compare(a: list[str], b: list[str]) -> dict[str, Any]:
    """Whether two outcome lists (same items) agree, and where not."""
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]
    return {"equal": not diff and len(a) == len(b), "differ_at": diff[:20]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    parts = set(args.only.split(",")) if args.only else set(PARTS)
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    started = time.perf_counter()
    code = code_state()
    farm_processes = args.farm_processes or default_concurrency()
    say(f"building the mix (n={args.n}, mix seed {args.mix_seed})")
    items = mix.build(args.n, args.mix_seed, args.variants)
    results: dict[str, Any] = {"n": len(items), "cpus": os.cpu_count(),
                               "composition": mix.composition(items), "parts": sorted(parts),
                               "command": vars(args)}
    say(f"mix: {results['composition']}, {len({s.variant_id for s in items})} variants")
    blobs = Path(tempfile.mkdtemp(prefix="armgym-bench-blobs-"))
    recs: dict[tuple[str, int], floor.Recording] = {}
    try:
        if parts - {"duplicates"} - MEMORY_PARTS:
            with report.part(results, "warm-up", args.out):
                say("warm-up pass (fills the disk caches; not timed)")
                warm = core.run_pass(items, 2, "warm-up")
                results["warmup_outcomes"] = dict(Counter(warm["outcomes"]))
        if "floor" in parts:
            with report.part(results, "floor", args.out):
                say("floor: recording the verifier's tool launches, then replaying them")
                results["floor"], recorded = floor.run(items, blobs, farm_processes)
                recs = {(items[r.index].variant_id, items[r.index].seed): r for r in recorded}
                say(f"floor: sandboxed {results['floor']['sandboxed_2']['per_s']:.2f} verif/s "
                    f"with 2 lanes")
        if parts & {"core", "original", "profile"}:
            with report.part(results, "core", args.out):
                say("core library: 1 worker, then 2 workers")
                results["core"] = core.run(items)
                say(f"core: {results['core']['one']['per_s']:.2f} / "
                    f"{results['core']['two']['per_s']:.2f} verif/s")
                if "floor" in results:
                    results["floor_matches_core"] = compare(results["floor"]["outcomes"],
                                                            results["core"]["one"]["outcomes"])
        if "scopes" in parts:
            with report.part(results, "scopes", args.out):
                say(f"scopes: per-attempt against group seeds (groups of {args.group_size})")
                results["scopes"] = scopes.run(items, blobs, args.group_size)
                sc = results["scopes"]
                say(f"scopes: launches per verification {sc['attempt']['per_verification']:.2f}"
                    f" -> {sc['group']['per_verification']:.2f}")
        core.forget_references()  # each part below verifies the mix's seeds afresh
        if "farm" in parts:
            with report.part(results, "farm", args.out):
                say(f"whole farm: migrate, Celery worker ({farm_processes} processes), API; "
                    "submitting the mix")
                results["farm"] = api_farm = farm.run(items, farm_processes, args.farm_passes)
                say(f"farm: {api_farm['per_s']:.2f} verif/s (median of "
                    f"{[round(r, 2) for r in api_farm['passes_per_s']]})")
                if "core" in results:
                    results["farm_matches_core"] = compare(api_farm["outcomes"],
                                                           results["core"]["one"]["outcomes"])["equal"]
        if "original" in parts:
            with report.part(results, "original", args.out):
                subset = items[:args.original_n]
                say(f"original design on the first {len(subset)} items")
                orig = original_design.run(subset)
                orig["core_subset_mean_s"] = core.subset_mean(results["core"]["one"], len(subset))
                orig["matches_core"] = compare(orig["outcomes"],
                                               results["core"]["one"]["outcomes"][:len(subset)])
                results["original"] = orig
        core.forget_references()
        if "step" in parts:
            with report.part(results, "step", args.out):
                chosen = api_latency.honest(items, STEP_ITEMS)
                if not recs:
                    say("step: recording the floor of its items")
                    recorded = floor.record(chosen, blobs)
                    recs = {(chosen[r.index].variant_id, chosen[r.index].seed): r for r in recorded}
                say(f"/step latency against the floor, {len(chosen)} submissions")
                results["step"] = api_latency.step_latency(chosen, recs, blobs)
        core.forget_references()
        if "duplicates" in parts:
            with report.part(results, "duplicates", args.out):
                say("duplicates: resubmitted identical attempts vs fresh ones")
                results["duplicates"] = api_latency.duplicates(
                    api_latency.honest(items, DUPLICATE_ITEMS))
                results["duplicates"]["batch"] = api_latency.batch_duplicates(
                    api_latency.honest(items, DUPLICATE_BATCH))
        core.forget_references()
        if "profile" in parts:
            with report.part(results, "profile", args.out):
                results["breakdown"] = profile.gate_breakdown(results["core"]["one"]["gates"],
                                                              results["core"]["one"]["walls"])
                say(f"profile: py-spy over {PROFILE_ITEMS} verifications in one process")
                results["profile"] = profile.profile(items[:PROFILE_ITEMS])
        if "soak" in parts:
            with report.part(results, "soak", args.out):
                say(f"soak: {args.soak_n} verifications through one Celery worker, its RSS")
                results["soak"] = soak.run(args.soak_n)
                say(f"soak: RSS at most {results['soak']['rss_max_mib']} MiB a process, growth "
                    f"after warm-up {results['soak']['growth_after_warmup']}")
        if "load" in parts:
            with report.part(results, "load", args.out):
                say(f"load: {args.load_clients} clients waiting on one API process")
                results["load"] = load.run(args.load_clients, args.load_seconds)
                say(f"load: API RSS at most {results['load']['waiting']['api_rss_mib_max']} MiB")
    finally:
        shutil.rmtree(blobs, ignore_errors=True)
    results["elapsed_s"] = time.perf_counter() - started
    results["code"] = {"start": code, "end": code_state()}
    results["ratios"] = report.ratios(results)
    results["targets_met"] = report.verdicts(results["ratios"])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="submissions in the mix")
    parser.add_argument("--original-n", type=int, default=64,
                        help="items (the mix's first) run through the original's design")
    parser.add_argument("--mix-seed", type=int, default=8)
    parser.add_argument("--variants", type=int, default=48,
                        help="variants the compiler outputs and wrong kernels are drawn from")
    parser.add_argument("--group-size", type=int, default=8,
                        help="attempts per GRPO group in the scopes part")
    parser.add_argument("--farm-processes", type=int, default=None,
                        help="the farm's pool processes (default: the worker entry point's, "
                             "the CPUs plus one); the floor adds a replay with as many lanes")
    parser.add_argument("--farm-passes", type=int, default=farm.PASSES,
                        help="timed passes of the mix through the farm (the median is its figure)")
    parser.add_argument("--soak-n", type=int, default=1000,
                        help="verifications in the soak part (issue 15's figure: 5000, about "
                             "16 min on 2 cores; the default keeps the suite near 30 min)")
    parser.add_argument("--load-clients", type=int, default=1000,
                        help="clients waiting on results in the load part")
    parser.add_argument("--load-seconds", type=float, default=45)
    parser.add_argument("--only", default="", help=f"comma-separated parts of {PARTS}")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    results = run(args)
    report.save(results, args.out)
    report.plot(results, args.out / "results.png")
    print()
    print(report.table(results))
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.png'}")
    return 1 if results.get("crashed") else 0


if __name__ == "__main__":
    raise SystemExit(main())
