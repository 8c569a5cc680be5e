"""qemu's own log of a traced run (`-d in_asm,exec,nochain`): the independent check of the
execution guard's block record.

Until the guard recorded the timing test's blocks itself, the performance gate ran the timing
test a second time with this log and parsed it; the parser is kept here, for the tests only, so
that the record can be compared with what the emulator itself says it executed (same TB
sequence, same block and cycle counts) on real kernels.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from toolchain import sandbox
from toolchain import scratch as scratch_dirs
from toolchain.errors import InfraError
from toolchain.execution import EXE_NAME, MAP_NAME, ReferenceRun, guard, qemu_argv
from toolchain.execution.blocks import Trace
from toolchain.kernels.model import Variant
from toolchain.settings import Settings

QEMU_LOG_FLAGS = "in_asm,exec,nochain"
TRACE_NAME = "trace.log"
RETURN_SYMBOL = "armgym_kernel_return"

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
_MAP_ENTRY = re.compile(r"^ (\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")


def traced(variant: Variant, scratch: Path, object_name: str, seed: int, test: int,
           settings: Settings, limit_mb: int = 192) -> Trace:
    """Test `test` of the candidate linked in `scratch`, run alone with qemu's log, its inputs
    from the reference (harness mode S), as the performance gate used to."""
    exe = Executable.read(scratch / EXE_NAME)
    ranges = guard.candidate_code(scratch, MAP_NAME, object_name) \
        if (scratch / guard.LAYOUT_NAME).exists() else candidate_ranges(scratch / MAP_NAME,
                                                                        object_name)
    inputs = ReferenceRun(variant, seed, settings).get(inputs_of=test).inputs[test]
    argv = qemu_argv(f"./{EXE_NAME}", seed, test + 1, False, first=test,
                     log=(QEMU_LOG_FLAGS, TRACE_NAME), mode="S")
    sink = TraceSink(scratch, limit_mb * 1024 * 1024)
    try:
        try:
            res = sandbox.run(argv, scratch, timeout_s=60.0, stdin=inputs, settings=settings)
        finally:
            log = sink.close()
        assert res.returncode == 0 and not res.timed_out, res.stderr[-300:]
        return parse_log(log, exe.symbol("kernel"), exe.symbol(RETURN_SYMBOL), ranges,
                         sink.truncated)
    finally:
        sink.remove()


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
            return cls(data, _elf_symbols(data), guard.load_segments(data))
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
