"""Would running the C reference inside the candidate's emulator run pay? What the reference's
own qemu launch costs against the marginal cost of its tests in a launch that already runs.

    .venv/bin/python -m bench.reference_share [--variants 24] [--repeats 5] [--seed N]

Per variant (spread over the suite), the CPU time (qemu's user + system, unsandboxed, median of
`--repeats`) of three launches of the reference executable on the attempt's tests:

* T0: a launch that runs no test (qemu's start-up, the runtime's own set-up);
* T1: the reference as the verifier runs it today (its own launch, every test once);
* T2: an executable built the same way whose main runs every test twice in one launch: its
  second pass is the reference's marginal cost where the runtime is already translated.

A shared run would save about T1 - (T2 - T1) = 2 T1 - T2 per reference run it replaces. Not
measured here: the guard plugin's instrumentation of the reference phase (the candidate's run
has it) and the serialisation of the reference, which today runs beside the candidate's as/ld.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from toolchain import kernels, tools
from toolchain.execution import harness, runs
from toolchain.kernels.model import Variant
from toolchain.settings import Settings

LOOP = "    for (int t = first; t < tests; t++) {"


def _cpu(argv: list[str], repeats: int) -> tuple[float, float]:
    """Median (CPU, wall) seconds of `argv`'s runs."""
    cpu, wall = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, check=False)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[-5]}: status {proc.returncode}: {proc.stderr[-300:]!r}")
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(cpu), statistics.median(wall)


def _twice(variant: Variant, tmp: Path) -> Path:
    """The reference built as harness.py builds it, its main looping over the tests twice."""
    source = harness.RUNTIME_C.read_text()
    if LOOP not in source:
        raise RuntimeError("harness_runtime.c's test loop changed: update bench.reference_share")
    (tmp / "runtime.c").write_text(source.replace(LOOP, "    for (int rep = 0; rep < 2; rep++)\n"
                                                        + LOOP))
    (tmp / "harness_variant.h").write_text(harness.variant_header(variant))
    (tmp / "reference.c").write_text(variant.c_source)
    gcc = tools.tool("gcc").path
    for argv in ([gcc, *harness.HARNESS_CFLAGS, "-I", str(tmp), "-c", str(tmp / "runtime.c"),
                  "-o", str(tmp / "runtime.o")],
                 [gcc, *harness.REFERENCE_CFLAGS, "-c", str(tmp / "reference.c"), "-o",
                  str(tmp / "reference.o")],
                 tools.link_argv([str(tmp / "runtime.o"), str(tmp / "reference.o")],
                                 str(tmp / "twice.elf"))):
        subprocess.run(argv, check=True, capture_output=True)
    return tmp / "twice.elf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=0x1234ABCD)
    args = ap.parse_args()
    settings = Settings()
    suite = kernels.suite()
    picked = suite[:: max(1, len(suite) // args.variants)][: args.variants]
    rows = []
    for variant in picked:
        built = harness.build(variant, settings)
        tests = harness.test_count(variant, settings)
        with_abs = runs.needs_abs_run(variant)
        mode = f"D{runs.timing_test(args.seed, tests)}"
        with tempfile.TemporaryDirectory() as tmp:
            twice = _twice(variant, Path(tmp))
            t0 = _cpu(runs.qemu_argv(str(built.reference), args.seed, tests, with_abs,
                                     first=tests), args.repeats)
            t1 = _cpu(runs.qemu_argv(str(built.reference), args.seed, tests, with_abs,
                                     mode=mode), args.repeats)
            t2 = _cpu(runs.qemu_argv(str(twice), args.seed, tests, with_abs, mode=mode),
                      args.repeats)
        rows.append((t0[0], t1[0], t2[0]))
        saved_ms = 1e3 * (2 * t1[0] - t2[0])
        print(f"{variant.id:40s} {tests:3d} tests  CPU ms: T0 {1e3 * t0[0]:6.1f}  "
              f"T1 {1e3 * t1[0]:6.1f}  T2 {1e3 * t2[0]:6.1f}  saved {saved_ms:6.1f}", flush=True)
    med = lambda xs: 1e3 * statistics.median(xs)  # noqa: E731
    t0s, t1s, t2s = zip(*rows, strict=True)
    saved = [2 * a - b for a, b in zip(t1s, t2s, strict=True)]
    marginal = [b - a for a, b in zip(t1s, t2s, strict=True)]
    print(f"median CPU ms over {len(rows)} variants: start-up T0 {med(t0s):.1f}, own launch "
          f"T1 {med(t1s):.1f}, marginal T2-T1 {med(marginal):.1f}, "
          f"saved {med(saved):.1f}; saved / T1 in total {sum(saved) / sum(t1s):.2f}")


if __name__ == "__main__":
    main()
