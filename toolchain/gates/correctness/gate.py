"""The correctness gate: link, run candidate and C reference under qemu, compare.

The candidate's one emulator run covers every test under the execution guard, which also records
the executed blocks of the timing test for the performance gate (execution/blocks.py).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

from ... import sandbox
from ...errors import ErrorKind, GateName
from ...execution import Linked, ReferenceRun, Timed, guard, guarded_run, harness, prepare, timed
from ...execution.records import Record, parse
from ...kernels.model import Variant
from ...settings import Settings
from ...verdict import CorrectnessDetails, GateResult
from .compare import judge

NAME = GateName.correctness.value
_GUEST_SIGNAL = re.compile(rb"uncaught target signal (\d+)")


def run(variant: Variant, obj: Path, seed: int, scratch: Path, settings: Settings,
        reference: ReferenceRun | None = None) -> GateResult:
    """Link `obj` (already through the object checks) and judge it on the attempt's tests
    against the attempt's C reference run."""
    return run_timed(variant, obj, seed, scratch, settings, reference, None)[0]


def run_timed(variant: Variant, obj: Path, seed: int, scratch: Path, settings: Settings,
              reference: ReferenceRun | None, timing: int | None, linked: Linked | None = None
              ) -> tuple[GateResult, Timed | None]:
    """`run`, recording the blocks of test `timing` as well (when given and the tests pass);
    `linked`: the link and guard the object gate already made."""
    result, watch = _run(variant, obj, seed, scratch, settings, reference, timing, linked)
    if not result.passed or watch is None or watch.record is None:
        return result, None
    return result, timed(watch, watch.record, scratch)


def _run(variant: Variant, obj: Path, seed: int, scratch: Path, settings: Settings,
         reference: ReferenceRun | None, timing: int | None, linked: Linked | None
         ) -> tuple[GateResult, guard.Guard | None]:
    reference = reference or ReferenceRun(variant, seed, settings)
    tests = harness.test_count(variant, settings)
    ref = reference.get()
    expected = ref.records
    linked = linked or prepare(variant, obj, scratch, settings, timing)
    if linked.error:
        return GateResult.fail(NAME, ErrorKind.link_error, linked.error), None
    budget = settings.run_timeout_base_s + settings.run_timeout_factor * ref.wall_s
    res, watch = guarded_run(variant, obj.name, seed, scratch, settings, budget_s=budget,
                             tests=tests, watch=linked.guard())
    return _judged(variant, res, watch, tests, budget, expected), watch


def _judged(variant: Variant, res: sandbox.RunResult, watch: guard.Guard, tests: int,
            budget: float, expected: list[Record]) -> GateResult:
    records, clean = parse(variant, res.stdout, False)
    done = len(records)
    if res.timed_out:
        return GateResult.fail(NAME, ErrorKind.timeout, f"test {done}: no return within "
                               f"{budget:.1f} s",
                               CorrectnessDetails(test=done, budget_s=round(budget, 1)))
    escaped = guard.violation(watch, res.stderr, res.returncode)
    if escaped:
        return GateResult.fail(NAME, escaped.kind, f"test {done}: {escaped.reason}",
                               CorrectnessDetails(test=done))
    guest = _GUEST_SIGNAL.search(res.stderr)
    sig = int(guest.group(1)) if guest else _host_signal(res.returncode)
    if sig == signal.SIGXCPU:
        return GateResult.fail(NAME, ErrorKind.timeout, f"test {done}: CPU budget exhausted",
                               CorrectnessDetails(test=done))
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return GateResult.fail(NAME, ErrorKind.crash, f"test {done}: kernel died with {name}",
                               CorrectnessDetails(test=done, signal=name))
    if res.returncode != 0 or not clean or done != tests:
        return GateResult.fail(NAME, ErrorKind.crash, f"test {done}: the harness did not run to "
                               f"completion (exit status {res.returncode})",
                               CorrectnessDetails(test=done))
    finding = judge(variant, records, expected)
    if finding:
        return GateResult.fail(NAME, finding.kind, finding.message, finding.details)
    return GateResult(NAME, True, details=CorrectnessDetails(tests=tests))


def _host_signal(returncode: int) -> int | None:
    if returncode < 0:
        return -returncode
    if returncode > 128 and returncode - 128 < 65:  # bwrap reports a signalled child as 128+n
        return returncode - 128
    return None
