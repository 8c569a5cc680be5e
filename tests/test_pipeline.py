"""The gate list (toolchain/pipeline.py): one name per gate, timed in one place, stopping at the
first failure; and what adding a gate takes."""

from __future__ import annotations

from toolchain import pipeline
from toolchain.attempt import Attempt
from toolchain.demo import DOT_1024_F32_NEON
from toolchain.errors import ErrorKind, GateName
from toolchain.settings import get_settings
from toolchain.verdict import GateResult
from toolchain.verify import verify


def test_a_passing_attempt_runs_every_gate_in_the_listed_order() -> None:
    verdict = verify("dot_n1024_float32", DOT_1024_F32_NEON, 3, settings=get_settings())
    assert verdict.passed, verdict.message
    assert [g.name for g in verdict.gates] == [g.name for g in pipeline.gates(False)]
    assert all(g.seconds > 0 for g in verdict.gates)
    raw = verify("dot_n1024_float32", f"<assembly>{DOT_1024_F32_NEON}</assembly>", 3,
                 completion=True, settings=get_settings())
    assert [g.name for g in raw.gates] == [g.name for g in pipeline.gates(True)]
    assert raw.gates[1].name == GateName.format and raw.passed


def test_a_new_gate_is_a_function_in_the_list() -> None:
    seen: list[str] = []

    def screen(a: Attempt) -> GateResult | None:
        seen.append(a.text)
        if "fmla" in a.text:
            return GateResult.fail("a name the pipeline replaces", ErrorKind.object_rejected,
                                   "no fused multiply-adds here", mnemonic="fmla")
        return None

    gates = [pipeline.INPUT, pipeline.Step(GateName.directives, screen), pipeline.VARIANT]
    attempt = Attempt("dot_n1024_float32", 1, DOT_1024_F32_NEON, False, get_settings())
    try:
        pipeline.run(attempt, gates)
    finally:
        attempt.close()
    assert seen == [DOT_1024_F32_NEON]  # the input gate decoded the text for the next
    assert [(r.name, r.passed) for r in attempt.results] == [("input", True),
                                                              ("directives", False)]
    failed = attempt.results[-1]
    assert failed.kind is ErrorKind.object_rejected
    assert failed.details.model_dump() == {"mnemonic": "fmla"}
    assert failed.seconds > 0 and attempt.variant is None  # stopped before the variant gate
