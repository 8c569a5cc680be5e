"""The cross-check's per-class bands: classification and band choice (pure logic), and the
calibration file's record of them."""

from __future__ import annotations

import json
from dataclasses import replace

from toolchain import kernels
from toolchain.gates.performance import crosscheck, gate
from toolchain.gates.performance.trace import Insn, normalise


def insns(*texts: str, at: int = 0x1000) -> list[Insn]:
    return [Insn(at + 4 * i, 0, *normalise(t)) for i, t in enumerate(texts)]


def own(address: int) -> bool:
    return 0x1000 <= address < 0x2000


def test_the_class_is_what_most_of_the_executed_work_is() -> None:
    scalar = insns("ldr s0, [x1, x2, lsl #2]", "fcmp s0, #0.0", "add x2, x2, #1", "b.ne .")
    simd = insns("ldr q0, [x1, x3]", "fadd v0.4s, v0.4s, v1.4s", "str q0, [x0, x3]")
    sve = insns("ld1w { z0.s }, p0/z, [x1, x3, lsl #2]", "fadd z0.s, z0.s, z1.s",
                "whilelo p0.s, x3, x4")
    library = insns("fmul d0, d0, d1", "fadd d0, d0, d2", at=0x8000)
    assert crosscheck.block_class([(i, 10) for i in scalar], own) == "scalar"
    assert crosscheck.block_class([(i, 10) for i in simd], own) == "simd"
    assert crosscheck.block_class([(i, 10) for i in sve], own) == "sve"
    assert crosscheck.block_class([(i, 10) for i in library] + [(i, 1) for i in simd],
                                  own) == "calls"
    # a few SVE instructions in mostly-SIMD work do not move it to the SVE band
    mixed = [(i, 100) for i in simd] + [(i, 5) for i in sve]
    assert crosscheck.block_class(mixed, own) == "simd"
    # a call that runs little library code stays in its own class
    assert crosscheck.block_class([(i, 100) for i in simd] + [(i, 1) for i in library],
                                  own) == "simd"


def test_a_measurement_is_judged_against_the_most_specific_band() -> None:
    bands = crosscheck.Bands((0.1, 10.0), (0.1, 10.0), {
        "dot/simd": ((0.5, 1.5), (0.5, 8.0)), "dot/calls": ((0.2, 0.8), (0.2, 4.0)),
        "dot/*": ((0.3, 1.2), (0.2, 8.0)), "dot_n16_float32/simd": ((1.1, 3.0), (0.2, 8.0))})
    m = gate.Measurement(cycles=100.0, pipeline_cycles=100.0, branch_cycles=0, branches={},
                         osaca_cycles=100.0, instructions=300, blocks=3, block_executions=10,
                         loop_cycles=2, osaca_fallbacks=0, block_class="simd")
    dot, small, vec = (kernels.get(i) for i in ("dot_n1024_float32", "dot_n16_float32",
                                                "vec_add_n1024_float32"))
    assert crosscheck.check(m, dot, bands).passed
    flagged = crosscheck.check(replace(m, block_class="calls"), dot, bands)
    assert not flagged.passed and "dot/calls code" in flagged.message
    # the variant's own band wins over its template's
    assert not crosscheck.check(m, small, bands).passed
    # a kind no honest code of the template does: the template's band over all its code
    assert not crosscheck.check(replace(m, block_class="sve", osaca_cycles=130.0), dot,
                                bands).passed
    assert crosscheck.check(replace(m, block_class="sve", osaca_cycles=110.0), dot,
                            bands).passed
    # a template without calibration falls back to the global bands
    assert crosscheck.check(replace(m, osaca_cycles=900.0), vec, bands).passed


def test_the_branch_penalty_stays_out_of_the_comparison() -> None:
    bands = crosscheck.Bands((0.5, 1.5), (0.1, 10.0))
    m = gate.Measurement(cycles=6000.0, pipeline_cycles=1000.0, branch_cycles=5000,
                         branches={}, osaca_cycles=1000.0, instructions=3000, blocks=3,
                         block_executions=10, loop_cycles=2, osaca_fallbacks=0)
    result = crosscheck.check(m, kernels.get("vec_add_n1024_float32"), bands)
    assert result.passed and result.details["ratio"] == 1.0


def test_the_calibration_records_a_band_per_class_at_most_4x_wide() -> None:
    data = json.loads(crosscheck.CALIBRATION.read_text())
    classes = data["band"]["classes"]
    assert classes and data["false_positives"]["count"] == 0
    for name, band in classes.items():
        task, kind = name.split("/")
        assert kind in crosscheck.CLASSES or kind == "*", name
        lo, hi = band["ratio"]
        # the per-template fallbacks, and a variant whose own two baselines differ by more,
        # are reported, not bounded
        if kind != "*" and name not in data["too_wide"]:
            assert 0 < lo < hi <= 4 * lo, (name, band)
            assert data["widths"][name]["ratio"] <= 4.0
    per_variant = [n for n in data["too_wide"] if n.split("/")[0] not in
                   {c.split("/")[0] for c in classes if c.endswith("/*")}]
    assert len(per_variant) <= 2, per_variant
    assert data["population"]["measurements"] >= 2000
