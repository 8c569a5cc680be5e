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

import re
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ... import sandbox, tools
from ...errors import InfraError
from ...execution.blocks import Trace
from ...execution.guard import Image
from ...settings import Settings

# Executed addresses closer than this are disassembled as one range.
CLUSTER_GAP = 4096
OBJDUMP_TIMEOUT_S = 60.0

_OBJDUMP_LINE = re.compile(r"^\s*([0-9a-f]+):\s+([0-9a-f]{8})\s+(\S.*)$")
_BARE_ADDRESS = re.compile(r"(?<=[\s,])0x[0-9a-f]+\b")
_ANNOTATION = re.compile(r"\s*(<[^>]*>|//.*)")

BRANCHES = frozenset({
    "b", "bl", "br", "blr", "ret", "cbz", "cbnz", "tbz", "tbnz", "braa", "brab", "braaz",
    "brabz", "blraa", "blrab", "blraaz", "blrabz", "retaa", "retab", "eret", "eretaa", "eretab",
})
CALLS = frozenset({"bl", "blr", "blraa", "blrab", "blraaz", "blrabz"})

__all__ = ["Trace", "build_profile", "disassemble", "executed_blocks"]


# --------------------------------------------------------------------------- disassembly


@dataclass(frozen=True)
class Insn:
    address: int
    word: int
    mnemonic: str
    text: str  # normalised: PC-relative targets become `.`, annotations dropped

    @property
    def branch(self) -> bool:
        return self.mnemonic in BRANCHES or self.mnemonic.startswith(("b.", "bc."))

    @property
    def call(self) -> bool:
        return self.mnemonic in CALLS


def normalise(asm: str) -> tuple[str, str]:
    """(mnemonic, text) of one objdump instruction; branch targets are irrelevant to timing."""
    text = _ANNOTATION.sub("", asm).strip()
    text = _BARE_ADDRESS.sub(".", " ".join(text.split()))
    return text.split(" ", 1)[0].lower(), text


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
                settings: Settings) -> dict[int, Insn]:
    """Every executed address as llvm-objdump decodes the executable's bytes there."""
    ranges = clusters(addresses)
    image = symbol_less_image([(s, exe.bytes_at(s, e - s)) for s, e in ranges])
    name = "executed.o"
    (workdir / name).write_bytes(image)
    argv = [tools.tool("objdump").path, "-d", "--mcpu=neoverse-v2",
            f"--mattr={tools.OBJDUMP_MATTR}", name]
    res = sandbox.run(argv, workdir, timeout_s=OBJDUMP_TIMEOUT_S, confine=False,
                      settings=settings)
    if res.returncode != 0 or res.timed_out:
        raise InfraError(f"llvm-objdump failed: {res.stderr.decode(errors='replace')[:300]}")
    out: dict[int, Insn] = {}
    for line in res.stdout.decode(errors="replace").splitlines():
        m = _OBJDUMP_LINE.match(line)
        if m:
            mnemonic, text = normalise(m.group(3))
            addr = int(m.group(1), 16)
            out[addr] = Insn(addr, int(m.group(2), 16), mnemonic, text)
    missing = [a for a in addresses if a not in out]
    if missing:
        raise InfraError(f"llvm-objdump did not decode executed address {missing[0]:#x}")
    return out


def symbol_less_image(chunks: Sequence[tuple[int, bytes]]) -> bytes:
    """An ELF64 relocatable with one executable section per chunk, at the chunk's address, and
    no symbols: mapping symbols would make objdump print executed words as data."""
    names = b"\0.shstrtab\0" + b"".join(b".text.%d\0" % i for i in range(len(chunks)))
    ehdr, shdr = struct.Struct("<16sHHIQQQIHHHHHH"), struct.Struct("<IIQQQQIIQQ")
    body = bytearray()
    offsets = []
    for _, blob in chunks:
        offsets.append(ehdr.size + len(body))
        body += blob + b"\0" * (-len(blob) % 8)
    names_off = ehdr.size + len(body)
    shoff = (names_off + len(names) + 7) & ~7
    count = len(chunks) + 2
    image = bytearray(ehdr.pack(b"\x7fELF\x02\x01\x01" + b"\0" * 9, 1, 183, 1, 0, 0, shoff, 0,
                                ehdr.size, 0, 0, shdr.size, count, 1))
    image += body + names + b"\0" * (shoff - names_off - len(names))
    image += shdr.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    image += shdr.pack(1, 3, 0, 0, names_off, len(names), 0, 0, 1, 0)
    name_at = len(b"\0.shstrtab\0")
    for i, ((addr, blob), off) in enumerate(zip(chunks, offsets, strict=True)):
        image += shdr.pack(name_at, 1, 0x6, addr, off, len(blob), 0, 0, 4, 0)  # PROGBITS, AX
        name_at += len(b".text.%d\0" % i)
    return bytes(image)


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
