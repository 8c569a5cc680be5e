"""The link of a candidate with its harness, the emulator's command line, and the C reference.

The reference's records are what a candidate is judged against (correctness) and where the timed
input comes from (performance). An attempt holds one `ReferenceRun`: started early, it runs in
the background while the candidate is assembled and checked; whoever needs the records waits for
it instead of running the C again.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import shutil
import struct
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from .. import VERIFIER_VERSION, background, kernels, sandbox, tools
from .. import scratch as scratch_dirs
from ..cache import DiskCache, prune
from ..decoder import Insn
from ..errors import InfraError
from ..kernels.model import Variant
from ..settings import Settings
from . import blocks, guard, harness, place, reference_server
from .blocks import Trace
from .harness import RANDOM_TESTS
from .records import Record, parse, split_inputs

# Where the candidate's code sections landed in candidate.elf: ld's map when ld linked it, the
# placement's code ranges (guard.LAYOUT_NAME) when it was placed without ld.
MAP_NAME = "candidate.map"
EXE_NAME = "candidate.elf"


@dataclass(frozen=True)
class Reference:
    records: list[Record]  # what the C computes on each of the attempt's tests
    wall_s: float  # how long the C took: the candidate's time budget scales with it
    inputs: dict[int, bytes]  # pointer arguments of the tests the performance gate traces
    variant_id: str = ""
    stream: bytes = field(default=b"", repr=False)  # the harness's records, as the C wrote them


# References depend only on (variant, seed): the attempts of a GRPO group with a shared seed
# (verify.group_seed) need one reference run between them, whichever worker process takes
# each. One memory-plus-file cache (cache.DiskCache): a few decoded entries in memory, as one
# can hold megabytes of buffers, and a bounded directory on disk that every worker process of
# the machine shares; a file lock per key makes the first process that needs a reference run
# it while the others wait for its file instead of running it too.
REFERENCE_MEMORY = 32
REFERENCE_FILES = 256  # each a few hundred kB, up to megabytes for the largest variants
PRUNE_EVERY = 32  # puts between two prunings of the directory
LOCK_STRIPES = 256


# A reference's file: this line, one line of JSON saying what follows (variant, wall_s, test
# count, the byte lengths of the stream and of each test's inputs), then those bytes as they are.
FILE_MAGIC = b"armgym-reference 1\n"
FILE_SUFFIX = ".ref"
OLD_SUFFIX = ".json"  # the text files of earlier versions: never read, removed by the pruning


def _encode(ref: Reference) -> bytes:
    header = {"variant": ref.variant_id, "wall_s": ref.wall_s, "tests": len(ref.records),
              "stream": len(ref.stream), "inputs": [[t, len(b)] for t, b in ref.inputs.items()]}
    return b"".join([FILE_MAGIC, json.dumps(header).encode(), b"\n", ref.stream,
                     *ref.inputs.values()])


def _header(line: bytes) -> tuple[str, float, int, int, list[tuple[int, int]]]:
    """(variant, wall_s, tests, stream's length, (test, inputs' length) pairs) from a file's
    JSON line, or ValueError when it is not JSON or a field is missing or of the wrong kind."""
    try:
        doc = json.loads(line)
        variant, wall_s, tests, stream = doc["variant"], doc["wall_s"], doc["tests"], doc["stream"]
        inputs = [(t, n) for t, n in doc["inputs"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a stored reference: {exc}") from exc
    counts = [tests, stream, *(x for pair in inputs for x in pair)]
    if type(variant) is not str or type(wall_s) not in (int, float) or any(
            type(c) is not int or c < 0 for c in counts):
        raise ValueError("not a stored reference: a field of the wrong kind")
    return variant, float(wall_s), tests, stream, inputs


def _decode(data: bytes) -> Reference:
    """A stored reference, parsed again as the run's own output was (a file that is cut short,
    claims other lengths than it holds or does not parse into the records it claims is a miss:
    DiskCache treats ValueError so)."""
    end = data.find(b"\n", len(FILE_MAGIC))
    if not data.startswith(FILE_MAGIC) or end < 0:
        raise ValueError("not a stored reference")
    variant_id, wall_s, tests, size, sizes = _header(data[len(FILE_MAGIC):end])
    body = memoryview(data)[end + 1:]
    if size + sum(n for _, n in sizes) != len(body):
        raise ValueError("a stored reference whose lengths are not its size")
    try:
        variant = kernels.get(variant_id)
    except KeyError as exc:
        raise ValueError(f"not a stored reference: {exc}") from exc
    stream, pos = bytes(body[:size]), size
    inputs: dict[int, bytes] = {}
    for test, n in sizes:
        inputs[test], pos = bytes(body[pos:pos + n]), pos + n
    records, clean = parse(variant, stream, needs_abs_run(variant))
    if not clean or len(records) != tests:
        raise ValueError("a stored reference that does not parse")
    return Reference(records, wall_s, inputs, variant.id, stream)


_REFERENCES: DiskCache[Reference] = DiskCache(REFERENCE_MEMORY, _encode, _decode,
                                                binary=True)
_PUTS = itertools.count(1)


def reference_dir(settings: Settings) -> Path:
    """Where the references' files are (the benchmark empties it before each timed pass)."""
    return settings.cache_dir / "references"


def _entry(variant: Variant, built: harness.Harness, seed: int, tests: int,
           settings: Settings) -> Path:
    """The file of a reference: keyed by the verifier's version, the harness build (the
    variant's C, the harness, the compilers and flags: its directory's name), seed and tests."""
    key = tools.fingerprint(VERIFIER_VERSION, built.object.parent.name, variant.id, str(seed),
                            str(tests))
    return reference_dir(settings) / f"{key}{FILE_SUFFIX}"


@contextlib.contextmanager
def _exclusive(entry: Path) -> Iterator[None]:
    """Hold the lock stripe of `entry` (flock: released if the holder dies); without a writable
    directory, no lock: each process then runs its own reference, as before the cache."""
    locks = entry.parent / "locks"
    try:
        locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(locks / entry.name[:2], os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


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
        with contextlib.suppress(InfraError):  # a harness that cannot be built: raised by get
            if cached(self.variant, self.seed, self.settings) is not None:
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


def cached(variant: Variant, seed: int, settings: Settings,
           inputs_of: int | None = None) -> Reference | None:
    """The stored reference of (variant, seed) with the inputs of test `inputs_of` (default:
    the timing test), or None."""
    tests = harness.test_count(variant, settings)
    wanted = timing_test(seed, tests) if inputs_of is None else inputs_of
    known = _REFERENCES.get(_entry(variant, harness.build(variant, settings), seed, tests,
                                   settings))
    return known if known is not None and wanted in known.inputs else None


def reference(variant: Variant, seed: int, settings: Settings, inputs_of: int | None = None
              ) -> Reference:
    """The C reference on the attempt's tests, in its own process, with the inputs of test
    `inputs_of` (default: the timing test); cached per (variant, seed, verifier version), and
    run by one process at a time per key."""
    found = cached(variant, seed, settings, inputs_of)
    if found is not None:
        reference_server.count("cached")
        return found
    tests = harness.test_count(variant, settings)
    built = harness.build(variant, settings)
    entry = _entry(variant, built, seed, tests, settings)
    with _exclusive(entry):
        found = cached(variant, seed, settings, inputs_of)  # run meanwhile by another process
        if found is not None:
            reference_server.count("cached")
        else:
            found = _run_reference(variant, built, seed, tests, settings,
                                   timing_test(seed, tests) if inputs_of is None else inputs_of,
                                   _REFERENCES.get(entry))
            try:
                _REFERENCES.put(entry, found)
                if next(_PUTS) % PRUNE_EVERY == 0:
                    prune(entry.parent, REFERENCE_FILES, FILE_SUFFIX)
                    prune(entry.parent, 0, OLD_SUFFIX)
            except OSError:
                pass  # a full or read-only disk costs a run per attempt, never a verdict
    return found


REFERENCE_TIMEOUT_S = 120


def _run_reference(variant: Variant, built: harness.Harness, seed: int, tests: int,
                   settings: Settings, wanted: int, known: Reference | None) -> Reference:
    """Run the C on tests 0..tests-1, writing test `wanted`'s inputs too (merged with those of
    `known`, an earlier run of the same key): answered by the variant's reference server
    (reference_server.py) when it can, else (or when its answer does not parse: the server is
    then killed) in a process of its own, whose failure is InfraError."""
    argv = qemu_argv(str(built.reference), seed, tests, needs_abs_run(variant),
                     mode=f"D{wanted}")
    served = reference_server.run(argv, built.reference, settings, REFERENCE_TIMEOUT_S)
    if served is not None:
        try:
            return _reference_of(variant, served, tests, wanted, known)
        except InfraError:
            reference_server.count("unparsed")
            reference_server.discard(argv, built.reference)
    scratch = scratch_dirs.make("ref")
    try:
        res = sandbox.run(argv, scratch, timeout_s=REFERENCE_TIMEOUT_S,
                          ro_files=[built.reference], confine=False, settings=settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _reference_of(variant, res, tests, wanted, known)


def _reference_of(variant: Variant, res: sandbox.RunResult, tests: int, wanted: int,
                  known: Reference | None) -> Reference:
    """The reference a run of the C wrote, or InfraError when it failed or does not parse."""
    inputs, stream = split_inputs(variant, res.stdout, wanted)
    records, clean = parse(variant, stream, needs_abs_run(variant))
    if res.returncode != 0 or inputs is None or not clean or len(records) != tests:
        raise InfraError(f"C reference of {variant.id} failed (status {res.returncode}): "
                         f"{res.stderr.decode(errors='replace')[-500:]}")
    return Reference(records, res.wall_s, {**(known.inputs if known else {}), wanted: inputs},
                     variant.id, stream)


_TEMPLATES: dict[Path, place.Template] = {}


def _template(variant: Variant, built: harness.Harness) -> place.Template:
    """The variant's slotted harness, read once per process (again if its file changed); a few
    KiB each (its layout, not its bytes), so every variant of the catalogue fits."""
    known = _TEMPLATES.get(built.slotted)
    if known is None or not place.current(known):
        try:
            _TEMPLATES[built.slotted] = place.Template.read(built.slotted,
                                                            variant.math_functions)
        except (OSError, ValueError, IndexError, StopIteration, struct.error) as exc:
            raise InfraError(f"cannot read the slotted harness of {variant.id}: {exc}") from exc
    return _TEMPLATES[built.slotted]


def place_candidate(variant: Variant, obj: Path, scratch: Path, settings: Settings) -> bool:
    """Place `obj` into the variant's slotted harness as scratch/candidate.elf, without ld
    (execution/place.py); False when the fast path does not take the object."""
    built = harness.build(variant, settings)
    try:
        placed = place.place(obj.read_bytes(), _template(variant, built))
    except place.Unplaceable:
        return False
    except OSError as exc:
        raise InfraError(f"cannot read the assembled object or the slotted harness: "
                         f"{exc.strerror}") from exc
    guard.write_layout(scratch, placed.code, placed.data)
    exe = scratch / EXE_NAME
    try:
        placed.write(exe)
    except OSError as exc:
        raise InfraError(f"cannot write the placed executable: {exc}") from exc
    exe.chmod(0o755)
    return True


def link(variant: Variant, obj: Path, scratch: Path, settings: Settings) -> str | None:
    """Link `obj` with the variant's harness into scratch/candidate.elf (and where its code
    went): placed in process when the object is one the fast path takes and
    settings.link_in_process, else by ld in the sandbox; the linker's message when that failed,
    else None."""
    if settings.link_in_process and place_candidate(variant, obj, scratch, settings):
        return None
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
