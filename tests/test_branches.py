"""Branch prediction over the executed blocks: the predictor on synthetic block sequences (pure
logic), then whole verifications with the real tools (qemu trace, llvm-mca)."""

from __future__ import annotations

import random

from conftest import asm

from toolchain.gates.performance import branches, calibrate
from toolchain.gates.performance.trace import Insn
from toolchain.settings import get_settings
from toolchain.verify import verify


def insn(address: int, mnemonic: str) -> Insn:
    return Insn(address, 0, mnemonic, mnemonic)


# A loop at 0x1000..0x100c whose back-edge is `b.ne` at 0x100c, and a data branch `b.gt` at
# 0x1004 that skips one instruction (0x1008) when taken.
CODE = {0x1000: insn(0x1000, "ldr"), 0x1004: insn(0x1004, "b.gt"),
        0x1008: insn(0x1008, "movi"), 0x100C: insn(0x100C, "b.ne"),
        0x1010: insn(0x1010, "ret")}


def loop(outcomes: list[bool]) -> list[tuple[int, int]]:
    """The block sequence of the loop above, one iteration per data-branch outcome."""
    blocks = []
    for taken in outcomes:
        blocks.append((0x1000, 0x1004))
        if not taken:
            blocks.append((0x1008, 0x1008))
        blocks.append((0x100C, 0x100C))
    return blocks + [(0x1010, 0x1010)]  # the last back-edge falls through to the return


def back_edge_only(n: int) -> list[tuple[int, int]]:
    return [(0x1008, 0x100C)] * n + [(0x1010, 0x1010)]


def test_a_loop_back_edge_costs_the_same_whatever_the_trip_count() -> None:
    found = [branches.predict(back_edge_only(n), CODE) for n in (16, 128, 1024, 8192)]
    assert {s.conditional_mispredicted for s in found} == {found[0].conditional_mispredicted}
    assert found[0].conditional_mispredicted <= 2  # warm-up and the exit, as on the hardware
    assert [s.conditional for s in found] == [16, 128, 1024, 8192]


def test_a_random_data_branch_is_mispredicted_about_half_the_time() -> None:
    rng = random.Random(7)
    stats = branches.predict(loop([rng.random() < 0.5 for _ in range(4096)]), CODE)
    assert stats.conditional == 2 * 4096
    assert 0.4 * 4096 <= stats.conditional_mispredicted <= 0.6 * 4096
    assert stats.cycles == stats.mispredicts * branches.PENALTY_CYCLES


def test_regular_patterns_are_learned() -> None:
    for pattern in ([True, False], [True, True, False], [True, False, False, True]):
        outcomes = (pattern * 1024)[:2048]
        stats = branches.predict(loop(outcomes), CODE)
        assert stats.conditional_mispredicted < 0.05 * len(outcomes), pattern


def test_a_data_branch_that_always_goes_one_way_is_learned() -> None:
    for taken in (True, False):
        stats = branches.predict(loop([taken] * 1024), CODE)
        assert stats.conditional_mispredicted <= 4


def test_indirect_branches_predict_their_last_target() -> None:
    code = {0x2000: insn(0x2000, "br"), 0x3000: insn(0x3000, "b"), 0x4000: insn(0x4000, "b")}
    rng = random.Random(3)
    targets = [rng.choice((0x3000, 0x4000)) for _ in range(2000)]
    blocks = [b for t in targets for b in ((0x2000, 0x2000), (t, t))]
    stats = branches.predict(blocks, code)
    assert stats.indirect == 2000
    assert 0.4 * 2000 <= stats.indirect_mispredicted <= 0.6 * 2000
    same = branches.predict([b for _ in range(100) for b in ((0x2000, 0x2000),
                                                             (0x3000, 0x3000))], code)
    assert same.indirect_mispredicted == 1


def test_returns_follow_their_calls_and_a_redirected_return_is_mispredicted() -> None:
    code = {0x1000: insn(0x1000, "bl"), 0x1004: insn(0x1004, "b"),
            0x5000: insn(0x5000, "ret"), 0x6000: insn(0x6000, "b")}
    matched = [(0x1000, 0x1000), (0x5000, 0x5000), (0x1004, 0x1004)] * 50
    assert branches.predict(matched, code).returns_mispredicted == 0
    redirected = [(0x1000, 0x1000), (0x5000, 0x5000), (0x6000, 0x6000)] * 50
    assert branches.predict(redirected, code).returns_mispredicted == 50


def test_the_predictor_is_deterministic() -> None:
    rng = random.Random(11)
    blocks = loop([rng.random() < 0.3 for _ in range(3000)])
    assert branches.predict(blocks, CODE) == branches.predict(list(blocks), CODE)


# --------------------------------------------------------------------------- real tools

RELU = calibrate.RELU_ID
BRANCHY = calibrate.RELU_BRANCHY
FCSEL = calibrate.RELU_FCSEL
# The same choice made by an indirect branch: the address of one of two paths, picked by csel.
INDIRECT = """
    mov x2, #0
    adr x3, 2f
    adr x4, 3f
1:  ldr s0, [x1, x2, lsl #2]
    fcmp s0, #0.0
    csel x5, x3, x4, gt
    br x5
2:  str s0, [x0, x2, lsl #2]
    b 4f
3:  str wzr, [x0, x2, lsl #2]
4:  add x2, x2, #1
    cmp x2, #1024
    b.ne 1b
    ret
"""


def prediction(text: str, seed: int = 11) -> dict:
    v = verify(RELU, asm(text), seed, settings=get_settings())
    assert v.passed, f"{v.error_kind}: {v.message}"
    details = next(g for g in v.gates if g.name == "performance").details
    return {"cycles": details.cycles, **details.branch_prediction}


def test_a_branchy_relu_on_random_data_costs_at_least_twice_its_fcsel_form() -> None:
    found = calibrate.branchy_vs_branchless(get_settings())
    assert found["ratio"] >= 2 and found["pipeline_ratio"] < 1.25
    branchy, fcsel = prediction(BRANCHY), prediction(FCSEL)
    assert branchy["cycles"] >= 2 * fcsel["cycles"], (branchy, fcsel)
    # the pipeline alone rates them alike: the difference is the mispredictions
    assert branchy["pipeline_cycles"] < 1.25 * fcsel["pipeline_cycles"]
    assert branchy["conditional"] == 2048 and branchy["conditional_mispredicted"] > 300
    # the back-edge is predicted: warm-up and exit only, like the compiler's own loop
    assert fcsel["conditional_mispredicted"] <= 2
    assert fcsel["branch_cycles"] == fcsel["baselines"]["clang"]["branch_cycles"]


def test_choosing_by_indirect_branch_is_charged_like_a_conditional_one() -> None:
    found = prediction(INDIRECT)
    assert found["indirect"] == 1024 and found["indirect_mispredicted"] > 300
    assert found["cycles"] >= 2 * prediction(FCSEL)["cycles"]


def test_branch_prediction_can_be_turned_off_and_is_reported_either_way() -> None:
    off = verify(RELU, asm(BRANCHY), 11,
                 settings=get_settings().replace(branch_prediction=False))
    details = next(g for g in off.gates if g.name == "performance").details
    assert not details.branch_prediction["enabled"]
    assert details.branch_prediction["branch_cycles"] == 0
    assert details.branch_prediction["mispredicts"] > 300
    assert details.cycles == details.branch_prediction["pipeline_cycles"]
