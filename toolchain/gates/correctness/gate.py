"""The correctness gate: link, run candidate and C reference under qemu, compare."""

from __future__ import annotations

import re
import shutil
import signal
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

from ... import sandbox, tools
from ...errors import ErrorKind, InfraError
from ...kernels.model import Variant
from ...settings import Settings, get_settings
from ...verdict import GateResult
from . import harness
from .compare import judge
from .records import Record, parse

NAME = "correctness"
# ld's map of candidate.elf: the performance gate reads where the candidate's sections landed.
MAP_NAME = "candidate.map"
_GUEST_SIGNAL = re.compile(rb"uncaught target signal (\d+)")
_REFERENCE_CACHE: OrderedDict[tuple[str, int, int], tuple[list[Record], float]] = OrderedDict()


def qemu_argv(exe: str, seed: int, tests: int, abs_runs: bool, *, first: int = 0,
              log: tuple[str, str] | None = None) -> list[str]:
    """Tests first..tests-1; `log` = (qemu -d flags, log file) for the performance gate's trace."""
    logging = ["-d", log[0], "-D", log[1]] if log else []
    return [tools.tool("qemu").path, "-cpu", tools.QEMU_CPU, *logging, exe, f"{seed:016x}",
            str(tests), str(int(abs_runs)), *([str(first)] if first else [])]


def needs_abs_run(variant: Variant) -> bool:
    sig = variant.signature
    outs = [a.dtype for a in sig.args if a.pointer and a.role != "in"]
    return any(d.is_float for d in outs + ([sig.ret] if sig.ret else [])) and not \
        variant.tolerance.strict


def reference_records(variant: Variant, seed: int, settings: Settings) -> tuple[list[Record],
                                                                                 float]:
    """Expected records from the C reference, in its own process; memoised per (variant, seed)."""
    key = (variant.id, seed, settings.tests_per_attempt)
    if key in _REFERENCE_CACHE:
        _REFERENCE_CACHE.move_to_end(key)
        return _REFERENCE_CACHE[key]
    built = harness.build(variant, settings)
    with_abs = needs_abs_run(variant)
    scratch = Path(tempfile.mkdtemp(prefix="armgym-ref-"))
    try:
        res = sandbox.run(
            qemu_argv(str(built.reference), seed, settings.tests_per_attempt, with_abs), scratch,
            timeout_s=120, ro_files=[built.reference], confine=False, settings=settings,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    records, clean = parse(variant, res.stdout, with_abs)
    if res.returncode != 0 or not clean or len(records) != settings.tests_per_attempt:
        raise InfraError(f"C reference of {variant.id} failed (status {res.returncode}): "
                         f"{res.stderr.decode(errors='replace')[-500:]}")
    _REFERENCE_CACHE[key] = (records, res.wall_s)
    while len(_REFERENCE_CACHE) > 256:
        _REFERENCE_CACHE.popitem(last=False)
    return records, res.wall_s


def link(variant: Variant, obj: Path, scratch: Path, settings: Settings) -> GateResult | None:
    built = harness.build(variant, settings)
    res = sandbox.run(
        tools.link_argv([str(built.object), obj.name], "candidate.elf", MAP_NAME), scratch,
        timeout_s=settings.link_timeout_s, ro_files=[built.object, *tools.link_ro_files()],
        settings=settings,
    )
    if res.returncode != 0 or not (scratch / "candidate.elf").exists():
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
    res = sandbox.run(
        qemu_argv("./candidate.elf", seed, tests, False), scratch, timeout_s=budget,
        limits=sandbox.Limits(cpu_seconds=int(budget) + 2), settings=settings,
        writable=False,  # the records go to stdout; the candidate may not write a file at all
    )
    records, clean = parse(variant, res.stdout, False)
    done = len(records)
    if res.timed_out:
        return GateResult.fail(NAME, ErrorKind.timeout, f"test {done}: no return within "
                               f"{budget:.1f} s", test=done, budget_s=round(budget, 1))
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
