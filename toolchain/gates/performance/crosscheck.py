"""Gate 5: a second, independent estimate of the same executed work must agree with the first.

Two figures are compared with llvm-mca's weighted cycles: OSACA's estimate of the same loop
cycles and counts (ratio = OSACA / llvm-mca), and the emulator's dynamic instruction count
(IPC = instructions / llvm-mca cycles). Each must lie in a band calibrated on honest code:
compiler output of every variant and hand-written kernels (`armgym calibrate`, recorded in
calibration.json with the command that produced it). Outside either band the speedup reward
is withheld (`cross_check_disagreement`); the correctness result stands. A missing calibration
is an infrastructure failure, never a pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ErrorKind, GateName, InfraError
from ...verdict import CrossCheckDetails, GateResult

if TYPE_CHECKING:
    from ...kernels.model import Variant
    from .measurement import Measurement
    from .trace import Insn

NAME = GateName.cross_check.value
CALIBRATION = Path(__file__).with_name("calibration.json")


# Block classes, by what the executed instructions are (dynamic counts): the two models differ
# systematically by class (OSACA knows few SVE and structure-load forms, sees library code
# differently), so each class gets its own band, far narrower than one band for all. The class
# is the plurality of the executed work: library code (outside the candidate's own object: only
# the variant's math functions can be called), SVE, Advanced SIMD, or scalar. Loop control
# (branches and compares) is no kind of work and is not counted: an SVE loop of a load, an add
# and `incw` is SVE work, not the scalar `cmp` and `b.lo` that close it. SVE's vector-length
# counters (`incw`, `cntd`, `addvl`, ...) write general registers but exist only for SVE
# loops, so they count as SVE. A kernel can move to another class's band only by making that
# kind of work the largest part of what it executes, which costs it the cycles the reward is
# paid on.
CLASSES = ("calls", "sve", "simd", "scalar")
CLASS_VERSION = "2"  # bump when the classification changes (cached measurements carry it)
_SVE = re.compile(r"\b(z\d+\.[bhsdq]|p\d+(/[mz]|\.[bhsd]))\b|\bz\d+\b")
_SVE_COUNTERS = re.compile(r"(inc|dec|cnt|sqinc|sqdec|uqinc|uqdec)[bhwd]|addvl|addpl|rdvl")
_SIMD = re.compile(r"\bv\d+\.\d*[bhsd]\b|\bq\d+\b")
_CONTROL = frozenset({"cmp", "cmn", "tst", "ccmp", "ccmn"})


def kind_of(insn: Insn) -> str | None:
    """The kind of work one of the candidate's own instructions is; None for loop control."""
    if insn.branch or insn.mnemonic in _CONTROL:
        return None
    if _SVE.search(insn.text) or _SVE_COUNTERS.fullmatch(insn.mnemonic):
        return "sve"
    return "simd" if _SIMD.search(insn.text) else "scalar"


def block_class(executed: Iterable[tuple[Insn, int]], own: Callable[[int], bool]) -> str:
    """The class of a kernel's executed work, from (instruction, times executed) pairs; `own`
    tells the candidate's addresses from library code's."""
    counts = dict.fromkeys(CLASSES, 0)
    for insn, n in executed:
        kind = kind_of(insn) if own(insn.address) else "calls"
        if kind is not None:
            counts[kind] += n
    return max(CLASSES, key=lambda c: (counts[c], -CLASSES.index(c)))


def class_key(task: str, kind: str) -> str:
    """A band's class: the task's template (or the variant itself), fixed by the task and not
    by the candidate, and the kind of work the candidate's execution mostly is (block_class)."""
    return f"{task}/{kind}"


@dataclass(frozen=True)
class Bands:
    ratio: tuple[float, float]
    ipc: tuple[float, float]
    by_class: dict[str, tuple[tuple[float, float], tuple[float, float]]] = field(
        default_factory=dict)

    def of(self, variant: str, template: str,
           kind: str) -> tuple[tuple[float, float], tuple[float, float]]:
        """(ratio band, IPC band). The ratio band is the most specific calibrated: the
        variant's own for this kind of work (where its template's honest code spreads too wide
        for one band), the template's for this kind, the template's over all its honest code
        (for a kind none of it does: such code is rarely faster than the baselines, so a false
        alarm there costs little), else the global band."""
        for key in (class_key(variant, kind), class_key(template, kind),
                    class_key(template, "*")):
            if key in self.by_class:
                # IPC is judged on the global band only: honest code of one template differs
                # in IPC by nature (a latency-bound accumulator chain against independent
                # accumulators), and a class's compiler output does not span that range, so
                # per-class IPC bands flagged honest hand-written reductions.
                return self.by_class[key][0], self.ipc
        return self.ratio, self.ipc


def parse_bands(band: dict) -> Bands:
    classes = {c: (tuple(b["ratio"]), tuple(b["ipc"])) for c, b in band.get("classes", {}).items()}
    return Bands(tuple(band["ratio"]), tuple(band["ipc"]), classes)  # type: ignore[arg-type]


# Whether the gate enforces the per-class bands. It does: cross-validated on honest compiler
# output they did not see (calibration.json's `cross_validated`: the variants split in two by
# hash, each half judged by bands calibrated on the other) they flag none, and none of the
# calibration's own points (every -O3 baseline among them) or the held-out hand-written
# kernels. Off, only the global bands judge, and a kernel whose hidden work the two models
# price 4x apart passes (tests/test_crosscheck.py).
ENFORCE_CLASSES = True


@cache
def calibrated(path: Path = CALIBRATION) -> Bands:
    """Every calibrated band: per class (compiler output at every level and the hand-written
    kernels of honest.py) and global."""
    try:
        return parse_bands(json.loads(path.read_text())["band"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InfraError(f"cross-check calibration unreadable ({path.name}): {exc}") from exc


# The global OSACA / llvm-mca band the last sweep of every power-of-two baseline calibrated
# (verifier 0.5.1), kept as the floor of the global band, which judges only a template with no
# calibrated class (none: the calibration holds every -O3 baseline).
FULL_SWEEP_RATIO = (0.1482, 3.9884)


def bands(path: Path = CALIBRATION) -> Bands:
    """The bands the gate enforces: the calibrated per-class bands (when ENFORCE_CLASSES), and
    the global ones, whose ratio band is never narrower than FULL_SWEEP_RATIO."""
    found = calibrated(path)
    (lo, hi), (flo, fhi) = found.ratio, FULL_SWEEP_RATIO
    return Bands((min(lo, flo), max(hi, fhi)), found.ipc,
                 found.by_class if ENFORCE_CLASSES else {})


def figures(m: Measurement) -> tuple[float, float]:
    """(OSACA / llvm-mca, instructions per llvm-mca cycle), rounded so verdicts are stable.

    Both on the pipeline cycles: neither pipeline model prices mispredictions, so the branch
    penalty (branches.py) is left out of the comparison."""
    return figures_of(m.osaca_cycles, m.instructions, m.pipeline_cycles)


def figures_of(osaca_cycles: float, instructions: int,
               pipeline_cycles: float) -> tuple[float, float]:
    return round(osaca_cycles / pipeline_cycles, 6), round(instructions / pipeline_cycles, 6)


def check(m: Measurement, variant: Variant, limits: Bands | None = None) -> GateResult:
    limits = limits or bands()
    template = variant.template
    ratio_band, ipc_band = limits.of(variant.id, template, m.block_class)
    ratio, ipc = figures(m)
    details = CrossCheckDetails(
        osaca_cycles=m.osaca_cycles, mca_cycles=m.pipeline_cycles, ratio=ratio,
        block_class=class_key(template, m.block_class), ratio_band=list(ratio_band),
        instructions=m.instructions, ipc=ipc, ipc_band=list(ipc_band),
        osaca_fallbacks=m.osaca_fallbacks)
    problems = []
    if m.osaca_declined:
        problems.append(f"OSACA declined {m.osaca_declined} loop cycle(s) with more distinct "
                        "instructions than it can price")
    elif not ratio_band[0] <= ratio <= ratio_band[1]:
        problems.append(f"OSACA estimates {m.osaca_cycles:g} cycles where llvm-mca estimates "
                        f"{m.pipeline_cycles:g} (ratio {ratio:.3g}, calibrated band for "
                        f"{class_key(template, m.block_class)} code "
                        f"{ratio_band[0]:.3g}-{ratio_band[1]:.3g})")
    if not ipc_band[0] <= ipc <= ipc_band[1]:
        problems.append(f"{m.instructions} executed instructions in {m.pipeline_cycles:g} "
                        "llvm-mca cycles "
                        f"(IPC {ipc:.3g}, calibrated band {ipc_band[0]:.3g}-{ipc_band[1]:.3g})")
    if problems:
        return GateResult.fail(NAME, ErrorKind.cross_check_disagreement,
                               "; ".join(problems) + "; speedup reward withheld", details)
    return GateResult(NAME, True, message="the two cost models agree", details=details)
