"""Gates 4 and 5: cycles on what executes, speedup over the faster compiler, and the cross-check.

Runs after correctness passed, on what the correctness gate's run recorded: the timing test is
one of the attempt's randomized tests, chosen by its seed (so a policy cannot special-case a
public input), and the execution guard recorded the blocks the kernel ran in that test, in the
same emulator run whose outputs were judged (execution/blocks.py). So what is costed is exactly
what was shown correct; there is no second, traced run a kernel could tell apart. A caller with
no such record (a baseline, the original design's bench) runs the timing test alone under the
same guard.

Baselines (clang -O3 and gcc -O3) are measured by the same model on the same input. Their cost is
data-independent for most kernels: two fixed probe inputs decide that once per (variant,
compiler, toolchain, model); when the probes differ (branches on data, or library calls whose
path depends on the argument), the baseline is measured on the attempt's own input, cached per
(seed, test).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent import futures
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

from ... import background, baselines, decoder, sandbox, tools
from ... import scratch as scratch_dirs
from ...cache import DiskCache
from ...errors import ErrorKind, GateName, InfraError
from ...execution import (
    ReferenceRun,
    Timed,
    guard,
    guarded_run,
    harness,
    link,
    timed,
    timing_test,
)
from ...execution.records import parse
from ...kernels.model import Variant
from ...settings import Settings
from ...verdict import CompilerCycles, GateResult, PerformanceDetails
from .. import syntax
from ..correctness import judge
from . import branches, crosscheck, mca, osaca_model
from .measurement import Measurement
from .trace import Profile, build_profile, disassemble, executed_blocks

NAME = GateName.performance.value
BASELINE_OPT = "-O3"
# (seed, test) inputs that decide whether a baseline's cost depends on its data: one from each
# family of random tests (10-14 draw from [-1, 1), 15-19 over many magnitudes).
PROBES = ((0x5EED_0001, 10), (0x5EED_0002, 17))


class Failed(Exception):
    """The traced run itself failed: a verdict about the submission, not the verifier."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def model_versions() -> dict[str, str]:
    return {"mca": tools.tool("mca").version, "osaca": tools.tool("osaca").version}


def model_key(settings: Settings) -> str:
    predictor = "on" if settings.branch_prediction else "off"
    return tools.fingerprint(mca.model_key(), osaca_model.model_key(), branches.MODEL,
                             branches.MODEL_VERSION, str(branches.PENALTY_CYCLES),
                             predictor, crosscheck.CLASS_VERSION)[:16]


# --------------------------------------------------------------------------- measuring


def measure(variant: Variant, scratch: Path, object_name: str, seed: int, test: int,
            settings: Settings, budget_s: float, check_outputs: bool,
            reference: ReferenceRun | None = None) -> Measurement:
    """Run test `test` alone on the executable linked in `scratch`, recorded by the guard, and
    cost what it executed (with check_outputs, its outputs are judged against the reference)."""
    res, watch = guarded_run(variant, object_name, seed, scratch, settings, budget_s=budget_s,
                             tests=test + 1, first=test, record=0)
    if res.timed_out:
        raise Failed(ErrorKind.timeout, f"timing run (test {test}) exceeded {budget_s:.1f} s")
    escaped = guard.violation(watch, res.stderr, res.returncode)
    if escaped:
        raise Failed(escaped.kind, f"timing run (test {test}): {escaped.reason}")
    if check_outputs:
        _check_outputs(variant, res, test, reference or ReferenceRun(variant, seed, settings))
    elif res.returncode != 0:
        raise Failed(ErrorKind.crash, f"timing run (test {test}) did not complete "
                     f"(exit status {res.returncode})")
    return measure_timed(timed(watch, 0, scratch), test, scratch, settings)


def measure_timed(run: Timed, test: int, scratch: Path, settings: Settings) -> Measurement:
    """Cost the blocks the guard recorded of test `test`."""
    if run.trace is None:
        raise Failed(ErrorKind.timeout, f"timing run (test {test}): the kernel ran more than "
                     f"{settings.trace_limit_blocks} blocks")
    executed = run.trace
    insns = disassemble(run.image, executed.addresses(), scratch, run.decoded,
                        decoder.words_at(settings.cache_dir))
    calls = sorted(a for a, i in insns.items() if i.mnemonic == "svc")
    if calls:
        raise Failed(ErrorKind.abi_violation, f"timing run (test {test}): the kernel made a "
                     f"system call (svc at {calls[0]:#x})")
    stats = branches.predict(executed_blocks(executed, insns), insns)
    own = lambda a: any(lo <= a < hi for lo, hi in run.code)  # noqa: E731
    return cost(build_profile(executed, insns), stats, scratch, settings, own)


def _check_outputs(variant: Variant, res: sandbox.RunResult, test: int,
                   reference: ReferenceRun) -> None:
    """The traced run must compute what the C computes, like the 20 tests did."""
    records, clean = parse(variant, res.stdout, False, first=test)
    if res.returncode != 0 or not clean or len(records) != 1:
        raise Failed(ErrorKind.crash, f"timing run (test {test}) did not complete "
                     f"(exit status {res.returncode})")
    expected = reference.get().records
    finding = judge(variant, records, [expected[test]])
    if finding:
        raise Failed(finding.kind, f"timing run: {finding.message}")


def cost(profile: Profile, stats: branches.BranchStats, workdir: Path, settings: Settings,
         own: Callable[[int], bool]) -> Measurement:
    """Both models on every loop cycle, weighted by how often it ran, plus the mispredictions
    (which neither pipeline model sees)."""
    if profile.cycle_instructions() != profile.instructions:
        raise InfraError("the loop cycles do not account for every executed instruction")
    cycles = sorted(profile.cycles)
    bodies = [profile.cycle_insns(c) for c in cycles]
    counts = [profile.cycles[c] for c in cycles]
    costs = mca.cycle_costs(bodies, workdir, settings)
    est = osaca_model.estimates(bodies, settings)
    total = sum((c.times(n) for n, c in zip(counts, costs, strict=True)), Fraction(0))
    osaca_total = sum(Fraction(e.first) + (n - 1) * Fraction(e.cycles)
                      for n, e in zip(counts, est, strict=True) if not e.declined)
    pipeline = round(float(max(total, Fraction(1))), 3)
    penalty = stats.cycles if settings.branch_prediction else 0
    return Measurement(
        cycles=round(pipeline + penalty, 3),
        pipeline_cycles=pipeline,
        branch_cycles=penalty,
        branches=stats.to_json(),
        osaca_cycles=round(float(osaca_total), 3),
        instructions=profile.instructions,
        blocks=len(profile.blocks),
        block_executions=sum(profile.blocks.values()),
        loop_cycles=len(cycles),
        osaca_fallbacks=sum(n * e.unknown for n, e in zip(counts, est, strict=True)),
        osaca_declined=sum(e.declined for e in est),
        block_class=crosscheck.block_class(
            ((i, n) for b, n in profile.blocks.items() for i in profile.block_insns(b)), own),
    )


# --------------------------------------------------------------------------- baselines


def baseline_measurement(variant: Variant, compiler: str, seed: int, test: int,
                         settings: Settings) -> tuple[Measurement, bool]:
    """(measurement on this input, whether the baseline's cost depends on its data)."""
    found = [measured(variant, compiler, BASELINE_OPT, s, t, settings) for s, t in PROBES]
    if all(m == found[0] for m in found[1:]):
        return found[0], False
    return measured(variant, compiler, BASELINE_OPT, seed, test, settings), True


def baseline_cycles(variant: Variant, seed: int, settings: Settings) -> dict[str, float]:
    """Cycles of every compiler baseline on the input an attempt with this seed is timed on:
    the figures its verdict's speedup will be computed against (cached like the gate's)."""
    test = timing_test(seed, settings.tests_per_attempt)
    return {c: float(baseline_measurement(variant, c, seed, test, settings)[0].cycles)
            for c in baselines.COMPILERS}


def measured(variant: Variant, compiler: str, opt: str, seed: int, test: int,
             settings: Settings) -> Measurement:
    """A compiler's output for the variant, measured on one input; cached on disk per toolchain,
    harness and model versions."""
    base = baselines.get(variant, compiler, opt, settings=settings)
    path = _path(variant, compiler, opt, base, seed, test, settings)
    stored = _load(path)
    if stored is None:
        stored = asdict(_measure_assembly(variant, base.assembly, seed, test, settings))
        _store(path, stored)
    return Measurement(**stored)


def cached(variant: Variant, compiler: str, opt: str, seed: int, test: int,
           settings: Settings) -> dict[str, Any] | None:
    """The stored measurement `measured` would return, or None when it would have to run."""
    if not (baselines.cache_path(variant.id, compiler, opt, settings).exists()
            and (settings.cache_dir / "perf-baselines" / model_key(settings)
                 / variant.id).exists()):
        return None
    base = baselines.get(variant, compiler, opt, settings=settings)
    return _load(_path(variant, compiler, opt, base, seed, test, settings))


def _path(variant: Variant, compiler: str, opt: str, base: baselines.Baseline, seed: int,
          test: int, settings: Settings) -> Path:
    key = tools.fingerprint(base.toolchain, *base.flags, base.assembly,
                            harness.build(variant, settings).object.parent.name,
                            model_key(settings), str(seed), str(test))
    return (settings.cache_dir / "perf-baselines" / model_key(settings) / variant.id
            / f"{compiler}{opt}-{key[:24]}.json")


# Measured baselines (Measurement fields as JSON), shared by every worker on the machine.
_MEASURED: DiskCache[dict[str, Any]] = DiskCache(
    4096, lambda data: json.dumps(data, sort_keys=True), json.loads)


def _load(path: Path) -> dict[str, Any] | None:
    return _MEASURED.get(path)


def _store(path: Path, data: dict[str, Any]) -> None:
    _MEASURED.put(path, data)


def _measure_assembly(variant: Variant, assembly: str, seed: int, test: int,
                      settings: Settings) -> Measurement:
    """Assemble, link and trace trusted assembly (compiler output) in a scratch directory."""
    scratch = scratch_dirs.make("perf")
    try:
        result, obj = syntax.assemble(assembly, scratch, settings)
        if obj is None:
            raise InfraError(f"baseline of {variant.id} does not assemble: {result.message}")
        failed = link(variant, obj, scratch, settings)
        if failed:
            raise InfraError(f"baseline of {variant.id} does not link: {failed}")
        return measure(variant, scratch, obj.name, seed, test, settings, 120.0, False)
    except Failed as exc:
        raise InfraError(f"baseline of {variant.id} failed its timing run: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- the gates


def performance(variant: Variant, obj: Path, text: str, seed: int, scratch: Path,
                settings: Settings, reference: ReferenceRun | None = None,
                recorded: Timed | None = None) -> tuple[GateResult, Measurement | None]:
    """The performance gate's result and, when it measured, the candidate's measurement (which
    the cross-check gate judges); `recorded`: the correctness run's record of the timing test
    (without it, the timing test runs again on its own)."""
    reference = reference or ReferenceRun(variant, seed, settings)
    test = timing_test(seed, settings.tests_per_attempt)
    # the whole-listing figure is computed while the kernel is traced
    listing = background.submit(settings, mca.whole_listing, text, settings)
    try:
        return _measured_against_baselines(variant, obj, seed, test, scratch, settings, listing,
                                           reference, recorded)
    finally:
        futures.wait([listing])  # never left running, whatever the outcome


def _measured_against_baselines(variant: Variant, obj: Path, seed: int, test: int,
                                scratch: Path, settings: Settings,
                                listing: futures.Future[dict[str, object]],
                                reference: ReferenceRun, recorded: Timed | None
                                ) -> tuple[GateResult, Measurement | None]:
    try:
        if recorded is not None and recorded.test == test:
            cand = measure_timed(recorded, test, scratch, settings)
        else:
            budget = settings.run_timeout_base_s + settings.run_timeout_factor * \
                reference.get().wall_s
            cand = measure(variant, scratch, obj.name, seed, test, settings, budget, True,
                           reference)
    except Failed as exc:
        return GateResult.fail(NAME, exc.kind, str(exc), PerformanceDetails(timing_test=test)), None
    except mca.UnpricedError as exc:
        return GateResult.fail(NAME, ErrorKind.cross_check_disagreement,
                               f"llvm-mca cannot price executed instruction `{exc}`; speedup "
                               "withheld", PerformanceDetails(timing_test=test)), None
    found = {c: baseline_measurement(variant, c, seed, test, settings)
             for c in baselines.COMPILERS}
    best = min(found, key=lambda c: (found[c][0].cycles, c))
    details = PerformanceDetails(
        timing_test=test,
        cycles=cand.cycles,
        speedup=round(found[best][0].cycles / cand.cycles, 6),
        baseline=CompilerCycles(compiler=best, opt=BASELINE_OPT, cycles=found[best][0].cycles,
                                data_dependent=found[best][1]),
        baselines={c: CompilerCycles(cycles=m.cycles, data_dependent=dep)
                   for c, (m, dep) in sorted(found.items())},
        measurement=cand.to_json(),
        branch_prediction={
            "enabled": settings.branch_prediction, "pipeline_cycles": cand.pipeline_cycles,
            "branch_cycles": cand.branch_cycles, **cand.branches,
            "baselines": {c: {"pipeline_cycles": m.pipeline_cycles,
                              "branch_cycles": m.branch_cycles}
                          for c, (m, _) in sorted(found.items())}},
        model={"llvm-mca": list(mca.MCA_FLAGS), "dispatch_width": mca.DISPATCH_WIDTH,
               "cost": "sum over executed loop cycles of C(1) + (count - 1) x steady-state "
                       "cycles, plus mispredictions x penalty",
               "versions": model_versions()},
        whole_listing=listing.result(),
    )
    return GateResult(NAME, True, details=details), cand
