"""The correctness gate: link, run candidate and C reference under qemu, compare."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from ... import background, sandbox, tools
from ... import scratch as scratch_dirs
from ...errors import ErrorKind, InfraError
from ...kernels.model import Variant
from ...settings import Settings, get_settings
from ...verdict import GateResult
from . import guard, harness
from .compare import RANDOM_TESTS, judge
from .records import Record, parse, split_inputs

NAME = "correctness"
# ld's map of candidate.elf: the performance gate reads where the candidate's sections landed.
MAP_NAME = "candidate.map"
EXE_NAME = "candidate.elf"
_GUEST_SIGNAL = re.compile(rb"uncaught target signal (\d+)")


@dataclass(frozen=True)
class Reference:
    records: list[Record]  # what the C computes on each of the attempt's tests
    wall_s: float  # how long the C took: the candidate's time budget scales with it
    inputs: dict[int, bytes]  # pointer arguments of the tests the performance gate traces


# Seeds differ per attempt, so a reference is rarely reused beyond its own verification (and the
# performance gate's baseline probes): a few entries, as one can hold megabytes of buffers.
REFERENCE_ENTRIES = 32
_REFERENCE_CACHE: OrderedDict[tuple[str, int, int], Reference] = OrderedDict()
_PENDING: dict[tuple[str, int, int], Future[Reference]] = {}
_LOCK = threading.Lock()


def timing_test(seed: int, tests: int) -> int:
    """The randomized test whose input is timed: drawn from the attempt's seed (tests 0-9 and
    20-30 are fixed edge cases, positions and corners; 10-19 are random)."""
    random = [t for t in RANDOM_TESTS if t < tests]
    return random[seed % len(random)] if random else seed % tests


def qemu_argv(exe: str, seed: int, tests: int, abs_runs: bool, *, first: int = 0,
              log: tuple[str, str] | None = None, mode: str = "",
              plugin: Sequence[str] = ()) -> list[str]:
    """Tests first..tests-1; `log` = (qemu -d flags, log file) for the performance gate's trace;
    `mode` is the harness's: D<k> also writes test k's inputs, S reads inputs from stdin;
    `plugin`: qemu's -plugin arguments (the execution guard)."""
    logging = ["-d", log[0], "-D", log[1]] if log else []
    extra = [str(first), mode] if mode else [str(first)] if first else []
    return [tools.tool("qemu").path, "-cpu", tools.QEMU_CPU, *logging, *plugin, exe,
            f"{seed:016x}", str(tests), str(int(abs_runs)), *extra]


def needs_abs_run(variant: Variant) -> bool:
    sig = variant.signature
    outs = [a.dtype for a in sig.args if a.pointer and a.role != "in"]
    return any(d.is_float for d in outs + ([sig.ret] if sig.ret else [])) and not \
        variant.tolerance.strict


def prefetch(variant: Variant, seed: int, settings: Settings) -> None:
    """Start the C reference in the background, so it overlaps the candidate's assembler, object
    checks and link; `reference` then waits for it instead of running it again."""
    key = (variant.id, seed, settings.tests_per_attempt)
    if not settings.overlap:
        return  # run when needed, in the caller's thread
    with _LOCK:
        if key in _REFERENCE_CACHE or key in _PENDING:
            return
        _PENDING[key] = background.submit(settings, _prefetched, variant, seed, settings, key)


def settle(variant: Variant, seed: int, settings: Settings) -> None:
    """Wait for a prefetched reference run, so a verification that stopped before needing it
    leaves no process running behind it."""
    with _LOCK:
        pending = _PENDING.get((variant.id, seed, settings.tests_per_attempt))
    if pending is not None:
        futures.wait([pending])


def _prefetched(variant: Variant, seed: int, settings: Settings,
                key: tuple[str, int, int]) -> Reference:
    try:
        return _reference(variant, seed, settings, None)
    finally:
        with _LOCK:
            _PENDING.pop(key, None)


def reference(variant: Variant, seed: int, settings: Settings, inputs_of: int | None = None
              ) -> Reference:
    """The C reference on the attempt's tests, in its own process, with the inputs of test
    `inputs_of` (default: the timing test); memoised per (variant, seed)."""
    with _LOCK:
        pending = _PENDING.get((variant.id, seed, settings.tests_per_attempt))
    if pending is not None:
        with contextlib.suppress(Exception):  # a failure is raised again by running it here
            pending.result()
    return _reference(variant, seed, settings, inputs_of)


def _reference(variant: Variant, seed: int, settings: Settings, inputs_of: int | None
               ) -> Reference:
    tests = settings.tests_per_attempt
    wanted = timing_test(seed, tests) if inputs_of is None else inputs_of
    key = (variant.id, seed, tests)
    with _LOCK:
        known = _REFERENCE_CACHE.get(key)
        if known is not None:
            _REFERENCE_CACHE.move_to_end(key)
            if wanted in known.inputs:
                return known
    built = harness.build(variant, settings)
    with_abs = needs_abs_run(variant)
    scratch = scratch_dirs.make("ref")
    try:
        res = sandbox.run(
            qemu_argv(str(built.reference), seed, tests, with_abs, mode=f"D{wanted}"), scratch,
            timeout_s=120, ro_files=[built.reference], confine=False, settings=settings,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    inputs, stream = split_inputs(variant, res.stdout, wanted)
    records, clean = parse(variant, stream, with_abs)
    if res.returncode != 0 or inputs is None or not clean or len(records) != tests:
        raise InfraError(f"C reference of {variant.id} failed (status {res.returncode}): "
                         f"{res.stderr.decode(errors='replace')[-500:]}")
    found = Reference(records, res.wall_s, {**(known.inputs if known else {}), wanted: inputs})
    with _LOCK:
        _REFERENCE_CACHE[key] = found
        while len(_REFERENCE_CACHE) > REFERENCE_ENTRIES:
            _REFERENCE_CACHE.popitem(last=False)
    return found


def reference_records(variant: Variant, seed: int, settings: Settings) -> tuple[list[Record],
                                                                                 float]:
    """Expected records from the C reference and its wall time."""
    ref = reference(variant, seed, settings)
    return ref.records, ref.wall_s


def link(variant: Variant, obj: Path, scratch: Path, settings: Settings) -> GateResult | None:
    built = harness.build(variant, settings)
    res = sandbox.run(
        tools.link_argv([str(built.object), obj.name], EXE_NAME, MAP_NAME, runtime=False),
        scratch, timeout_s=settings.link_timeout_s, ro_files=[built.object],
        settings=settings,
    )
    if res.returncode != 0 or not (scratch / EXE_NAME).exists():
        text = res.stderr.decode(errors="replace")
        lines = [ln.split(": ", 1)[-1] for ln in text.splitlines() if ln.strip()][:5]
        msg = "; ".join(lines) or ("linker timed out" if res.timed_out else "link failed")
        return GateResult.fail(NAME, ErrorKind.link_error, msg)
    return None


def run(variant: Variant, obj: Path, seed: int, scratch: Path,
        settings: Settings | None = None) -> GateResult:
    """Link `obj` (already through the object checks) and judge it on the attempt's tests."""
    settings = settings or get_settings()
    start = time.perf_counter()
    result = _run(variant, obj, seed, scratch, settings)
    result.seconds = time.perf_counter() - start
    return result


def _run(variant: Variant, obj: Path, seed: int, scratch: Path, settings: Settings) -> GateResult:
    tests = settings.tests_per_attempt
    expected, ref_wall = reference_records(variant, seed, settings)
    failed = link(variant, obj, scratch, settings)
    if failed:
        return failed
    budget = settings.run_timeout_base_s + settings.run_timeout_factor * ref_wall
    watch = guard.for_link(scratch, EXE_NAME, MAP_NAME, obj.name, variant.math_functions,
                           settings.cache_dir)
    res = sandbox.run(
        qemu_argv(f"./{EXE_NAME}", seed, tests, False,
                  plugin=watch.qemu_args(str(watch.plugin))),
        scratch, timeout_s=budget, ro_files=[watch.plugin],
        limits=sandbox.Limits(cpu_seconds=int(budget) + 2), settings=settings,
        writable=False,  # the records go to stdout; the candidate may not write a file at all
    )
    records, clean = parse(variant, res.stdout, False)
    done = len(records)
    if res.timed_out:
        return GateResult.fail(NAME, ErrorKind.timeout, f"test {done}: no return within "
                               f"{budget:.1f} s", test=done, budget_s=round(budget, 1))
    escaped = guard.violation(watch, res.stderr, res.returncode)
    if escaped:
        return GateResult.fail(NAME, ErrorKind.abi_violation, f"test {done}: {escaped}",
                               test=done)
    guest = _GUEST_SIGNAL.search(res.stderr)
    sig = int(guest.group(1)) if guest else _host_signal(res.returncode)
    if sig == signal.SIGXCPU:
        return GateResult.fail(NAME, ErrorKind.timeout, f"test {done}: CPU budget exhausted",
                               test=done)
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return GateResult.fail(NAME, ErrorKind.crash, f"test {done}: kernel died with {name}",
                               test=done, signal=name)
    if res.returncode != 0 or not clean or done != tests:
        return GateResult.fail(NAME, ErrorKind.crash, f"test {done}: the harness did not run to "
                               f"completion (exit status {res.returncode})", test=done)
    finding = judge(variant, records, expected)
    if finding:
        return GateResult.fail(NAME, finding.kind, finding.message, **finding.details)
    return GateResult(NAME, True, details={"tests": tests})


def _host_signal(returncode: int) -> int | None:
    if returncode < 0:
        return -returncode
    if returncode > 128 and returncode - 128 < 65:  # bwrap reports a signalled child as 128+n
        return returncode - 128
    return None
