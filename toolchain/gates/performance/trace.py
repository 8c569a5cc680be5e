"""What the kernel actually executed: the timing test's blocks, cut into blocks and loop cycles.

The execution guard records, during the correctness gate's run, the translation blocks (TBs) the
kernel ran in the timing test, in order, from its entry at `kernel` up to its return to
`armgym_kernel_return` (the harness label right after the call), library code included
(execution/blocks.py).

TBs are not basic blocks (qemu also ends them at page boundaries, after 512 instructions or after
some system-register writes), so the TB sequence is re-cut into *blocks*: straight-line runs that
end at a branch instruction (taken or not) or at a non-sequential transfer.

Costing each block alone, as if it looped on itself, can be gamed: split a latency-bound loop body
with never-taken (or always-taken forward) branches and each piece loses the dependency chain
that runs through the others. So blocks are grouped into *cycles* of the dynamic control flow:
scanning the block stream with a stack, a block already on the stack closes a cycle (the blocks
since its previous occurrence: one loop iteration, however many branches it contains), which is
counted and popped. What remains at the end is the acyclic rest, counted once. Every executed
instruction belongs to exactly one counted cycle, and every loop iteration is costed as the whole
iteration it is.

The instruction text comes from the linked executable's bytes at the executed addresses,
disassembled by llvm-objdump in a symbol-less image (so words marked as data by `.word` are
decoded as the CPU decodes them), never from the submitted text. Those bytes (and ld's map) are
read before the run, which may not write any file but the guard's record, so a kernel cannot
change what is decoded. The record itself cannot be forged: the plugin writes it at exit, under a
token the guest never sees, and the kernel can neither make a system call nor run outside a call
from the harness (the guard stops it first). A kernel whose executed code contains `svc` is
refused all the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ... import decoder
from ...decoder import Insn, normalise
from ...errors import InfraError
from ...execution.blocks import Trace
from ...execution.guard import Image

# Executed addresses closer than this are disassembled as one range.
CLUSTER_GAP = 4096

__all__ = ["Insn", "Trace", "build_profile", "disassemble", "executed_blocks", "normalise"]


# --------------------------------------------------------------------------- disassembly


def clusters(addresses: Iterable[int], gap: int = CLUSTER_GAP) -> list[tuple[int, int]]:
    """Sorted [start, end) ranges covering the addresses, merged across small gaps."""
    out: list[list[int]] = []
    for a in sorted(addresses):
        if out and a - out[-1][1] <= gap:
            out[-1][1] = a + 4
        else:
            out.append([a, a + 4])
    return [(s, e) for s, e in out]


def disassemble(exe: Image, addresses: Iterable[int], workdir: Path,
                decoded: Mapping[int, Insn] | None = None,
                words: decoder.Words | None = None) -> dict[int, Insn]:
    """Every executed address as llvm-objdump decodes the executable's bytes there: looked up
    in `decoded` (the object gate's pass over all the kernel may execute) when given, else
    decoded now (through the word cache `words`, when given)."""
    wanted = set(addresses)
    if decoded is None:
        ranges = clusters(wanted)
        found = decoder.decode([(s, exe.bytes_at(s, e - s)) for s, e in ranges], workdir,
                               words)
        decoded = {a: i for chunk in found for a, i in chunk.insns.items()}
    missing = sorted(wanted - decoded.keys())
    if missing:
        raise InfraError(f"llvm-objdump did not decode executed address {missing[0]:#x}")
    return {a: decoded[a] for a in sorted(wanted)}


# --------------------------------------------------------------------------- blocks and cycles

Block = tuple[int, int]  # (first address, last address): a straight-line run ending at a branch


@dataclass
class Profile:
    """The kernel's executed work: blocks with counts, and the loop cycles the cost is taken on."""

    blocks: Counter[Block] = field(default_factory=Counter)
    cycles: Counter[tuple[Block, ...]] = field(default_factory=Counter)
    instructions: int = 0
    insns: dict[int, Insn] = field(default_factory=dict)

    def block_insns(self, block: Block) -> list[Insn]:
        return [self.insns[a] for a in range(block[0], block[1] + 4, 4)]

    def cycle_insns(self, cycle: tuple[Block, ...]) -> list[Insn]:
        return [i for b in cycle for i in self.block_insns(b)]

    def cycle_instructions(self) -> int:
        """Instructions the cycles account for; equals the dynamic count by construction."""
        return sum(n * sum((b[1] - b[0]) // 4 + 1 for b in c) for c, n in self.cycles.items())


def executed_blocks(trace: Trace, insns: dict[int, Insn]) -> Iterator[Block]:
    """The blocks of the TB sequence in executed order: TBs joined while they run on
    sequentially, cut after a branch and at a transfer without one."""
    ends = {tb: insns[trace.extents[tb][-1]].branch for tb in set(trace.sequence)}
    start = -1
    prev_last = -1
    for tb in trace.sequence:
        ext = trace.extents[tb]
        if start >= 0 and ext[0] != prev_last + 4:  # a transfer without a branch: cut anyway
            yield start, prev_last
            start = -1
        if start < 0:
            start = ext[0]
        prev_last = ext[-1]
        if ends[tb]:
            yield start, prev_last
            start = -1
    if start >= 0:
        yield start, prev_last


def build_profile(trace: Trace, insns: dict[int, Insn]) -> Profile:
    """Blocks from the TB sequence, then the cycle decomposition described in the module doc."""
    profile = Profile(instructions=trace.instructions, insns=insns)
    stack: list[Block] = []
    where: dict[Block, int] = {}
    for block in executed_blocks(trace, insns):
        _close(profile, block, stack, where)
    if stack:
        profile.cycles[tuple(stack)] += 1
    return profile


def _close(profile: Profile, block: Block, stack: list[Block], where: dict[Block, int]) -> None:
    profile.blocks[block] += 1
    at = where.get(block)
    if at is not None:
        cycle = tuple(stack[at:])
        profile.cycles[cycle] += 1
        for b in cycle:
            del where[b]
        del stack[at:]
    where[block] = len(stack)
    stack.append(block)
