"""The cross-check's per-class bands: classification and band choice (pure logic), OSACA's
accumulator forwarding, the calibration file's record of the bands, and the calibrated bands on
real kernels: honest hand-written code passes every gate and its class band, a disagreement the
global band lets through is flagged by its class band."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from conftest import VEC_ADD_1024_LOOP, asm

from toolchain import kernels
from toolchain.errors import ErrorKind
from toolchain.gates.performance import calibrate, crosscheck, honest, mca, osaca_model
from toolchain.gates.performance.measurement import Measurement
from toolchain.gates.performance.trace import Insn, normalise
from toolchain.settings import get_settings
from toolchain.verdict import GateResult, Verdict
from toolchain.verify import verify


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
    # loop control is no kind of work, and SVE's vector-length counters are SVE work: an SVE
    # loop of a load, an add, incw, cmp and b.lo is SVE, not the scalar code that closes it
    sve_loop = insns("ld1w { z1.s }, p0/z, [x0, x2, lsl #2]", "fadd z16.s, p0/m, z16.s, z1.s",
                     "incw x2", "cmp x2, x3", "b.lo .")
    assert crosscheck.block_class([(i, 64) for i in sve_loop], own) == "sve"
    assert [crosscheck.kind_of(i) for i in sve_loop] == ["sve", "sve", "sve", None, None]


def test_a_measurement_is_judged_against_the_most_specific_band() -> None:
    bands = crosscheck.Bands((0.1, 10.0), (0.1, 10.0), {
        "dot/simd": ((0.5, 1.5), (0.5, 8.0)), "dot/calls": ((0.2, 0.8), (0.2, 4.0)),
        "dot/*": ((0.3, 1.2), (0.2, 8.0)), "dot_n16_float32/simd": ((1.1, 3.0), (0.2, 8.0))})
    m = Measurement(cycles=100.0, pipeline_cycles=100.0, branch_cycles=0, branches={},
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
    m = Measurement(cycles=6000.0, pipeline_cycles=1000.0, branch_cycles=5000,
                         branches={}, osaca_cycles=1000.0, instructions=3000, blocks=3,
                         block_executions=10, loop_cycles=2, osaca_fallbacks=0)
    result = crosscheck.check(m, kernels.get("vec_add_n1024_float32"), bands)
    assert result.passed and result.details.ratio == 1.0


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
    assert data["population"]["measurements"] >= 900


def test_osaca_forwards_the_accumulator_of_a_multiply_accumulate_chain() -> None:
    """SWOG: FP multiply-accumulate 4(2), integer 4(1); OSACA's database gives only the 4, so
    without forwarding every honest reduction read 2x-4x slower to OSACA than to llvm-mca."""
    def chain(*lines: str) -> float:
        return osaca_model.estimate(list(lines)).cycles

    assert chain("fmla v0.4s, v1.4s, v2.4s") == 2.0
    assert chain("fmadd s0, s1, s2, s0") == 2.0
    assert chain("mla v0.4s, v1.4s, v2.4s") == 1.0
    # through the multiplicand, or from an instruction of another family: the full latency
    assert chain("fmadd s0, s0, s2, s3") == 4.0
    assert chain("fmla v0.4s, v1.4s, v2.4s", "fmul v0.4s, v0.4s, v3.4s") > 4.0
    # a dot product adds into its destination (OSACA's semantics: written only), forwarded in 1
    # as llvm-mca has it: gcc's int8 dot, 16 sdot into one register, was priced as independent
    assert chain("sdot v0.4s, v1.16b, v2.16b") == 1.0
    assert chain("sdot v0.4s, v1.16b, v2.16b", "sdot v3.4s, v1.16b, v2.16b") == 1.0
    assert osaca_model.estimate(["sdot v0.4s, v1.16b, v2.16b"] * 4).cycles == 4.0
    # scalar integer 2(1), as llvm-mca has it; through the multiplicand 2
    assert chain("madd x0, x1, x2, x0") == chain("smaddl x0, w1, w2, x0") == 1.0
    assert chain("madd x0, x0, x2, x3") == 2.0
    # SVE integer on D elements: latency 5, accumulator 3, 2 micro-ops on V0/V2, for mla as
    # for mad (OSACA's database gave mla.d the S form's one micro-op on any FP pipe)
    assert chain("mla z0.d, p0/m, z1.d, z2.d") == 3.0
    assert chain("mla z0.s, p0/m, z1.s, z2.s") == 1.0
    assert chain(*(f"mla z{i}.d, p0/m, z1.d, z2.d" for i in range(3, 7))) == 4.0
    # a merging-predicated destination is read (its inactive lanes are kept): mad's multiplicand
    assert chain("mad z0.d, p0/m, z1.d, z2.d") == 5.0


# clang -O3's saxpy float32 loop (n = 1024): the second store post-increments x9, which the
# next iteration's loads read.
SAXPY_LOOP = ("ldp q1, q2, [x8, #-32]", "ldp q5, q6, [x9, #-32]", "ldp q3, q4, [x8], #64",
              "ldp q7, q16, [x9]", "subs x10, x10, #16", "fmla v6.4s, v2.4s, v0.s[0]",
              "fmla v16.4s, v4.4s, v0.s[0]", "fmla v5.4s, v1.4s, v0.s[0]",
              "fmla v7.4s, v3.4s, v0.s[0]", "stp q5, q6, [x9, #-32]", "stp q7, q16, [x9], #64",
              "b.ne .")


def test_osaca_updates_a_writeback_base_without_waiting_for_the_stored_data() -> None:
    """OSACA's graph has one node per instruction, so a post-indexed store's base update
    waited for the data it stores: clang's saxpy loop carried its loads' and multiply-adds'
    latency through x9 (11 cycles an iteration). The base is updated as soon as the old base
    is ready, as llvm-mca sees it through the cost layer's split (mca.writeback)."""
    def cycles(*lines: str) -> float:
        return osaca_model.estimate(list(lines)).cycles

    assert cycles(*SAXPY_LOOP) == 3.67  # the stores' port throughput, no longer the base chain
    chain = ("ldr q0, [x0]", "fmul v0.4s, v0.4s, v1.4s", "fmul v0.4s, v0.4s, v1.4s")
    for store in ("str q0, [x0], #16", "str q0, [x0, #16]!", "stp q0, q1, [x0], #32"):
        split = mca.writeback(store)
        assert split is not None
        assert cycles(*chain, store) == cycles(*chain, *split) == 1.0, store
    # what a writeback does carry is kept: the next base through the old one, a register
    # increment (read by the update), and a loaded value's chain
    assert cycles("str s0, [x0], x2", "add x2, x0, #4") == 2.0
    assert cycles("ldr q0, [x0], #16", "fadd v2.4s, v2.4s, v0.4s") == 2.0


def test_osaca_prices_the_first_pass_of_long_straight_line_code_by_its_critical_path() -> None:
    """Past LCD_LIMIT instructions only the loop-carried search is skipped: a 300-long fadd
    chain run once costs its 600-cycle path, not its throughput (75)."""
    chain = [f"fadd s0, s0, s{1 + i % 30}" for i in range(300)]
    assert len(chain) > osaca_model.LCD_LIMIT
    found = osaca_model.estimate(chain)
    assert (found.first, found.cycles) == (600.0, 75.0)


def test_osaca_reads_the_register_a_lane_write_keeps_the_other_lanes_of() -> None:
    """A lane load or insert keeps the other lanes: 15 lane loads into one register are a
    chain (llvm-mca: 8 cycles each, 123 in all), which OSACA's semantics (destination only)
    priced as 15 independent loads (8 in all)."""
    def cycles(*lines: str) -> float:
        return osaca_model.estimate(list(lines)).first

    assert cycles(*(f"ld1 {{v2.b}}[{i}], [x2]" for i in range(1, 16))) == 120.0
    assert cycles(*(f"ld1 {{v{i}.b}}[1], [x2]" for i in range(1, 16))) == 8.0
    assert cycles("mov v2.s[1], w3", "mov v2.s[2], w3") == 2 * cycles("mov v2.s[1], w3")
    # a lane as a source is an ordinary read: the accumulator chain alone
    assert osaca_model.estimate(["fmla v0.4s, v1.4s, v2.s[0]"]).cycles == 2.0


# gcc -O1's int8 abs_diff loop (abs_diff_n512_int8): llvm-mca 1.69 cycles an iteration.
ABS_DIFF_INT8_O1 = ("ldrsb w7, [x1, x3]", "ldrsb w6, [x2, x3]", "sub w5, w7, w6", "sxtb w5, w5",
                    "sub w4, w6, w7", "sxtb w4, w4", "cmp w7, w6", "csel w4, w4, w5, le",
                    "strb w4, [x0, x3]", "add x3, x3, 1", "cmp x3, 512", "b.ne .L4")


def test_osaca_prices_an_alias_as_the_instruction_it_encodes() -> None:
    """`sxtb` is `sbfm` (one cycle on any of the six integer pipes, as the guide and llvm-mca
    have it); OSACA's database put `sxtb x, w` on M0/M1 alone, and `sxtb w, w`, which it
    lacks, took those figures: gcc -O1's int8 abs_diff read 2.92 cycles an iteration."""
    def figures(line: str) -> tuple[Any, float]:
        form, _ = osaca_model._processed(osaca_model.canonical(line), None)
        return form.port_pressure, form.latency

    sbfm = figures("sbfm w5, w5, #0, #7")
    for line in ("sxtb w5, w5", "sxtb x5, w5", "sxth w5, w5", "sxtw x5, w5"):
        assert figures(line) == sbfm, line
    found = osaca_model.estimate(list(ABS_DIFF_INT8_O1))
    assert found.cycles == 2.25 and found.unknown == 4  # the sxtb no longer counted


def test_osaca_prices_the_sve_counts_as_the_architecture_and_the_guide_have_them() -> None:
    """`cntb`, the saturating `uqdecb` and friends, `rdvl`: one micro-op on M, latency 2, like
    the database's own `addvl` (and the guide, and llvm-mca), not one generic latency-1
    micro-op on any integer pipe."""
    for line in ("cntb x{}, all, mul #8", "cntd x{}", "uqdecb x{}, all, mul #3", "sqincw x{}",
                 "rdvl x{}, #1", "addpl x{}, x1, #1"):
        four = [line.format(r) for r in range(3, 7)]  # independent: 4 on two M pipes
        assert osaca_model.estimate(four).cycles == 2.0, line
        assert osaca_model.estimate(four[:1]).first == 2.0, line
    # and they write (cntb) or step (incw, uqdecb) their register, which OSACA's semantics
    # had read only (incw: an SVE loop's counter was never written) or written only (uqdecb)
    assert osaca_model.estimate(["uqdecb x4", "uqdecb x4", "uqdecb x4"]).first == 6.0
    assert osaca_model.estimate(["incw x3"]).cycles == 1.0  # its own loop-carried chain
    assert osaca_model.estimate(["cntb x3", "add x4, x3, x3"]).first == 3.0
    assert osaca_model.estimate(["add x3, x5, x5", "cntb x3", "add x4, x3, x3"]).first == 3.0


def test_the_gate_enforces_the_class_bands_and_a_global_band_no_narrower_than_the_sweep() -> None:
    enforced, found = crosscheck.bands(), crosscheck.calibrated()
    data = json.loads(crosscheck.CALIBRATION.read_text())
    assert set(found.by_class) == set(data["band"]["classes"])
    assert found.of("vec_add_n1024_float32", "vec_add", "simd")[0] == tuple(
        data["band"]["classes"]["vec_add/simd"]["ratio"])
    assert crosscheck.ENFORCE_CLASSES and enforced.by_class == found.by_class
    assert enforced.of("vec_add_n1024_float32", "vec_add", "simd")[0] == tuple(
        data["band"]["classes"]["vec_add/simd"]["ratio"])
    lo, hi = data["band"]["ratio"]
    assert enforced.ratio == (min(lo, crosscheck.FULL_SWEEP_RATIO[0]),
                              max(hi, crosscheck.FULL_SWEEP_RATIO[1]))
    assert enforced.ipc == tuple(data["band"]["ipc"])
    # every calibrated template has its own fallback band: the global one judges none of them
    templates = {p.variant for p in calibrate.read_points()[0]}
    assert {kernels.get(v).template for v in templates} <= {
        c.split("/")[0] for c in found.by_class if c.endswith("/*")}


def test_the_calibration_counts_honest_hand_written_code_and_holds_some_out() -> None:
    data = json.loads(crosscheck.CALIBRATION.read_text())
    points, held = calibrate.read_points()
    assert data["population"]["hand_written"] == len(honest.calibration())
    assert data["held_out"]["hand_written"] == len(honest.held_out())
    assert set(data["population"]["opts"]) >= {"-O1", "-O2", "-O3"}
    # the recorded points are the calibration's: the bands rebuild from them exactly
    assert len(points) == data["population"]["measurements"] + len(honest.calibration())
    assert calibrate.bands(points, data["margin"])[0] == data["band"]
    assert calibrate.flagged(points, data["band"]) == []
    assert calibrate.flagged(held, data["band"]) == data["held_out"]["false_positives"]["which"]
    assert data["held_out"]["false_positives"]["count"] == 0
    # the rate on honest compiler output the bands did not see, recorded as computed: none, or
    # the class bands would withhold honest speedups
    assert calibrate.cross_validated(points, data["margin"]) == data["cross_validated"]
    assert data["cross_validated"]["of"] >= 500
    assert data["cross_validated"]["count"] == 0, data["cross_validated"]["which"]


def per_class(verdict: Verdict) -> GateResult:
    """The cross-check of a verdict's measurement under every calibrated band (enforced or not)."""
    perf = next(g for g in verdict.gates if g.name == "performance")
    return crosscheck.check(Measurement(**perf.details.measurement),
                            kernels.get(verdict.variant_id), crosscheck.calibrated())


@pytest.mark.parametrize("kernel", honest.KERNELS, ids=[k.name for k in honest.KERNELS])
def test_honest_hand_written_code_passes_every_gate_and_its_class_band(
        kernel: honest.Kernel) -> None:
    verdict = verify(kernel.variant, kernel.text, 11, settings=get_settings())
    assert verdict.passed, f"{verdict.error_kind}: {verdict.message}"
    judged = per_class(verdict)
    assert judged.passed, judged.message


# A correct vec_add after SHA-256 rounds: work llvm-mca prices at 4 cycles a round and OSACA
# (whose V2 database lacks it) at 1. Far fewer rounds than the global band needs to notice
# (tests/test_performance.py): the models disagree about 3.5x, which the global bands let
# through and vec_add's honest code never shows.
HIDDEN = """
    mov x9, #{rounds}
2:  sha256h q16, q17, v18.4s
    subs x9, x9, #1
    b.ne 2b
""" + VEC_ADD_1024_LOOP

# The other way round: a correct vec_add after rounds of SVE table lookups, which llvm-mca
# prices at a quarter of a cycle each and OSACA (a fallback: its database lacks the SVE form)
# at half of one: work the reward's model sees as cheaper than the second model does, the
# direction a policy optimising llvm-mca's figure would hide work in. Fewer lookups than the
# vec_add's own instructions, so the kind of work stays Advanced SIMD.
HIDDEN_FROM_MCA = """
    mov x9, #{rounds}
2:  tbl z16.s, {{ z17.s }}, z18.s
    tbl z19.s, {{ z20.s }}, z21.s
    tbl z22.s, {{ z23.s }}, z24.s
    tbl z25.s, {{ z26.s }}, z27.s
    subs x9, x9, #1
    b.ne 2b
""" + VEC_ADD_1024_LOOP


def judged_twice(text: str) -> tuple[Verdict, GateResult]:
    """The verdict (enforced bands) and its measurement under the global bands alone."""
    verdict = verify("vec_add_n1024_float32", text, 11, settings=get_settings())
    perf = next(g for g in verdict.gates if g.name == "performance")
    enforced = crosscheck.bands()
    alone = crosscheck.check(Measurement(**perf.details.measurement),
                             kernels.get("vec_add_n1024_float32"),
                             crosscheck.Bands(enforced.ratio, enforced.ipc))
    return verdict, alone


@pytest.mark.parametrize(("hidden", "rounds", "direction"), [
    (HIDDEN, 2000, "low"), (HIDDEN_FROM_MCA, 240, "high")], ids=["from OSACA", "from llvm-mca"])
def test_work_one_model_does_not_see_is_flagged_by_the_class_band(
        hidden: str, rounds: int, direction: str) -> None:
    verdict, alone = judged_twice(asm(hidden.format(rounds=rounds)))
    assert verdict.error_kind == ErrorKind.cross_check_disagreement, verdict.message
    judged = next(g for g in verdict.gates if g.name == "cross_check")
    assert judged.details.block_class == "vec_add/simd"
    lo, hi = judged.details.ratio_band
    assert (judged.details.ratio < lo) if direction == "low" else (judged.details.ratio > hi)
    # the correctness result stands; only the speedup is withheld
    assert {"syntax", "object", "correctness", "performance"} <= {
        g.name for g in verdict.gates if g.passed}
    assert verdict.gates[-1].name == "cross_check"
    # the global bands alone let it through: the class band is what catches it
    assert alone.passed, alone.message


def test_remeasuring_the_recorded_points_that_match_gives_what_was_recorded() -> None:
    """`calibrate --from-points --remeasure`: the matching points are measured again under the
    current model (which the recorded points are of), the others kept as they are."""
    points, _ = calibrate.read_points()
    fcsel = [p for p in points if p.source == calibrate.HAND and "fcsel" in p.detail]
    others = [p for p in points if p.source == calibrate.HAND][:3]
    assert fcsel and calibrate.remeasured(others, None, None, 1,
                                              settings=get_settings()) == (others, 0)
    assert calibrate.remeasured(fcsel + others, r"^\s*fcsel\s", None, 1,
                                settings=get_settings()) == (fcsel + others, len(fcsel))
    assert calibrate.instructions_in(honest.RELU_FCSEL) == len(
        [line for line in honest.RELU_FCSEL.splitlines() if line.strip()
         and not line.strip().endswith(":")])


# clang -O1's popcount_n1024_uint32 loop, a cross-check false positive until `fmov w, s` took
# the guide's pipes
POPCOUNT_UINT32_O1 = ("ldr s0, [x0, x9]", "add x9, x9, #4", "cnt z0.s, p0/m, z0.s",
                      "fmov w10, s0", "add w8, w10, w8", "cmp x9, #4096", "b.ne .LBB0_1")


def test_osaca_prices_sve_cnt_as_its_neon_cnt_and_the_popcount_loop_as_the_guide() -> None:
    """SVE `cnt z.T, p/m, z.T`, absent from OSACA's database, borrows the database's NEON
    `cnt` (one micro-op on any of V0-V3, latency 2: what llvm-mca-19 gives the SVE form), so
    it is counted as a fallback but priced as llvm-mca prices it. The popcount loop was 1.75
    cycles an iteration (llvm-mca: 1.07) while `fmov w, s` sat on an integer pipe the loop's
    add, add and compare share; on V0/V1 it is 1.25, the `fmov`'s two micro-ops on V0/V1
    beside the `cnt`'s quarter of each."""
    def figures(line: str) -> tuple[Any, float]:
        form, _ = osaca_model._processed(osaca_model.canonical(line), None)
        return form.port_pressure, form.latency

    for size in "bhsd":
        assert figures(f"cnt z0.{size}, p0/m, z0.{size}") == figures("cnt v0.16b, v0.16b")
    found = osaca_model.estimate(list(POPCOUNT_UINT32_O1))
    assert found.cycles == 1.25 and found.unknown == 1  # the cnt
    no_fmov = [line for line in POPCOUNT_UINT32_O1 if not line.startswith("fmov")]
    assert osaca_model.estimate(no_fmov).cycles == 1.0


def test_osaca_prices_fp_to_general_fmov_on_v0_v1_as_the_guide() -> None:
    """SWOG 3.14 "FP transfer, from vec to gen reg": FMOV, latency 2, throughput 1, V01 (two
    micro-ops on V0/V1 in LLVM's V2 model). OSACA's database put `fmov w, s` and `fmov x, d`
    on the integer pipe M0 (its row for the other direction, which stays there), which six
    integer adds (on I0-I5, M0 among them) share: with one `fmov` beside them they cost 1
    cycle, not 2."""
    _, model, _, _, _ = osaca_model._osaca()
    ports = model.get_ports()
    v01 = {ports.index("8"), ports.index("9")}
    for line in ("fmov w10, s0", "fmov x1, d2", "fmov w3, h4", "fmov x5, v6.d[1]"):
        form, guessed = osaca_model._processed(osaca_model.canonical(line), None)
        loaded = {i for i, p in enumerate(form.port_pressure) if p}
        assert (loaded, form.latency, guessed) == (v01, 2.0, False), line
        assert [form.port_pressure[i] for i in sorted(v01)] == [1.0, 1.0], line
    back, _ = osaca_model._processed("fmov s1, w2", None)  # general to vector: M0, the guide's
    assert {i for i, p in enumerate(back.port_pressure) if p} == {ports.index("6")}
    adds = [f"add x{r}, x{r}, x9" for r in range(1, 7)]  # one a cycle on each of I0-I5
    assert osaca_model.estimate(adds + ["fmov w7, s0"]).cycles == 1.0
    assert osaca_model.estimate(adds + ["fmov w7, s0", "fmov w8, s1"]).cycles == 2.0


def test_clang_o1_popcount_n1024_uint32_is_inside_its_class_band() -> None:
    """`armgym calibrate --judge` on what was a false positive (1.72, above popcount/scalar's
    band) while OSACA priced `fmov w, s` on an integer pipe, with the real tools: honest code
    must never be flagged."""
    [found] = calibrate.points_of([("popcount_n1024_uint32", "clang", "-O1")], 1,
                                  settings=get_settings())
    band = json.loads(crosscheck.CALIBRATION.read_text())["band"]
    assert calibrate.flagged([found], band) == []
