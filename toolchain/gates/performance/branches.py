"""Branch prediction over the executed block sequence: what llvm-mca assumes away.

llvm-mca simulates a loop body as if every branch were predicted, so a data-dependent branch
that a Neoverse V2 mispredicts half the time would cost nothing. The timing test's trace gives
the order the blocks ran in, so every branch's outcome is known: a block that ends in a
conditional branch was taken exactly when the next block does not start right after it. A
predictor model is run over that sequence and every misprediction costs PENALTY_CYCLES, added to
the pipeline cycles (on by default, `ARMGYM_BRANCH_PREDICTION=0` turns it off; the verdict
reports it separately).

The predictor is a small TAGE (Seznec and Michaud, "A case for (partially) TAgged GEometric
history length branch prediction", JILP 2006): a bimodal base table and four tagged tables
indexed by the branch address hashed with 4, 9, 20 and 44 outcomes of global history. The
longest-history table whose tag matches provides the prediction; a misprediction allocates an
entry in a longer table. Arm does not publish the V2's predictor; a TAGE-like design is what the
Neoverse cores are described as using, and it predicts loop back-edges and short regular
patterns, while an outcome drawn at random is mispredicted about half the time, as on any
predictor. Indirect branches (`br`, `blr`) are predicted to go where they went last time from
the same address (a branch target buffer); a return to where the matching call would return
(a return stack of RETURN_STACK entries). Direct unconditional branches are always predicted.

PENALTY_CYCLES is LLVM's Neoverse V2 scheduling model's MispredictPenalty (10 cycles,
AArch64SchedNeoverseV2.td); Arm's Software Optimization Guide for V2 gives no figure of its own.

The block sequence is the predictor's only input (`Block` pairs of first and last instruction
address, in executed order), so it can come from the qemu log (trace.py) or from any other
source of the executed blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .trace import Block, Insn

PENALTY_CYCLES = 10
RETURN_STACK = 32
MODEL = "tage-4x1024, bimodal 4096, btb, ras32"
MODEL_VERSION = "2"  # bump when the predictor or the penalty changes

CONDITIONAL = frozenset({"cbz", "cbnz", "tbz", "tbnz"})
INDIRECT = frozenset({"br", "blr", "braa", "brab", "braaz", "brabz", "blraa", "blrab", "blraaz",
                      "blrabz"})
RETURNS = frozenset({"ret", "retaa", "retab"})
CALLS = frozenset({"bl", "blr", "blraa", "blrab", "blraaz", "blrabz"})

_HISTORIES = (4, 9, 20, 44)
_INDEX_BITS = 10  # predict_and_update's hashes are written for these widths
_TAG_BITS = 8
_BASE_BITS = 12
_BASE_MASK = (1 << _BASE_BITS) - 1


def conditional(insn: Insn) -> bool:
    return insn.mnemonic in CONDITIONAL or insn.mnemonic.startswith(("b.", "bc."))


@dataclass(frozen=True)
class BranchStats:
    """What the predictor saw and got wrong over one traced run."""

    conditional: int = 0
    conditional_mispredicted: int = 0
    indirect: int = 0
    indirect_mispredicted: int = 0
    returns: int = 0
    returns_mispredicted: int = 0

    @property
    def mispredicts(self) -> int:
        return self.conditional_mispredicted + self.indirect_mispredicted + \
            self.returns_mispredicted

    @property
    def cycles(self) -> int:
        return self.mispredicts * PENALTY_CYCLES

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mispredicts": self.mispredicts,
                "penalty_cycles": PENALTY_CYCLES, "model": MODEL}


class Tage:
    """A small TAGE direction predictor (module docstring); deterministic, starts cold."""

    def __init__(self) -> None:
        self.base = bytearray([1]) * (1 << _BASE_BITS)  # 2-bit counters, weakly not taken
        size = 1 << _INDEX_BITS
        self.tags = [[-1] * size for _ in _HISTORIES]
        self.ctr = [[0] * size for _ in _HISTORIES]  # 3-bit signed: taken when >= 0
        self.useful = [[0] * size for _ in _HISTORIES]
        self.history = 0

    def predict_and_update(self, pc: int, taken: bool) -> bool:
        """Whether the prediction for the branch at `pc` was right; learns the outcome. Each
        tagged table's (index, tag) is the address hashed with the last 4, 9, 20 or 44 outcomes
        of history folded into 10 bits by xor; written out with locals, as it runs once per
        executed conditional branch of the timing test."""
        p = pc >> 2
        q = p ^ (p >> _INDEX_BITS)
        r = p ^ (p >> 7)
        h = self.history
        h20 = h & 0xFFFFF
        h44 = h & 0xFFFFFFFFFFF
        f0, f1 = h & 0xF, h & 0x1FF
        f2 = (h20 ^ (h20 >> 10)) & 0x3FF
        f3 = (h44 ^ (h44 >> 10) ^ (h44 >> 20) ^ (h44 >> 30) ^ (h44 >> 40)) & 0x3FF
        slots = [((q ^ f0) & 0x3FF, (r ^ (f0 * 5) ^ (f0 >> 4)) & 0xFF),
                 ((q ^ f1 ^ 1) & 0x3FF, (r ^ (f1 * 5) ^ (f1 >> 4) ^ 1) & 0xFF),
                 ((q ^ f2 ^ 2) & 0x3FF, (r ^ (f2 * 5) ^ (f2 >> 4) ^ 2) & 0xFF),
                 ((q ^ f3 ^ 3) & 0x3FF, (r ^ (f3 * 5) ^ (f3 >> 4) ^ 3) & 0xFF)]
        tags, ctr = self.tags, self.ctr
        provider = alt = -1
        for i in (3, 2, 1, 0):  # the longest history first
            index, tag = slots[i]
            if tags[i][index] == tag:
                if provider < 0:
                    provider = i
                else:
                    alt = i
                    break
        b = p & _BASE_MASK
        base = self.base
        base_pred = base[b] >= 2
        alt_pred = ctr[alt][slots[alt][0]] >= 0 if alt >= 0 else base_pred
        if provider >= 0:
            index = slots[provider][0]
            row = ctr[provider]
            c = row[index]
            pred = c >= 0
            row[index] = (c + 1 if c < 3 else 3) if taken else (c - 1 if c > -4 else -4)
            if pred != alt_pred:
                useful = self.useful[provider]
                u = useful[index]
                useful[index] = (u + 1 if u < 3 else 3) if pred == taken else \
                    (u - 1 if u > 0 else 0)
        else:
            pred = base_pred
        if provider < 0 or alt < 0:
            c = base[b]
            base[b] = (c + 1 if c < 3 else 3) if taken else (c - 1 if c > 0 else 0)
        if pred != taken and provider < 3:
            self._allocate(slots, provider, taken)
        self.history = ((h << 1) | taken) & 0xFFFFFFFFFFF
        return pred == taken

    def _allocate(self, slots: list[tuple[int, int]], provider: int, taken: bool) -> None:
        for i in range(provider + 1, len(_HISTORIES)):
            index, tag = slots[i]
            if self.useful[i][index] == 0:
                self.tags[i][index] = tag
                self.ctr[i][index] = 0 if taken else -1
                return
        for i in range(provider + 1, len(_HISTORIES)):
            index = slots[i][0]
            self.useful[i][index] = max(0, self.useful[i][index] - 1)


_COND, _RET, _IND, _CALL = 1, 2, 4, 8


def _kind(insn: Insn) -> int:
    """The branch kinds of the instruction that ends a block, as bits (0: not a branch)."""
    if not insn.branch:
        return 0
    m = insn.mnemonic
    return ((_COND if conditional(insn) else _RET if m in RETURNS else _IND if m in INDIRECT
             else 0) | (_CALL if m in CALLS else 0))


def predict(blocks: Iterable[Block], insns: Mapping[int, Insn]) -> BranchStats:
    """Run the predictor over the executed blocks, in order; count what it got wrong. A block's
    last instruction is classified once per address, as the sequence repeats blocks."""
    tage = Tage()
    targets: dict[int, int] = {}
    stack: list[int] = []
    counts = [0] * 6
    kinds: dict[int, int] = {}
    pending = kind = 0  # the address of the branch that ended the previous block, its kinds
    for first, last in blocks:
        if kind:
            if kind & _COND:
                counts[0] += 1
                counts[1] += not tage.predict_and_update(pending, first != pending + 4)
            elif kind & _RET:
                counts[4] += 1
                counts[5] += not stack or stack.pop() != first
            elif kind & _IND:
                counts[2] += 1
                counts[3] += targets.get(pending) != first
                targets[pending] = first
            if kind & _CALL:
                stack.append(pending + 4)
                del stack[:-RETURN_STACK]
        kind = kinds.get(last, -1)
        if kind < 0:
            kind = kinds[last] = _kind(insns[last])
        pending = last
    return BranchStats(*counts)
