"""The timing test's executed blocks, as the execution guard recorded them during the tests.

The guard plugin (guard_plugin.c, `record=`) gives every translation block that holds the
candidate's or allowed code an execution callback, and during one chosen call of the kernel (the
timing test) appends the block's id to a sequence, from the kernel's entry up to its return to
the harness. At exit it writes the blocks (first and last instruction address of each
translation) and the sequence into a file under the run's token. That is the order the kernel
ran its code in, which the performance gate cuts into blocks and loop cycles and the branch
predictor replays; no separate traced run, no emulator log.

The sequence is bounded (`trace_limit_blocks`, at most MAX_SEQUENCE); a call that runs more
blocks is recorded as over its budget, which the performance gate scores `timeout`.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

from ..errors import InfraError

RECORD_NAME = "blocks.bin"
MAX_TBS = 1 << 17  # guard_plugin.c's MAX_TBS
MAX_SEQUENCE = 1 << 23  # guard_plugin.c's MAX_SEQUENCE
MAGIC = b"armgym-blocks\0\0\0"
_HEAD = struct.Struct("<16s64sIIQ")
_DONE, _OVER_LIMIT, _TOO_MANY_TBS = 1, 2, 4


@dataclass
class Trace:
    """Translation blocks (their instruction addresses) and the order the kernel ran them in."""

    extents: list[tuple[int, ...]]
    sequence: array  # TB ids from the kernel's entry up to (not including) its return
    instructions: int  # dynamic instruction count of the kernel's work

    def addresses(self) -> set[int]:
        return {a for tb in set(self.sequence) for a in self.extents[tb]}


class OverBudget(Exception):
    """The recorded call ran more blocks than the sequence may hold."""


def read(path: Path, token: str) -> Trace:
    """The record the plugin wrote at `path`; OverBudget when the call outgrew it, InfraError
    when there is no complete record (the guest cannot write it: it never runs code outside the
    harness's and makes no system call during the kernel, so a bad record is the verifier's)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InfraError(f"the execution guard left no block record: {exc.strerror}") from exc
    if len(data) < _HEAD.size:
        raise InfraError("the execution guard's block record is truncated")
    magic, said, flags, ntbs, nseq = _HEAD.unpack_from(data)
    if magic != MAGIC or said.rstrip(b"\0") != token.encode():
        raise InfraError("the block record is not the execution guard's of this run")
    if flags & (_OVER_LIMIT | _TOO_MANY_TBS):
        raise OverBudget
    body = _HEAD.size + 16 * ntbs
    if not flags & _DONE or len(data) != body + 4 * nseq or ntbs > MAX_TBS:
        raise InfraError("the execution guard did not record the timing test's call")
    bounds = array("Q", data[_HEAD.size: body])
    sequence = array("I", data[body:])
    extents = []
    for first, last in zip(bounds[::2], bounds[1::2], strict=True):
        if last < first or (last - first) % 4:
            raise InfraError(f"the execution guard recorded a block {first:#x}-{last:#x}")
        extents.append(tuple(range(first, last + 4, 4)))
    if sequence and max(sequence) >= ntbs:
        raise InfraError("the block record names a block it does not hold")
    return Trace(extents, sequence, sum(len(extents[tb]) for tb in sequence))
