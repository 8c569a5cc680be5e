"""What the execution guard costs: the correctness run with and without the plugin, side by side.

For one variant per template (the largest size, where the harness and the kernel do the most
work), the clang -O3 baseline is assembled and linked once; then the candidate's 20-test run is
started exactly as the correctness gate starts it (sandboxed qemu-aarch64, same arguments), once
with the guard's `-plugin` and once without, interleaved variant by variant and alternating which
goes first, so machine noise hits both alike. Reported: the sandboxed run's wall time, and the
emulator's CPU time from the same two command lines run directly (the sandbox's cost is the
same in both modes, and CPU time is the steadier figure on a shared machine; the code run is the
trusted compiler baseline). Both runs must write identical records, and the
guarded one must report a clean end. Also timed: building the guard's arguments from the linked
executable (`guard.for_link`: ELF symbols, allowed-function closure), which the gate adds per
attempt.

    .venv/bin/python bench/guard_overhead.py [--n 40] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolchain import (  # noqa: E402
    baselines,
    execution,  # noqa: E402
    kernels,
    sandbox,
)
from toolchain.execution import guard, harness  # noqa: E402
from toolchain.gates import syntax  # noqa: E402
from toolchain.settings import get_settings  # noqa: E402

SEED = 20240611
SANDBOX_ENV = {"PATH": "/usr/bin", "LC_ALL": "C"}  # what the guest sees in the sandbox too


def pick_variants(n: int) -> list[kernels.Variant]:
    """One variant per template, its largest (longest-running harness and kernel)."""
    largest: dict[str, kernels.Variant] = {}
    for variant in kernels.suite():
        size = sum(a.length for a in variant.signature.args if a.pointer)
        best = largest.get(variant.template)
        if best is None or size > sum(a.length for a in best.signature.args if a.pointer):
            largest[variant.template] = variant
    return [largest[t] for t in sorted(largest)][:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="variants (one per template)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    settings = get_settings()
    rows = []
    for i, variant in enumerate(pick_variants(args.n)):
        tests = harness.test_count(variant, settings)
        scratch = Path(tempfile.mkdtemp(prefix="armgym-guard-bench-"))
        try:
            text = baselines.get(variant, "clang", "-O3", settings=settings).assembly
            _, obj = syntax.assemble(text, scratch, settings)
            assert obj is not None and execution.link(variant, obj, scratch, settings) is None
            start = time.perf_counter()
            watch = guard.for_link(scratch, execution.EXE_NAME, execution.MAP_NAME, obj.name,
                                   variant.math_functions, settings.cache_dir)
            setup_s = time.perf_counter() - start
            argv = {
                "plain": execution.qemu_argv(f"./{execution.EXE_NAME}", SEED, tests, False),
                "guarded": execution.qemu_argv(f"./{execution.EXE_NAME}", SEED, tests, False,
                                                 plugin=watch.qemu_args(str(watch.plugin))),
            }
            walls: dict[str, list[float]] = {"plain": [], "guarded": []}
            cpus: dict[str, list[float]] = {"plain": [], "guarded": []}
            outputs = {}
            for r in range(args.rounds + 1):  # round 0 warms the page cache, not counted
                order = ["plain", "guarded"] if (i + r) % 2 else ["guarded", "plain"]
                for mode in order:
                    res = sandbox.run(argv[mode], scratch, timeout_s=120, ro_files=[watch.plugin],
                                      writable=False, settings=settings)
                    assert res.returncode == 0, (variant.id, mode, res.stderr[-300:])
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    direct = subprocess.run(argv[mode], cwd=scratch, capture_output=True,
                                            timeout=120, check=True, env=SANDBOX_ENV)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    assert direct.returncode == 0
                    if r:
                        walls[mode].append(res.wall_s)
                        cpus[mode].append(after.ru_utime - before.ru_utime
                                          + after.ru_stime - before.ru_stime)
                    outputs[mode] = res.stdout
                    if mode == "guarded":
                        lines = watch.lines(res.stderr)
                        assert lines[0] == "start" and lines[-1].startswith("end"), lines
            assert outputs["plain"] == outputs["guarded"], f"{variant.id}: records differ"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        row = {"variant": variant.id, "setup_ms": round(setup_s * 1000, 2),
               **{f"{m}_ms": round(statistics.median(w) * 1000, 1) for m, w in walls.items()},
               **{f"{m}_cpu_ms": round(statistics.median(c) * 1000, 1) for m, c in cpus.items()}}
        row["ratio"] = round(row["guarded_ms"] / row["plain_ms"], 3)
        row["cpu_ratio"] = round(row["guarded_cpu_ms"] / row["plain_cpu_ms"], 3)
        rows.append(row)
        if not args.json:
            print(f"{variant.id:36s} wall {row['plain_ms']:6.1f} / {row['guarded_ms']:6.1f} ms "
                  f"x{row['ratio']:.3f}  cpu {row['plain_cpu_ms']:6.1f} / "
                  f"{row['guarded_cpu_ms']:6.1f} ms x{row['cpu_ratio']:.3f}  "
                  f"args {row['setup_ms']:.1f} ms", file=sys.stderr, flush=True)
    plain = sum(r["plain_ms"] for r in rows)
    guarded = sum(r["guarded_ms"] for r in rows)
    plain_cpu = sum(r["plain_cpu_ms"] for r in rows)
    guarded_cpu = sum(r["guarded_cpu_ms"] for r in rows)
    summary = {
        "variants": len(rows), "rounds": args.rounds,
        "wall_plain_total_ms": round(plain, 1), "wall_guarded_total_ms": round(guarded, 1),
        "wall_ratio_total": round(guarded / plain, 3),
        "cpu_plain_total_ms": round(plain_cpu, 1), "cpu_guarded_total_ms": round(guarded_cpu, 1),
        "cpu_ratio_total": round(guarded_cpu / plain_cpu, 3),
        "cpu_ratio_median": round(statistics.median(r["cpu_ratio"] for r in rows), 3),
        "cpu_ratio_max": max(r["cpu_ratio"] for r in rows),
        "cpu_added_ms_median": round(statistics.median(r["guarded_cpu_ms"] - r["plain_cpu_ms"]
                                                       for r in rows), 1),
        "args_ms_median": round(statistics.median(r["setup_ms"] for r in rows), 2),
    }
    if args.json:
        print(json.dumps({"summary": summary, "rows": rows}, indent=2))
    else:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
