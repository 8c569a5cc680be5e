"""What the sandbox costs per verification: bwrap against the weaker mode, side by side.

The same N honest submissions (the clang -O3 baselines of N variants, one per template, smallest
size first) are verified through the whole pipeline (`toolchain.verify.verify`) with
ARMGYM_SANDBOX=bwrap and with the weaker mode (sandbox=none + allow_unsandboxed), interleaved
submission by submission and alternating which mode goes first, so machine noise hits both
alike. Caches (harness, C reference records, baselines) are warmed for both modes first; every
verdict must pass and the two modes must agree on everything but the `sandbox` field and the
bwrap version. Also printed: the fixed cost of starting one sandboxed step that does nothing.

    .venv/bin/python bench/sandbox_overhead.py [--n 12] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolchain import baselines, kernels, sandbox, tools  # noqa: E402
from toolchain.settings import Settings, get_settings  # noqa: E402
from toolchain.verdict import Verdict  # noqa: E402
from toolchain.verify import verify  # noqa: E402

SEED = 20240611
MODES = ("bwrap", "none")


def pick_variants(n: int) -> list[kernels.Variant]:
    """One variant per template (the smallest), so the set spans the suite."""
    smallest: dict[str, kernels.Variant] = {}
    for variant in kernels.suite():
        best = smallest.get(variant.template)
        if best is None or len(variant.c_source) < len(best.c_source):
            smallest[variant.template] = variant
    return [smallest[t] for t in sorted(smallest)][:n]


def settings_for(mode: str) -> Settings:
    base = get_settings()
    if mode == "bwrap":
        return base.replace(sandbox="bwrap", allow_unsandboxed=False)
    return base.replace(sandbox="none", allow_unsandboxed=True)


def comparable(verdict: Verdict) -> str:
    data = verdict.to_json(with_timings=False)
    data.pop("sandbox")
    data["versions"].pop("bwrap", None)
    return json.dumps(data, sort_keys=True)


def launch_cost(repeats: int) -> dict[str, float]:
    """Median wall time of one sandboxed step that does nothing (`qemu-aarch64 --version`)."""
    argv = [tools.tool("qemu").path, "--version"]
    scratch = Path(tempfile.mkdtemp(prefix="armgym-bench-"))
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    try:
        for i in range(repeats):
            for mode in MODES if i % 2 == 0 else MODES[::-1]:
                res = sandbox.run(argv, scratch, timeout_s=30, settings=settings_for(mode))
                walls[mode].append(res.wall_s)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {m: statistics.median(w) for m, w in walls.items()}


def run(n: int, rounds: int) -> dict[str, object]:
    variants = pick_variants(n)
    sources = {v.id: baselines.get(v, "clang", settings=get_settings()).assembly for v in variants}
    settings = {mode: settings_for(mode) for mode in MODES}
    reference: dict[str, str] = {}
    for v in variants:  # warm every cache in both modes, and check the modes agree
        for mode in MODES:
            verdict = verify(v.id, sources[v.id], SEED, settings=settings[mode])
            if not verdict.passed or verdict.sandbox != mode:
                raise SystemExit(f"{v.id} under {mode}: {verdict.sandbox} {verdict.message}")
            key = comparable(verdict)
            if reference.setdefault(v.id, key) != key:
                raise SystemExit(f"{v.id}: the two modes disagree")
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    gates: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    for r in range(rounds):
        for i, v in enumerate(variants):
            order = MODES if (r + i) % 2 == 0 else MODES[::-1]
            for mode in order:
                start = time.perf_counter()
                verdict = verify(v.id, sources[v.id], SEED, settings=settings[mode])
                walls[mode].append(time.perf_counter() - start)
                for gate, seconds in verdict.timings.items():
                    gates[mode].setdefault(gate, []).append(seconds)
    med = {m: statistics.median(walls[m]) for m in MODES}
    return {
        "variants": [v.id for v in variants],
        "verifications_per_mode": len(walls["bwrap"]),
        "median_s": med,
        "ratio_bwrap_to_none": med["bwrap"] / med["none"],
        "added_ms": (med["bwrap"] - med["none"]) * 1000,
        "median_gate_s": {m: {g: statistics.median(s) for g, s in gates[m].items()}
                          for m in MODES},
        "median_step_launch_s": launch_cost(max(20, rounds * 4)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="distinct submissions (default 12)")
    parser.add_argument("--rounds", type=int, default=5, help="passes over them (default 5)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.n, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    med, gates = result["median_s"], result["median_gate_s"]
    assert isinstance(med, dict) and isinstance(gates, dict)
    print(f"{result['verifications_per_mode']} verifications per mode "
          f"({len(result['variants'])} submissions x {args.rounds} rounds, interleaved)")
    print(f"{'':14}{'bwrap':>10}{'none':>10}")
    print(f"{'verification':14}{med['bwrap'] * 1000:>8.1f}ms{med['none'] * 1000:>8.1f}ms")
    for gate in gates["bwrap"]:
        print(f"  {gate:12}{gates['bwrap'][gate] * 1000:>8.1f}ms"
              f"{gates['none'].get(gate, 0.0) * 1000:>8.1f}ms")
    launch = result["median_step_launch_s"]
    assert isinstance(launch, dict)
    print(f"{'one step':14}{launch['bwrap'] * 1000:>8.1f}ms{launch['none'] * 1000:>8.1f}ms"
          "   (qemu-aarch64 --version: the fixed cost of starting a step)")
    print(f"sandbox cost: {result['ratio_bwrap_to_none']:.2f}x per verification "
          f"(+{result['added_ms']:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
