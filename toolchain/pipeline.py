"""The gates, in order, as one list: each a name and a check over the attempt context.

A check returns a `GateResult` (passed or failed), or None for a pass with nothing to report;
`run` names and times every result in one place, stops at the first failure, and lets an
`InfraError` through (verify() turns it into an `infra_error` verdict). To add a gate, write a
check `(Attempt) -> GateResult | None`, give it a name in `GateName` and put a `Step` where it
belongs in `gates()` (docs/gates.md, "Adding a gate").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from . import decoder, execution, kernels
from .attempt import Attempt
from .completion import extract_assembly
from .errors import ErrorKind, GateName
from .gates import correctness, object_checks, syntax
from .gates.performance import crosscheck
from .gates.performance import gate as performance
from .kernels.model import Variant
from .settings import Settings
from .verdict import GateResult, PerformanceDetails


class Gate(Protocol):
    name: GateName

    def run(self, attempt: Attempt) -> GateResult | None: ...


@dataclass(frozen=True)
class Step:
    """A gate made of a function."""

    name: GateName
    run: Callable[[Attempt], GateResult | None]


def _input(a: Attempt) -> GateResult | None:
    found = syntax.check_input(a.submission, a.settings)
    if found is None:
        a.text = syntax.decode_source(a.submission)
    return found


def _format(a: Attempt) -> GateResult | None:
    body = extract_assembly(a.text)
    if not body:
        return GateResult.fail(GateName.format, ErrorKind.format_error,
                               "expected exactly one <assembly>...</assembly> block")
    a.text = body
    return None


def _variant(a: Attempt) -> GateResult | None:
    try:
        a.variant = kernels.get(a.variant_id)
    except KeyError:
        return GateResult.fail(GateName.variant, ErrorKind.unknown_variant,
                               f"unknown variant id {a.variant_id[:100]!r}")
    return None


def _directives(a: Attempt) -> GateResult | None:
    return syntax.check_directives(a.text)


def _assemble(a: Attempt) -> GateResult:
    result, a.object = syntax.assemble(a.text, a.scratch, a.settings)
    return result


def _object(a: Attempt) -> GateResult:
    """The object checks; once the cheap ones pass, the link and the guard of the tests' run
    are made here, so that one decoder pass serves the object check (the object's words) and
    the performance gate (all the linked kernel may execute). A link failure is still the
    correctness gate's to report, after the object check."""
    assert a.variant is not None and a.object is not None
    a.reference.start()  # the C reference runs while the object is checked
    result, a.linked = check_and_link(a.variant, a.object, a.scratch, a.seed, a.settings)
    return result


def check_and_link(variant: Variant, obj: Path, scratch: Path, seed: int, settings: Settings
                   ) -> tuple[GateResult, execution.Linked | None]:
    """The object gate, and the link for the tests' run where its cheap checks pass; the linked
    code's watch carries the decoder pass's instructions. `armgym prepare --warm` calls this
    too, so its warm-up fills exactly the caches an attempt reads."""
    allowed = frozenset(variant.math_functions)
    checked = object_checks.check_static(obj, allowed, settings)
    if isinstance(checked, GateResult):
        return checked, None
    timing = execution.timing_test(seed, settings.tests_per_attempt)
    linked = execution.prepare(variant, obj, scratch, settings, timing)
    watch = linked.watch
    result, decoded = object_checks.finish(checked, allowed, scratch,
                                           watch.chunks() if watch else (),
                                           decoder.words_at(settings.cache_dir))
    if watch is not None:
        words = {addr: insn for chunk in decoded for addr, insn in chunk.insns.items()}
        linked = replace(linked, watch=replace(watch, decoded=words))
    return result, linked


def _correctness(a: Attempt) -> GateResult:
    """The tests, in one emulator run that also records the timing test's blocks."""
    assert a.variant is not None and a.object is not None
    timing = execution.timing_test(a.seed, a.settings.tests_per_attempt)
    result, a.timed = correctness.run_timed(a.variant, a.object, a.seed, a.scratch, a.settings,
                                            a.reference, timing, a.linked)
    return result


def _performance(a: Attempt) -> GateResult:
    assert a.variant is not None and a.object is not None
    result, a.measurement = performance.performance(a.variant, a.object, a.text, a.seed,
                                                    a.scratch, a.settings, a.reference, a.timed)
    return result


def _cross_check(a: Attempt) -> GateResult:
    assert a.variant is not None and a.measurement is not None
    check = crosscheck.check(a.measurement, a.variant)
    perf = a.result(GateName.performance)
    assert perf is not None and isinstance(perf.details, PerformanceDetails)
    perf.details.speedup_withheld = not check.passed
    return check


INPUT = Step(GateName.input, _input)
FORMAT = Step(GateName.format, _format)
VARIANT = Step(GateName.variant, _variant)
DIRECTIVES = Step(GateName.directives, _directives)
SYNTAX = Step(GateName.syntax, _assemble)
OBJECT = Step(GateName.object, _object)
CORRECTNESS = Step(GateName.correctness, _correctness)
PERFORMANCE = Step(GateName.performance, _performance)
CROSS_CHECK = Step(GateName.cross_check, _cross_check)


def gates(completion: bool) -> list[Gate]:
    """The pipeline of one attempt: the format gate only for a raw completion."""
    return [INPUT, *([FORMAT] if completion else []), VARIANT, DIRECTIVES, SYNTAX, OBJECT,
            CORRECTNESS, PERFORMANCE, CROSS_CHECK]


def run(attempt: Attempt, pipeline: Sequence[Gate]) -> None:
    """Each gate in order into `attempt.results`, timed, until one fails."""
    for gate in pipeline:
        start = time.perf_counter()
        result = gate.run(attempt) or GateResult(gate.name, True)
        result.name = gate.name.value
        result.seconds = time.perf_counter() - start
        attempt.results.append(result)
        if not result.passed:
            return
