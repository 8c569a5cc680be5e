"""The link of a candidate with its harness, the emulator's command line, and the C reference.

The reference's records are what a candidate is judged against (correctness) and where the timed
input comes from (performance). An attempt holds one `ReferenceRun`: started early, it runs in
the background while the candidate is assembled and checked; whoever needs the records waits for
it instead of running the C again.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from .. import background, sandbox, tools
from .. import scratch as scratch_dirs
from ..decoder import Insn
from ..errors import InfraError
from ..kernels.model import Variant
from ..settings import Settings
from . import blocks, guard, harness
from .blocks import Trace
from .harness import RANDOM_TESTS
from .records import Record, parse, split_inputs

# ld's map of candidate.elf: the performance gate reads where the candidate's sections landed.
MAP_NAME = "candidate.map"
EXE_NAME = "candidate.elf"


@dataclass(frozen=True)
class Reference:
    records: list[Record]  # what the C computes on each of the attempt's tests
    wall_s: float  # how long the C took: the candidate's time budget scales with it
    inputs: dict[int, bytes]  # pointer arguments of the tests the performance gate traces


# Seeds differ per attempt, so a reference is rarely reused beyond its own verification (and the
# performance gate's baseline probes): a few entries, as one can hold megabytes of buffers.
REFERENCE_ENTRIES = 32
_REFERENCE_CACHE: OrderedDict[tuple[str, int, int], Reference] = OrderedDict()
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


class ReferenceRun:
    """The C reference of one attempt (variant, seed): `start` runs it in the background, `get`
    waits for that run instead of starting another, `settle` waits so that an attempt that
    stopped before needing it leaves no process behind."""

    def __init__(self, variant: Variant, seed: int, settings: Settings) -> None:
        self.variant, self.seed, self.settings = variant, seed, settings
        self._pending: Future[Reference] | None = None

    def start(self) -> None:
        if not self.settings.overlap or self._pending is not None:
            return  # run when needed, in the caller's thread
        with _LOCK:
            key = (self.variant.id, self.seed, harness.test_count(self.variant, self.settings))
            if key in _REFERENCE_CACHE:
                return
        self._pending = background.submit(self.settings, reference, self.variant, self.seed,
                                          self.settings)

    def get(self, inputs_of: int | None = None) -> Reference:
        """The reference with the inputs of test `inputs_of` (default: the timing test)."""
        if self._pending is not None:
            with contextlib.suppress(Exception):  # a failure is raised again by running it here
                self._pending.result()
        return reference(self.variant, self.seed, self.settings, inputs_of)

    def settle(self) -> None:
        if self._pending is not None:
            futures.wait([self._pending])


def reference(variant: Variant, seed: int, settings: Settings, inputs_of: int | None = None
              ) -> Reference:
    """The C reference on the attempt's tests, in its own process, with the inputs of test
    `inputs_of` (default: the timing test); memoised per (variant, seed)."""
    tests = harness.test_count(variant, settings)
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


def link(variant: Variant, obj: Path, scratch: Path, settings: Settings) -> str | None:
    """Link `obj` with the variant's harness into scratch/candidate.elf (and its map); the
    linker's message when that failed, else None."""
    built = harness.build(variant, settings)
    res = sandbox.run(
        tools.link_argv([str(built.object), obj.name], EXE_NAME, MAP_NAME, runtime=False),
        scratch, timeout_s=settings.link_timeout_s, ro_files=[built.object],
        settings=settings,
    )
    if res.returncode != 0 or not (scratch / EXE_NAME).exists():
        text = res.stderr.decode(errors="replace")
        lines = [ln.split(": ", 1)[-1] for ln in text.splitlines() if ln.strip()][:5]
        return "; ".join(lines) or ("linker timed out" if res.timed_out else "link failed")
    return None


@dataclass(frozen=True)
class Timed:
    """The timing test as the guard recorded it, for the performance gate to cost."""

    test: int
    image: guard.Image  # the linked executable as read before the run
    code: tuple[guard.Range, ...]  # the candidate's code sections in it
    trace: Trace | None  # None: the call ran more blocks than trace_limit_blocks
    decoded: Mapping[int, Insn] | None = None  # all it may execute, decoded (Guard.decoded)


@dataclass(frozen=True)
class Linked:
    """The candidate linked with its harness, and the guard of its run, made before its tests
    (by the object gate, so that its decoder pass covers the linked code too)."""

    error: str | None  # ld's message when the link failed
    watch: guard.Guard | None = None
    failure: InfraError | None = None  # the guard could not be built: raised by the run

    def guard(self) -> guard.Guard:
        if self.failure is not None:
            raise self.failure
        assert self.watch is not None
        return self.watch


def prepare(variant: Variant, obj: Path, scratch: Path, settings: Settings,
            record: int | None = None) -> Linked:
    """Link `obj` and build the guard for its run (recording call `record`)."""
    failed = link(variant, obj, scratch, settings)
    if failed:
        return Linked(failed)
    try:
        return Linked(None, _guard(variant, obj.name, scratch, settings, record))
    except InfraError as exc:
        return Linked(None, failure=exc)


def _guard(variant: Variant, object_name: str, scratch: Path, settings: Settings,
           record: int | None) -> guard.Guard:
    return guard.for_link(scratch, EXE_NAME, MAP_NAME, object_name, variant.math_functions,
                          settings.cache_dir, record, settings.trace_limit_blocks)


def guarded_run(variant: Variant, object_name: str, seed: int, scratch: Path,
                settings: Settings, *, budget_s: float, tests: int, first: int = 0,
                record: int | None = None, watch: guard.Guard | None = None
                ) -> tuple[sandbox.RunResult, guard.Guard]:
    """Tests first..tests-1 of the candidate linked in `scratch`, under the execution guard
    (`watch`, or one built now); with `record`, the guard also records the blocks of that
    kernel call (0 = test `first`)."""
    if watch is None:
        watch = _guard(variant, object_name, scratch, settings, record)
    record = watch.record
    res = sandbox.run(
        qemu_argv(f"./{EXE_NAME}", seed, tests, False, first=first,
                  plugin=watch.qemu_args(str(watch.plugin))),
        scratch, timeout_s=budget_s, ro_files=[watch.plugin],
        limits=sandbox.Limits(cpu_seconds=int(budget_s) + 2), settings=settings,
        # the records go to stdout; the candidate may not write a file at all (the guard's
        # record is written by the plugin, at exit)
        writable=[blocks.RECORD_NAME] if record is not None else False,
    )
    return res, watch


def timed(watch: guard.Guard, test: int, scratch: Path) -> Timed:
    """What the guard recorded of test `test` in a run that completed."""
    try:
        trace: Trace | None = watch.recorded(scratch)
    except blocks.OverBudget:
        trace = None
    assert watch.image is not None
    return Timed(test, watch.image, watch.code, trace, watch.decoded)
