"""Part 2, the original's design: one submission at a time, each gate a fresh Python process
that reads its inputs from files and writes its outputs to files, and 20 separate emulator runs
(one qemu process per test) for the candidate and as many for the C reference.

The gates are the toolchain's own functions, so the work and the verdicts are the same as the
core's; only the process structure differs. The performance gate's process shares no memory with
the correctness gate's, so it runs the C reference once more (one 20-test run), as it would.

    python -m bench.original_design --gate syntax|object|correctness|performance \\
        --dir SCRATCH --variant ID --seed N          (one gate; prints its results as JSON)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolchain import execution, kernels, sandbox
from toolchain.errors import ErrorKind
from toolchain.execution import harness
from toolchain.execution.records import Record, parse
from toolchain.gates import object_checks, performance, syntax
from toolchain.gates.correctness.compare import judge
from toolchain.gates.performance import crosscheck
from toolchain.settings import Settings
from toolchain.verdict import GateResult

from . import core
from .mix import Submission

REPO = Path(__file__).resolve().parents[1]
GATES = ("syntax", "object", "correctness", "performance")
SOURCE = "kernel.s"


def _one_test(argv: list[str], scratch: Path, variant: kernels.Variant, test: int,
              with_abs: bool, **kwargs: Any) -> tuple[Record | None, sandbox.RunResult]:
    res = sandbox.run(argv, scratch, **kwargs)
    records, clean = parse(variant, res.stdout, with_abs, first=test)
    ok = res.returncode == 0 and clean and len(records) == 1 and not res.timed_out
    return (records[0] if ok else None), res


def correctness_gate(variant: kernels.Variant, scratch: Path, seed: int,
                     settings: Settings) -> GateResult:
    """Link, then each of the 20 tests in its own emulator process, reference first."""
    tests = harness.test_count(variant, settings)
    built = harness.build(variant, settings)
    with_abs = execution.needs_abs_run(variant)
    expected, ref_wall = [], 0.0
    ref_dir = Path(tempfile.mkdtemp(prefix="armgym-orig-ref-"))
    try:
        for i in range(tests):
            argv = execution.qemu_argv(str(built.reference), seed, i + 1, with_abs, first=i)
            record, res = _one_test(argv, ref_dir, variant, i, with_abs, timeout_s=120,
                                    ro_files=[built.reference], confine=False,
                                    settings=settings)
            if record is None:
                raise RuntimeError(f"C reference of {variant.id} failed on test {i}")
            expected.append(record)
            ref_wall = max(ref_wall, res.wall_s)
    finally:
        shutil.rmtree(ref_dir, ignore_errors=True)
    failed = execution.link(variant, scratch / syntax.OBJECT_NAME, scratch, settings)
    if failed:
        return GateResult.fail("correctness", ErrorKind.link_error, failed)
    budget = settings.run_timeout_base_s + settings.run_timeout_factor * ref_wall
    got = []
    for i in range(tests):
        argv = execution.qemu_argv("./candidate.elf", seed, i + 1, False, first=i)
        record, res = _one_test(argv, scratch, variant, i, False, timeout_s=budget,
                                limits=sandbox.Limits(cpu_seconds=int(budget) + 2),
                                settings=settings, writable=False)
        if res.timed_out:
            return GateResult.fail("correctness", ErrorKind.timeout, f"test {i}: no return")
        if record is None:
            return GateResult.fail("correctness", ErrorKind.crash, f"test {i}: did not complete")
        got.append(record)
    finding = judge(variant, got, expected)
    if finding:
        return GateResult.fail("correctness", finding.kind, finding.message)
    return GateResult("correctness", True)


def gate(name: str, scratch: Path, variant_id: str, seed: int) -> list[GateResult]:
    """One gate, from the files earlier gates left in `scratch`."""
    settings = core.bench_settings()
    text = (scratch / SOURCE).read_text()
    variant = kernels.get(variant_id)
    obj = scratch / syntax.OBJECT_NAME
    if name == "syntax":
        for check in (syntax.check_input(text, settings), syntax.check_directives(text)):
            if check is not None:
                return [check]
        return [syntax.assemble(text, scratch, settings)[0]]
    if name == "object":
        return [object_checks.check_object(obj, frozenset(variant.math_functions), settings)]
    if name == "correctness":
        return [correctness_gate(variant, scratch, seed, settings)]
    perf, measured = performance.performance(variant, obj, text, seed, scratch, settings)
    return [perf] if measured is None else [perf, crosscheck.check(measured, variant)]


def verify_by_processes(item: Submission) -> tuple[str, float]:
    """(outcome, wall): the four gates as four fresh interpreters, stopping at a failure."""
    scratch = Path(tempfile.mkdtemp(prefix="armgym-orig-"))
    start = time.perf_counter()
    try:
        (scratch / SOURCE).write_text(item.assembly)
        for name in GATES:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.original_design", "--gate", name, "--dir",
                 str(scratch), "--variant", item.variant_id, "--seed", str(item.seed)],
                cwd=REPO, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                return "infra_error", time.perf_counter() - start
            failed = [g for g in json.loads(proc.stdout) if not g["passed"]]
            if failed:
                return str(failed[0]["error_kind"]), time.perf_counter() - start
        return "pass", time.perf_counter() - start
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(mix: Sequence[Submission]) -> dict[str, Any]:
    """The design over `mix`, one submission at a time."""
    from tqdm import tqdm

    outcomes, walls = [], []
    for item in tqdm(mix, desc="original design", unit="verif", leave=False):
        outcome, wall = verify_by_processes(item)
        outcomes.append(outcome)
        walls.append(wall)
    total = sum(walls)
    return {"n": len(mix), "wall_s": total, "per_s": len(mix) / total,
            "mean_s": total / len(mix), "outcomes": outcomes, "walls": walls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gate", choices=GATES, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    results = gate(args.gate, args.dir, args.variant, args.seed)
    print(json.dumps([r.to_json() for r in results]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
