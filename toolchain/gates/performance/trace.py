"""What the kernel actually executed: a qemu trace of one test, cut into blocks and loop cycles.

qemu-user logs every translation block (TB) it translates (`-d in_asm`: the TB's instruction
addresses) and every TB it starts (`-d exec` with `nochain`, so chained TBs are logged too). The
kernel's work is the run of TBs from the first one at `kernel` to the first one at
`armgym_kernel_return` (the harness label right after the call), library code included.

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
read before the timing run, so a kernel that rewrites files during the run changes nothing.

The trace cannot be forged without being noticed. qemu logs each translation and each block
execution as one write(), the execution line before the block runs. The log goes through a FIFO
that the sandboxed process may write but not read (when the verifier runs as root), into a file
outside the sandbox: nothing already logged can be removed or reordered, only appended to, and
appending needs a system call, whose `svc` block is therefore in the trace before anything the
kernel writes. So a kernel whose executed code contains `svc` is refused (a kernel has no reason
to make a system call), and so is a trace that contradicts itself (an execution of a block never
translated, a block translated twice with different extents), or candidate code running after
the first return.
"""

from __future__ import annotations

import mmap
import os
import re
import select
import shutil
import struct
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ... import sandbox, tools
from ... import scratch as scratch_dirs
from ...errors import InfraError
from ...settings import Settings

QEMU_LOG_FLAGS = "in_asm,exec,nochain"
TRACE_NAME = "trace.log"
KERNEL_SYMBOL = "kernel"
RETURN_SYMBOL = "armgym_kernel_return"
# Executed addresses closer than this are disassembled as one range.
CLUSTER_GAP = 4096
OBJDUMP_TIMEOUT_S = 60.0

_TRACE_OR_TB = re.compile(
    rb"IN:[^\n]*\n((?:0x[0-9a-f]+:[^\n]*\n)+)"
    rb"|Trace \d+: 0x[0-9a-f]+ \[([0-9a-f]+)/([0-9a-f]+)/([0-9a-f]+)/[0-9a-f]+\]"
)
# Before the kernel only translations matter: an IN block and the first execution of its TB.
_TB_BEFORE = re.compile(
    rb"IN:[^\n]*\n((?:0x[0-9a-f]+:[^\n]*\n)+)\s*"
    rb"Trace \d+: 0x[0-9a-f]+ \[([0-9a-f]+)/([0-9a-f]+)/([0-9a-f]+)/[0-9a-f]+\]"
)
_TB_ADDR = re.compile(rb"^0x([0-9a-f]+):", re.M)
_OBJDUMP_LINE = re.compile(r"^\s*([0-9a-f]+):\s+([0-9a-f]{8})\s+(\S.*)$")
_BARE_ADDRESS = re.compile(r"(?<=[\s,])0x[0-9a-f]+\b")
_ANNOTATION = re.compile(r"\s*(<[^>]*>|//.*)")
_MAP_ENTRY = re.compile(r"^ (\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")

BRANCHES = frozenset({
    "b", "bl", "br", "blr", "ret", "cbz", "cbnz", "tbz", "tbnz", "braa", "brab", "braaz",
    "brabz", "blraa", "blrab", "blraaz", "blrabz", "retaa", "retab", "eret", "eretaa", "eretab",
})
CALLS = frozenset({"bl", "blr", "blraa", "blrab", "blraaz", "blrabz"})


class TraceError(Exception):
    """The trace does not show a kernel that was entered and returned normally."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "timeout", "no_return", "ran_after_return", "tampered"


class TraceSink:
    """qemu's log through a FIFO into a private file capped at `limit` bytes (module doc).

    Past the cap the FIFO is closed, so qemu's next log write kills it (SIGPIPE)."""

    def __init__(self, scratch: Path, limit: int) -> None:
        self.fifo = scratch / TRACE_NAME
        self.fifo.unlink(missing_ok=True)
        os.mkfifo(self.fifo, 0o600)
        # root runs the sandbox as nobody: "others" may write the FIFO, never read it
        os.chmod(self.fifo, 0o602 if os.geteuid() == 0 else 0o600)
        self._dir = str(scratch_dirs.make("trace"))
        self.capture = Path(self._dir, "trace.log")
        self._out = open(self.capture, "wb")  # noqa: SIM115 - closed in close()
        self.limit, self.size, self.truncated = limit, 0, False
        self._fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer of our own: no EOF
        # close() wakes the pump through this pipe at once, instead of a polling interval that
        # would add its length to every traced run
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while self._fd >= 0:
            ready, _, _ = select.select([self._fd, self._wake_r], [], [])
            if not self._drain() or self._wake_r in ready:
                return

    def _drain(self) -> bool:
        while True:
            try:
                chunk = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                return True
            if not chunk:
                return True
            if self.size + len(chunk) > self.limit:
                self.truncated = True
                os.close(self._fd)
                self._fd = -1
                return False
            self._out.write(chunk)
            self.size += len(chunk)

    def close(self) -> Path:
        """Stop after the emulator has exited; the captured log (the caller removes it)."""
        os.write(self._wake_w, b"x")
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._out.close()
        self.fifo.unlink(missing_ok=True)
        return self.capture

    def remove(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


# --------------------------------------------------------------------------- the executable


@dataclass(frozen=True)
class Executable:
    """A static AArch64 executable: its symbols and its loadable bytes by virtual address."""

    data: bytes
    symbols: dict[str, int]
    segments: tuple[tuple[int, int, int], ...]  # (vaddr, file offset, file size)

    @classmethod
    def read(cls, path: Path) -> Executable:
        try:
            data = path.read_bytes()
            return cls(data, _elf_symbols(data), _elf_segments(data))
        except (OSError, struct.error, IndexError, ValueError) as exc:
            raise InfraError(f"cannot read the linked executable: {exc}") from exc

    def symbol(self, name: str) -> int:
        if name not in self.symbols:
            raise InfraError(f"the linked executable has no symbol {name}")
        return self.symbols[name]

    def bytes_at(self, address: int, size: int) -> bytes:
        for vaddr, offset, filesz in self.segments:
            if vaddr <= address and address + size <= vaddr + filesz:
                return self.data[offset + address - vaddr: offset + address - vaddr + size]
        raise InfraError(f"executed address {address:#x} is not in a loaded segment")


def _elf_segments(data: bytes) -> tuple[tuple[int, int, int], ...]:
    phoff, phentsize, phnum = struct.unpack_from("<Q", data, 32)[0], *struct.unpack_from(
        "<HH", data, 54)
    out = []
    for i in range(phnum):
        ptype, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if ptype == 1:  # PT_LOAD
            out.append((vaddr, offset, filesz))
    return tuple(out)


def _elf_symbols(data: bytes) -> dict[str, int]:
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
               for i in range(shnum)]
    out: dict[str, int] = {}
    for _name, stype, _f, _a, offset, size, link, _i, _al, entsize in headers:
        if stype != 2:  # SHT_SYMTAB
            continue
        strtab = headers[link]
        strings = data[strtab[4]: strtab[4] + strtab[5]]
        for k in range(size // entsize):
            name, info, _other, shndx, value, _size = struct.unpack_from(
                "<IBBHQQ", data, offset + k * entsize)
            if shndx and info >> 4 in (1, 2):  # defined, GLOBAL or WEAK
                out[strings[name: strings.index(b"\0", name)].decode()] = value
    return out


def candidate_ranges(map_path: Path, object_name: str) -> list[tuple[int, int]]:
    """Address ranges of the candidate's allocated sections, from ld's map of the link."""
    try:
        lines = map_path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise InfraError(f"the link map is missing: {exc}") from exc
    ranges = []
    for line in lines:
        m = _MAP_ENTRY.match(line)
        if m and m.group(4) == object_name:
            start, size = int(m.group(2), 16), int(m.group(3), 16)
            if start and size:
                ranges.append((start, start + size))
    if not ranges:
        raise InfraError(f"the link map does not place {object_name}")
    return sorted(ranges)


# --------------------------------------------------------------------------- the qemu log


@dataclass
class Trace:
    """Translation blocks (their instruction addresses) and the order the kernel ran them in."""

    extents: list[tuple[int, ...]]
    sequence: array  # TB ids from the kernel's entry up to (not including) its return
    instructions: int  # dynamic instruction count of the kernel's work

    def addresses(self) -> set[int]:
        return {a for tb in set(self.sequence) for a in self.extents[tb]}


def _translated_before(log: mmap.mmap, key: tuple[bytes, bytes, bytes],
                       end: int) -> tuple[int, ...] | None:
    """The instruction addresses of TB `key` as translated before offset `end`: its IN block
    stands right before its first execution (qemu translates a block just before running it);
    None when the log holds no such pair."""
    first = log.find(b"[%s/%s/%s/" % key, 0, end)
    if first < 0:
        return None
    header = log.rfind(b"IN:", 0, first)
    m = _TB_BEFORE.match(log, header) if header >= 0 else None
    if m is None or m.end() < first or (m.group(2), m.group(3), m.group(4)) != key:
        return None
    return tuple(int(a, 16) for a in _TB_ADDR.findall(m.group(1)))


def parse_log(path: Path, kernel: int, kernel_return: int,
              candidate: Sequence[tuple[int, int]], truncated: bool) -> Trace:
    """The kernel's TBs from the qemu log; TraceError when it never returned or ran later."""
    ids: dict[tuple[bytes, bytes, bytes], int] = {}
    extents: list[tuple[int, ...]] = []
    sequence = array("I")
    pending: tuple[int, ...] | None = None
    state = 0  # 0 before the kernel, 1 inside it, 2 after its return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as log:
        entry = log.find(b"/%016x/" % kernel)
        if entry < 0:
            raise TraceError("no_return", "the kernel was never entered")
        begin = log.rfind(b"\n", 0, entry) + 1
        entered = log.find(b"\n", entry) + 1  # the end of the kernel's first execution line
        for m in _TRACE_OR_TB.finditer(log, begin):
            if m.group(1) is not None:
                pending = tuple(int(a, 16) for a in _TB_ADDR.findall(m.group(1)))
                continue
            key = (m.group(2), m.group(3), m.group(4))
            tb = ids.get(key)
            if tb is None and pending is None:
                # translated before the kernel ran: looked up only for the blocks that run from
                # its entry on (most of the log is the harness starting up, never needed)
                found = _translated_before(log, key, entered)
                if found is not None:
                    tb = ids[key] = len(extents)
                    extents.append(found)
            if tb is None or pending is not None:
                if pending is None or pending[0] != int(m.group(3), 16):
                    raise TraceError("tampered", "the trace shows a block that was never "
                                     "translated")
                if tb is None:
                    tb = ids[key] = len(extents)
                    extents.append(pending)
                elif extents[tb] != pending:
                    raise TraceError("tampered", "the trace translates a block twice "
                                     "differently")
                pending = None
            pc = extents[tb][0]
            if state == 0 and pc == kernel:
                state = 1
            if state == 1:
                if pc == kernel_return:
                    state = 2
                    if not _candidate_pages_after(log, m.end(), candidate):
                        break  # nothing after this can be the kernel's code (docstring below)
                    continue
                sequence.append(tb)
            elif state == 2 and _overlaps(extents[tb], candidate):
                raise TraceError("ran_after_return", "the kernel's code ran after it had "
                                 "returned to the harness (return address redirected)")
    if state == 1 and truncated:
        raise TraceError("timeout", "the kernel's trace exceeded its size budget")
    if state != 2:
        raise TraceError("no_return", "the kernel never returned to its caller")
    return Trace(extents, sequence, sum(len(extents[tb]) for tb in sequence))


def _candidate_pages_after(log: mmap.mmap, start: int,
                           candidate: Sequence[tuple[int, int]]) -> bool:
    """Whether any line after `start` names a pc on a page the candidate's code is on (or the
    page before it: a block starting up to 512 instructions earlier can run into it).

    After the kernel returned only this matters: candidate code running again (a redirected
    return address). Such a run is logged like any other, so a log whose remaining pcs all lie
    elsewhere cannot hold it, and the rest of the log (the harness writing its records, most
    of what is left) need not be parsed. Lines the kernel might have forged can only add pcs.
    """
    pages = {p for lo, hi in candidate for p in range((lo - 2048) >> 12, ((hi - 1) >> 12) + 1)}
    return any(log.find(b"/%013x" % page, start) >= 0 for page in pages)


def _overlaps(addresses: tuple[int, ...], ranges: Sequence[tuple[int, int]]) -> bool:
    lo, hi = addresses[0], addresses[-1] + 4
    return any(lo < end and start < hi for start, end in ranges)


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


def disassemble(exe: Executable, addresses: Iterable[int], workdir: Path,
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
