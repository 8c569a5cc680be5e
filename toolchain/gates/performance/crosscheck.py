"""Gate 5: a second, independent estimate of the same executed work must agree with the first.

Two figures are compared with llvm-mca's weighted cycles: OSACA's estimate of the same loop
cycles and counts (ratio = OSACA / llvm-mca), and the emulator's dynamic instruction count
(IPC = instructions / llvm-mca cycles). Each must lie in a band calibrated on honest compiler
output of every variant (`armgym calibrate`, recorded in calibration.json with the command that
produced it). Outside either band the speedup reward is withheld (`cross_check_disagreement`);
the correctness result stands. A missing calibration is an infrastructure failure, never a pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ErrorKind, InfraError
from ...verdict import GateResult

if TYPE_CHECKING:
    from .gate import Measurement

NAME = "cross_check"
CALIBRATION = Path(__file__).with_name("calibration.json")


@dataclass(frozen=True)
class Bands:
    ratio: tuple[float, float]
    ipc: tuple[float, float]


@cache
def bands(path: Path = CALIBRATION) -> Bands:
    try:
        data = json.loads(path.read_text())
        return Bands(tuple(data["band"]["ratio"]), tuple(data["band"]["ipc"]))  # type: ignore[arg-type]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InfraError(f"cross-check calibration unreadable ({path.name}): {exc}") from exc


def figures(m: Measurement) -> tuple[float, float]:
    """(OSACA / llvm-mca, instructions per llvm-mca cycle), rounded so verdicts are stable.

    Both on the pipeline cycles: neither pipeline model prices mispredictions, so the branch
    penalty (branches.py) is left out of the comparison."""
    mca = m.pipeline_cycles
    return round(m.osaca_cycles / mca, 6), round(m.instructions / mca, 6)


def check(m: Measurement, limits: Bands | None = None) -> GateResult:
    limits = limits or bands()
    ratio, ipc = figures(m)
    details = {"osaca_cycles": m.osaca_cycles, "mca_cycles": m.pipeline_cycles, "ratio": ratio,
               "ratio_band": list(limits.ratio), "instructions": m.instructions, "ipc": ipc,
               "ipc_band": list(limits.ipc), "osaca_fallbacks": m.osaca_fallbacks}
    problems = []
    if m.osaca_declined:
        problems.append(f"OSACA declined {m.osaca_declined} loop cycle(s) with more distinct "
                        "instructions than it can price")
    elif not limits.ratio[0] <= ratio <= limits.ratio[1]:
        problems.append(f"OSACA estimates {m.osaca_cycles:g} cycles where llvm-mca estimates "
                        f"{m.pipeline_cycles:g} (ratio {ratio:.3g}, calibrated band "
                        f"{limits.ratio[0]:.3g}-{limits.ratio[1]:.3g})")
    if not limits.ipc[0] <= ipc <= limits.ipc[1]:
        problems.append(f"{m.instructions} executed instructions in {m.pipeline_cycles:g} "
                        "llvm-mca cycles "
                        f"(IPC {ipc:.3g}, calibrated band {limits.ipc[0]:.3g}-{limits.ipc[1]:.3g})")
    if problems:
        return GateResult.fail(NAME, ErrorKind.cross_check_disagreement,
                               "; ".join(problems) + "; speedup reward withheld", **details)
    return GateResult(NAME, True, message="the two cost models agree", details=details)
