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
_INDEX_BITS = 10  # _folds and _slots are written for these widths
_TAG_BITS = 8
_BASE_BITS = 12


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


def _folds(history: int) -> tuple[int, int, int, int]:
    """The last 4, 9, 20 and 44 outcomes of `history`, each folded into 10 bits by xor."""
    h20 = history & 0xFFFFF
    h44 = history & 0xFFFFFFFFFFF
    return (history & 0xF, history & 0x1FF, (h20 ^ (h20 >> 10)) & 0x3FF,
            (h44 ^ (h44 >> 10) ^ (h44 >> 20) ^ (h44 >> 30) ^ (h44 >> 40)) & 0x3FF)


class Tage:
    """A small TAGE direction predictor (module docstring); deterministic, starts cold."""

    def __init__(self) -> None:
        self.base = bytearray([1]) * (1 << _BASE_BITS)  # 2-bit counters, weakly not taken
        size = 1 << _INDEX_BITS
        self.tags = [[-1] * size for _ in _HISTORIES]
        self.ctr = [[0] * size for _ in _HISTORIES]  # 3-bit signed: taken when >= 0
        self.useful = [[0] * size for _ in _HISTORIES]
        self.history = 0

    def _slots(self, pc: int) -> list[tuple[int, int]]:
        """(index, tag) per tagged table: the address hashed with that table's history."""
        p = pc >> 2
        q = p ^ (p >> _INDEX_BITS)
        return [((q ^ f ^ i) & 0x3FF, (p ^ (f * 5) ^ (f >> 4) ^ (p >> 7) ^ i) & 0xFF)
                for i, f in enumerate(_folds(self.history))]

    def predict_and_update(self, pc: int, taken: bool) -> bool:
        """Whether the prediction for the branch at `pc` was right; learns the outcome."""
        slots = self._slots(pc)
        provider = alt = -1
        for i in range(len(_HISTORIES) - 1, -1, -1):
            index, tag = slots[i]
            if self.tags[i][index] == tag:
                if provider < 0:
                    provider = i
                else:
                    alt = i
                    break
        b = (pc >> 2) & ((1 << _BASE_BITS) - 1)
        base_pred = self.base[b] >= 2
        alt_pred = self.ctr[alt][slots[alt][0]] >= 0 if alt >= 0 else base_pred
        if provider >= 0:
            index = slots[provider][0]
            pred = self.ctr[provider][index] >= 0
            c = self.ctr[provider][index]
            self.ctr[provider][index] = min(3, c + 1) if taken else max(-4, c - 1)
            if pred != alt_pred:
                u = self.useful[provider][index]
                self.useful[provider][index] = min(3, u + 1) if pred == taken else max(0, u - 1)
        else:
            pred = base_pred
        if provider < 0 or alt < 0:
            c = self.base[b]
            self.base[b] = min(3, c + 1) if taken else max(0, c - 1)
        if pred != taken and provider < len(_HISTORIES) - 1:
            self._allocate(slots, provider, taken)
        self.history = ((self.history << 1) | taken) & 0xFFFFFFFFFFF
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


def predict(blocks: Iterable[Block], insns: Mapping[int, Insn]) -> BranchStats:
    """Run the predictor over the executed blocks, in order; count what it got wrong."""
    tage = Tage()
    targets: dict[int, int] = {}
    stack: list[int] = []
    counts = [0] * 6
    pending: Insn | None = None
    for first, last in blocks:
        if pending is not None:
            _resolve(pending, first, tage, targets, stack, counts)
        end = insns[last]
        pending = end if end.branch else None
    return BranchStats(*counts)


def _resolve(insn: Insn, target: int, tage: Tage, targets: dict[int, int], stack: list[int],
             counts: list[int]) -> None:
    """The branch `insn` was followed by the block at `target`."""
    pc = insn.address
    if conditional(insn):
        counts[0] += 1
        counts[1] += not tage.predict_and_update(pc, target != pc + 4)
    elif insn.mnemonic in RETURNS:
        counts[4] += 1
        counts[5] += not stack or stack.pop() != target
    elif insn.mnemonic in INDIRECT:
        counts[2] += 1
        counts[3] += targets.get(pc) != target
        targets[pc] = target
    if insn.mnemonic in CALLS:
        stack.append(pc + 4)
        del stack[:-RETURN_STACK]
