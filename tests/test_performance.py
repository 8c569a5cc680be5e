"""The performance gate and the cross-check, against the real tools (qemu, llvm-mca, OSACA).

The cycle model is deterministic, so the scaling and hack tests compare model figures, not wall
time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import VEC_ADD_1024_BODY, VEC_ADD_1024_LOOP, asm, baseline

from toolchain import execution, kernels, reward, tools
from toolchain.errors import ErrorKind, GateName
from toolchain.gates import syntax
from toolchain.gates.object_checks import code_sections, parse_elf
from toolchain.gates.performance import calibrate, crosscheck, gate
from toolchain.settings import get_settings
from toolchain.verdict import PerformanceDetails, Verdict
from toolchain.verify import verify

VEC = "vec_add_n1024_float32"
SEED = 11


def perf(v: Verdict) -> PerformanceDetails:
    assert v.passed, f"{v.error_kind}: {v.message}"
    gate = v.gate(GateName.performance)
    assert gate is not None and isinstance(gate.details, PerformanceDetails)
    return gate.details


def cycles(variant_id: str, text: str, seed: int = SEED) -> float:
    return perf(verify(variant_id, text, seed, settings=get_settings())).cycles


@pytest.fixture(scope="module")
def vec_base() -> float:
    return cycles(VEC, baseline(VEC))


# --------------------------------------------------------------------------- faithfulness


def test_vec_add_scales_with_n_while_the_whole_listing_stays_flat() -> None:
    ids = ["vec_add_n1024_float32", "vec_add_n2048_float32", "vec_add_n4096_float32"]
    found = [perf(verify(i, baseline(i), SEED, settings=get_settings())) for i in ids]
    for small, big in zip(found, found[1:], strict=False):
        assert 1.7 <= big.cycles / small.cycles <= 2.3, (small.cycles, big.cycles)
        listing = big.whole_listing["total_cycles"] / small.whole_listing["total_cycles"]
        assert 0.9 <= listing <= 1.1


def test_cycle_figures_are_identical_across_runs_and_processes() -> None:
    text = baseline("relu_n256_float32")
    first = verify("relu_n256_float32", text, 5, settings=get_settings())
    again = verify("relu_n256_float32", text, 5, settings=get_settings())
    assert first.canonical() == again.canonical()
    code = ("import sys; from toolchain.verify import verify; "
            "from toolchain.settings import get_settings; "
            "print(verify('relu_n256_float32', sys.stdin.read(), 5, "
            "settings=get_settings()).canonical())")
    out = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True,
                         text=True, check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == first.canonical()
    assert perf(first).cycles > 0


# --------------------------------------------------------------------------- known hacks


def as_inst_words(text: str) -> str:
    """The same kernel with every instruction given as a `.inst` word instead of a mnemonic."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "k.s").write_text(text)
        subprocess.run([tools.tool("as").path, f"-march={tools.GAS_MARCH}", "-o",
                        f"{tmp}/k.o", f"{tmp}/k.s"], check=True)
        elf = parse_elf(Path(tmp, "k.o").read_bytes())
    (text_sec,) = code_sections(elf)
    assert not elf.relocations.get(text_sec.index), "re-encoding needs relocation-free code"
    code = elf.contents(text_sec)
    words = [int.from_bytes(code[i:i + 4], "little") for i in range(0, len(code), 4)]
    return asm("\n".join(f"    .inst {w:#010x}" for w in words))


def test_instructions_hidden_in_inst_words_cost_the_same(vec_base: float) -> None:
    hidden = cycles(VEC, as_inst_words(baseline(VEC)))
    assert abs(hidden / vec_base - 1) <= 0.02


def test_mca_region_comments_change_nothing(vec_base: float) -> None:
    text = baseline(VEC).replace("\tret\n", "# LLVM-MCA-BEGIN\n\tret\n# LLVM-MCA-END\n", 1)
    assert "LLVM-MCA-BEGIN" in text
    details = perf(verify(VEC, text, SEED, settings=get_settings()))
    assert details.cycles == vec_base
    plain = perf(verify(VEC, baseline(VEC), SEED,
                        settings=get_settings())).whole_listing["total_cycles"]
    assert details.whole_listing["total_cycles"] < plain  # the original's figure was fooled


def test_dead_code_after_ret_gains_nothing(vec_base: float) -> None:
    dead = "\n".join(["\tfmla\tv0.4s, v1.4s, v2.4s"] * 400)
    text = baseline(VEC).replace("\tret\n", f"\tret\n{dead}\n", 1)
    assert cycles(VEC, text) == vec_base


SCALAR_VEC_ADD = """
    mov x3, #0
1:  ldr s0, [x1, x3, lsl #2]
    ldr s1, [x2, x3, lsl #2]
    fadd s0, s0, s1
    str s0, [x0, x3, lsl #2]
    add x3, x3, #1
    cmp x3, #1024
    b.ne 1b
    ret"""


def test_a_scalar_loop_is_slower_than_the_vectorised_baseline(vec_base: float) -> None:
    details = perf(verify(VEC, asm(SCALAR_VEC_ADD), SEED, settings=get_settings()))
    assert details.cycles > 1.5 * vec_base
    assert details.speedup < 1.0


# A scalar dot product whose accumulator runs through two instructions (fadd then fmov).
CHAIN_DOT = """
    movi d0, #0
    mov x8, #1024
    mov x9, #1
1:  ldr s1, [x0], #4
    ldr s2, [x1], #4
    fmul s1, s1, s2
    fadd s3, s0, s1
{split}    fmov s0, s3
    subs x8, x8, #1
    b.ne 1b
    ret
3:  ret"""


# 16 floats an iteration through `ldp q, q` / `stp q, q` with writeback: LLVM's model gives the
# load pair 6 micro-ops, which at 8 a cycle llvm-mca dispatches one a cycle (the cost layer's
# writeback-pair adjustment, fidelity table). Without it this was rated 0.70x gcc -O3's plain
# loop of `ldr q` / `str q` with a register offset; it does the same loads and stores.
WIDE_WRITEBACK = """
    mov x3, #64
1:  ldp q0, q1, [x1], #32
    ldp q2, q3, [x1], #32
    ldp q4, q5, [x2], #32
    ldp q6, q7, [x2], #32
    fadd v0.4s, v0.4s, v4.4s
    fadd v1.4s, v1.4s, v5.4s
    fadd v2.4s, v2.4s, v6.4s
    fadd v3.4s, v3.4s, v7.4s
    stp q0, q1, [x0], #32
    stp q2, q3, [x0], #32
    subs x3, x3, #1
    b.ne 1b
    ret
"""


def test_writeback_pair_loads_are_not_overpriced_against_plain_loads() -> None:
    d = perf(verify(VEC, asm(WIDE_WRITEBACK), SEED, settings=get_settings()))
    assert d.cycles <= 1.05 * d.baselines["gcc"].cycles, d


def test_splitting_a_loop_body_with_never_taken_branches_gains_nothing() -> None:
    """Costing blocks one by one would lose the accumulator chain that crosses the split; the
    gate costs whole loop cycles, so the split kernel is no cheaper."""
    whole = cycles("dot_n1024_float32", asm(CHAIN_DOT.format(split="")))
    split = cycles("dot_n1024_float32", asm(CHAIN_DOT.format(split="    cbz x9, 3f\n")))
    assert split >= 0.98 * whole
    assert split / 1024 >= 3.0  # fadd + fmov latency per element, not a throughput figure


# --------------------------------------------------------------------------- hostile timing runs

BURN = """
    movz x9, #{lo}
    movk x9, #{hi}, lsl #16
2:  subs x9, x9, #1
    b.ne 2b
""" + VEC_ADD_1024_LOOP


def test_a_trace_longer_than_its_budget_is_timeout() -> None:
    settings = get_settings().replace(trace_limit_blocks=100_000)
    burn = asm(BURN.format(lo=200_000 & 0xFFFF, hi=200_000 >> 16))
    v = verify(VEC, burn, SEED, settings=settings)
    assert v.error_kind == ErrorKind.timeout, v.message
    assert v.gates[-1].name == "performance"
    assert reward.components(v).correctness == 0.0  # type: ignore[union-attr]


# Returns after half the work with armgym_call's saved link register pointed at `cont`, which
# finishes the other half after the harness thinks the kernel returned, then resumes the harness.
LATE_WORK = """
    adrp x9, saved
    add x9, x9, :lo12:saved
    stp x0, x1, [x9]
    str x2, [x9, #16]
    ldr x10, [sp, #72]
    str x10, [x9, #24]
    adr x10, cont
    str x10, [sp, #72]
    mov x11, #512
1:  ldr q0, [x1], #16
    ldr q1, [x2], #16
    fadd v0.4s, v0.4s, v1.4s
    str q0, [x0], #16
    subs x11, x11, #4
    b.ne 1b
    ret
cont:
    adrp x9, saved
    add x9, x9, :lo12:saved
    ldp x0, x1, [x9]
    ldr x2, [x9, #16]
    add x0, x0, #2048
    add x1, x1, #2048
    add x2, x2, #2048
    mov x11, #512
2:  ldr q0, [x1], #16
    ldr q1, [x2], #16
    fadd v0.4s, v0.4s, v1.4s
    str q0, [x0], #16
    subs x11, x11, #4
    b.ne 2b
    ldr x16, [x9, #24]
    br x16
    .bss
    .p2align 3
saved: .skip 32"""


def traced_only(text: str) -> gate.Failed:
    """The timing run of `text` on its own (as baselines are measured), as if the correctness
    gate had let it through: the same guard stops it there."""
    settings = get_settings()
    scratch = Path(tempfile.mkdtemp(prefix="armgym-traced-"))
    try:
        _, obj = syntax.assemble(text, scratch, settings)
        assert obj is not None
        assert execution.link(kernels.get(VEC), obj, scratch, settings) is None
        test = gate.timing_test(SEED, settings.tests_per_attempt)
        with pytest.raises(gate.Failed) as failed:
            gate.measure(kernels.get(VEC), scratch, obj.name, SEED, test, settings, 60.0, False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return failed.value


def test_work_done_after_returning_through_a_redirected_link_register_is_refused() -> None:
    """The redirect needs a store over the trampoline's saved x30: the guard stops that store
    itself, in the tests and in the timing run alike, before any work runs outside a call."""
    v = verify(VEC, asm(LATE_WORK), SEED, settings=get_settings())
    assert v.gates[-1].name == "correctness"  # the execution guard, in the first test
    assert v.error_kind == ErrorKind.memory_violation, v.message
    assert "harness's stack" in v.message and "sp+72" in v.message, v.message
    failed = traced_only(asm(LATE_WORK))
    assert failed.kind == ErrorKind.memory_violation and "harness's stack" in str(failed)


# --------------------------------------------------------------------------- the cross-check


def calibrated_sample() -> list[tuple[str, str, str]]:
    """A spread of the (variant, compiler, opt) that `armgym calibrate` measured."""
    points, _ = calibrate.read_points()
    compiled = [p for p in points if p.source != calibrate.HAND]
    return [(p.variant, p.source, p.detail) for p in compiled[::len(compiled) // 12]]


@pytest.mark.parametrize(("variant_id", "compiler", "opt"), calibrated_sample())
def test_the_cross_check_flags_no_calibrated_compiler_output(variant_id: str, compiler: str,
                                                             opt: str) -> None:
    seed, test = gate.PROBES[0]
    m = gate.measured(kernels.get(variant_id), compiler, opt, seed, test, get_settings())
    result = crosscheck.check(m, kernels.get(variant_id))
    assert result.passed, result.message


def test_the_calibration_records_its_band_and_command() -> None:
    data = json.loads(crosscheck.CALIBRATION.read_text())
    assert data["command"].startswith("armgym calibrate")
    lo, hi = data["band"]["ratio"]
    assert 0 < lo < data["distribution"]["ratio"]["p0"] <= data["distribution"]["ratio"]["p100"] \
        < hi
    assert data["population"]["measurements"] >= 600


# Correct vec_add, plus a chain of SHA-256 rounds that llvm-mca prices at 4 cycles each and
# OSACA (whose V2 database lacks them) at a fraction of one: the two models are made to disagree.
DISAGREE = """
    mov x9, #3000
2:  sha256h q16, q17, v18.4s
    sha256h q16, q17, v18.4s
    sha256h q16, q17, v18.4s
    sha256h q16, q17, v18.4s
    subs x9, x9, #1
    b.ne 2b
""" + VEC_ADD_1024_LOOP


def test_a_constructed_disagreement_is_flagged_and_withholds_only_the_speedup() -> None:
    v = verify(VEC, asm(DISAGREE), SEED, settings=get_settings())
    assert v.error_kind == ErrorKind.cross_check_disagreement, v.message
    assert [g.name for g in v.gates][-2:] == ["performance", "cross_check"]
    c = reward.components(v)
    assert c is not None and c.correctness == 1.0 and c.speedup is None and c.speedup_withheld
    assert reward.reward(v, "additive") == 2.0


def test_a_measurement_outside_the_band_disagrees() -> None:
    bands = crosscheck.Bands((0.5, 2.0), (0.1, 9.0))
    m = gate.Measurement(cycles=100.0, pipeline_cycles=100.0, branch_cycles=0, branches={},
                         osaca_cycles=80.0, instructions=300, blocks=3, block_executions=10,
                         loop_cycles=2, osaca_fallbacks=0)
    v = kernels.get(VEC)
    assert crosscheck.check(m, v, bands).passed
    assert not crosscheck.check(replace(m, osaca_cycles=250.0), v, bands).passed
    assert not crosscheck.check(replace(m, instructions=5), v, bands).passed
    assert not crosscheck.check(replace(m, osaca_declined=1), v, bands).passed


# vec_add done right, then a call into libc's write() (found by address, as a policy would have
# to): the system call is refused, whatever it does.
SYSCALL = """
    stp x29, x30, [sp, #-16]!
""" + VEC_ADD_1024_BODY + """\
    movz x16, #{a0}
    movk x16, #{a1}, lsl #16
    movk x16, #{a2}, lsl #32
    mov x0, #1
    mov x2, #0
    blr x16
    ldp x29, x30, [sp], #16
    ret"""


def test_a_system_call_made_by_the_kernel_is_refused(tmp_path: Path) -> None:
    from toolchain.execution import guard, harness

    def text(address: int) -> str:
        return asm(SYSCALL.format(a0=address & 0xFFFF, a1=(address >> 16) & 0xFFFF,
                                  a2=address >> 32))

    # Link once with a placeholder of the same size to learn where write() lands.
    (tmp_path / "k.s").write_text(text(0))
    subprocess.run([tools.tool("as").path, f"-march={tools.GAS_MARCH}", "-o",
                    str(tmp_path / "k.o"), str(tmp_path / "k.s")], check=True)
    built = harness.build(kernels.get(VEC), settings=get_settings())
    subprocess.run(tools.link_argv([str(built.object), str(tmp_path / "k.o")],
                                   str(tmp_path / "k.elf"), runtime=False), check=True)
    write = guard.Image.read(tmp_path / "k.elf").symbol("write")
    v = verify(VEC, text(write), SEED, settings=get_settings())
    assert v.gates[-1].name == "correctness"  # the execution guard, in the first test
    assert v.error_kind == ErrorKind.abi_violation, v.message
    assert "system call" in v.message
    failed = traced_only(text(write))
    assert failed.kind == ErrorKind.abi_violation and "system call" in str(failed)


def test_a_kernel_too_varied_for_osaca_to_price_gets_no_speedup() -> None:
    """Over 1024 distinct instruction shapes in one cycle: OSACA declines (parsing them would
    take minutes), so the cross-check cannot vouch for the figure and the speedup is withheld."""
    regs = [f"x{i}" for i in range(9, 16)]
    shapes = [f"    {op} {a}, {b}, {c}" for op in ("eor", "orr", "and", "add", "sub")
              for a in regs for b in regs for c in regs][:1100]
    text = asm("\n".join(shapes) + "\n" + SCALAR_VEC_ADD)
    v = verify(VEC, text, SEED, settings=get_settings())
    assert v.error_kind == ErrorKind.cross_check_disagreement, v.message
    assert "declined" in v.message
    assert next(g for g in v.gates if g.name == "performance").details.measurement[
        "osaca_declined"] == 1


# The same serial reduction, its accumulator kept in s0 or passed through a stack slot every
# iteration: llvm-mca on its own assumes loads never depend on stores, which would make the
# round trip cut the chain for free.
SPILL_DOT = """
    sub sp, sp, #16
    movi d0, #0
    mov x8, #1024
1:  ldr s1, [x0], #4
    ldr s2, [x1], #4
    fmul s1, s1, s2
    fadd s0, s0, s1
{spill}    subs x8, x8, #1
    b.ne 1b
    add sp, sp, #16
    ret"""


def test_passing_a_dependency_chain_through_memory_does_not_hide_it() -> None:
    kept = cycles("dot_n1024_float32", asm(SPILL_DOT.format(spill="")))
    spilled = cycles("dot_n1024_float32", asm(SPILL_DOT.format(
        spill="    str s0, [sp, #12]\n    ldr s0, [sp, #12]\n")))
    assert spilled > kept
