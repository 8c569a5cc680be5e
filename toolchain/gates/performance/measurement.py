"""What the cost models found for one traced run: the record the performance gate, the
cross-check, the baseline cache and the calibration share (its own module, so none of them
imports another for it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Measurement:
    """Both models' figures for one traced run of one kernel on one input."""

    cycles: float  # what the reward reads: pipeline_cycles + branch_cycles (when enabled)
    pipeline_cycles: float  # llvm-mca: sum over loop cycles of first pass + (count - 1) x steady
    branch_cycles: float  # mispredictions x the penalty (branches.py); 0 when disabled
    branches: dict[str, Any]  # the predictor's counts (BranchStats.to_json)
    osaca_cycles: float  # OSACA on the same cycles and counts
    instructions: int  # dynamic instruction count from the emulator
    blocks: int  # distinct basic blocks executed
    block_executions: int
    loop_cycles: int  # distinct loop cycles costed
    osaca_fallbacks: int  # dynamic instructions OSACA's database lacked
    osaca_declined: int = 0  # loop cycles OSACA declined to price (too many distinct shapes)
    block_class: str = "scalar"  # crosscheck.block_class of the executed work

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
