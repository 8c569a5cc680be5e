"""The candidate placed into its harness without ld: one process less per attempt.

Each variant's harness is also linked once, by ld, into a static executable with three reserved
slots (`slot.s`: code in the R+X segment, read-only data in the R segment, writable data in the
RW segment) and `kernel` defined at the start of the code slot; `-q` keeps the relocations of
the harness's own references to `kernel` (its `bl kernel`). Per attempt, `place` lays the
candidate's allocated sections out in the slots, resolves its symbols (its own, and the
variant's allowed math functions from the executable's symbol table), applies its relocations,
points the harness's references and the `kernel` symbol at the candidate's entry, and writes
the patched copy: the same executable ld would have made, laid out differently. The harness
(about 1.7 MB) is not held in memory, per variant or per attempt: an attempt reads the 4 KiB
pages it patches from the file, and its executable is the file copied in the kernel
(copy_file_range) with those pages written over it.

The object has passed the object check, whose reader bounds-checked every header, symbol and
relocation index. Placing it is deliberately narrower than ld: only the relocation types
compilers and hand-written kernels use, applied only when in range, aligned and inside their
section, against symbols in placed sections, absolute, or allowed functions. Anything else
(another type, an overflow ld would answer with a veneer or an error, an object larger than the
slots) returns None, and the attempt is linked by ld in the sandbox as before: the verdict on
every object stays ld's, and the fast path never accepts what ld would refuse.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gates import object_checks as oc
from . import guard

TEXT_SLOT = 128 * 1024  # code <= 64 KiB (object check) plus alignment padding
RO_SLOT = 256 * 1024
RW_SLOT = 256 * 1024
SLOT_SYMBOLS = ("armgym_text_slot", "armgym_ro_slot", "armgym_rw_slot")
# Unaligned slots start where ld would put the candidate's first section of each kind (the
# end of the harness's input sections of that output section), so a candidate's code lands at
# the addresses ld would give it, and the output sections keep the harness's own alignment.
SLOT_SOURCE = f"""\
// The slots a candidate is placed in (execution/place.py); `kernel` is moved per attempt.
.section .text.armgym_slot,"ax",%progbits
.globl armgym_text_slot, kernel
armgym_text_slot:
kernel:
.space {TEXT_SLOT}
.section .rodata.armgym_slot,"a",%progbits
.globl armgym_ro_slot
armgym_ro_slot:
.space {RO_SLOT}
.section .data.armgym_slot,"aw",%progbits
.globl armgym_rw_slot
armgym_rw_slot:
.space {RW_SLOT}
"""
# Code sections ld's default script places before the harness's code, not after it. (Mergeable
# constants, `.rodata.cst16`, are placed as they are: ld would merge them with the harness's, which
# moves only data, and the slots move the data anyway.)
_EARLY_TEXT = (".text.unlikely", ".text.exit", ".text.startup", ".text.hot", ".text.sorted")
SHF_MERGE = 0x10
_SLOT_OF = {"text": 0, "rodata": 1, "eh_frame": 1, "data": 2, "bss": 2}
_SLOT_SIZE = (TEXT_SLOT, RO_SLOT, RW_SLOT)


class Unplaceable(Exception):
    """The object is not one the fast path places; ld links it."""


PAGE = 4096


class Pages:
    """The executable being placed: the template file, with the pages an attempt touched read
    from it on first touch and kept (patched) here. An attempt holds a few pages, not a copy of
    the file."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self.pages: dict[int, bytearray] = {}

    def __len__(self) -> int:
        return self.size

    def _page(self, n: int) -> bytearray:
        page = self.pages.get(n)
        if page is None:
            page = self.pages[n] = bytearray(os.pread(self.fd, PAGE, n * PAGE))
        return page

    def read(self, at: int, size: int) -> bytes:
        if at < 0 or at + size > self.size:
            raise Unplaceable("outside the executable")
        out = bytearray()
        while len(out) < size:
            n, off = divmod(at + len(out), PAGE)
            out += self._page(n)[off: off + size - len(out)]
        return bytes(out)

    def write(self, at: int, data: bytes) -> None:
        if at < 0 or at + len(data) > self.size:
            raise Unplaceable("outside the executable")
        done = 0
        while done < len(data):
            n, off = divmod(at + done, PAGE)
            page = self._page(n)
            chunk = data[done: done + PAGE - off]
            page[off: off + len(chunk)] = chunk
            done += len(chunk)


# --------------------------------------------------------------------------- relocations

def _page(x: int) -> int:
    return x & ~0xFFF


def _check(value: int, lo: int, hi: int) -> int:
    if not lo <= value < hi:
        raise Unplaceable("relocation out of range")
    return value


def _aligned(value: int, bits: int) -> int:
    if value & ((1 << bits) - 1):
        raise Unplaceable("unaligned relocation")
    return value >> bits


def _imm(word: int, value: int, shift: int, bits: int) -> int:
    mask = ((1 << bits) - 1) << shift
    return (word & ~mask) | ((value << shift) & mask)


def _adr(word: int, value: int) -> int:
    """ADR/ADRP's 21-bit immediate: immlo at 29-30, immhi at 5-23."""
    return _imm(_imm(word, value & 3, 29, 2), value >> 2, 5, 19)


def _movw(group: int, checked: bool):  # type: ignore[no-untyped-def]
    def apply(word: int, s: int, p: int) -> int:
        if checked:
            _check(s, 0, 1 << (16 * (group + 1)))
        return _imm(word, (s >> (16 * group)) & 0xFFFF, 5, 16)
    return apply


def _lo12(bits: int):  # type: ignore[no-untyped-def]
    return lambda word, s, p: _imm(word, _aligned(s & 0xFFF, bits), 10, 12)


def _branch(offset_bits: int, shift: int):  # type: ignore[no-untyped-def]
    span = 1 << (offset_bits + 1)
    return lambda word, s, p: _imm(word, _aligned(_check(s - p, -span, span), 2), shift,
                                   offset_bits)


# type -> (bytes written, apply(word, S + A, P) -> new word); data types get the whole field.
_DATA = {
    257: (8, lambda w, s, p: s & (1 << 64) - 1),  # ABS64
    258: (4, lambda w, s, p: _check(s, -(1 << 31), 1 << 31) & 0xFFFFFFFF),  # ABS32
    259: (2, lambda w, s, p: _check(s, -(1 << 15), 1 << 15) & 0xFFFF),  # ABS16
    260: (8, lambda w, s, p: (s - p) & (1 << 64) - 1),  # PREL64
    261: (4, lambda w, s, p: _check(s - p, -(1 << 31), 1 << 31) & 0xFFFFFFFF),  # PREL32
    262: (2, lambda w, s, p: _check(s - p, -(1 << 15), 1 << 15) & 0xFFFF),  # PREL16
}
_CODE = {
    263: _movw(0, True), 264: _movw(0, False), 265: _movw(1, True), 266: _movw(1, False),
    267: _movw(2, True), 268: _movw(2, False), 269: _movw(3, False),
    273: lambda w, s, p: _imm(w, _aligned(_check(s - p, -(1 << 20), 1 << 20), 2), 5, 19),
    274: lambda w, s, p: _adr(w, _check(s - p, -(1 << 20), 1 << 20)),  # ADR_PREL_LO21
    275: lambda w, s, p: _adr(w, _check(_page(s) - _page(p), -(1 << 32), 1 << 32) >> 12),
    276: lambda w, s, p: _adr(w, (_page(s) - _page(p)) >> 12),  # ADR_PREL_PG_HI21_NC
    277: _lo12(0), 278: _lo12(0), 284: _lo12(1), 285: _lo12(2), 286: _lo12(3), 299: _lo12(4),
    279: _branch(14, 5),  # TSTBR14
    280: _branch(19, 5),  # CONDBR19
    282: _branch(26, 0),  # JUMP26 (out of range: ld would add a veneer)
    283: _branch(26, 0),  # CALL26
}
#: The relocation types placed here; R_AARCH64_NONE (0, 256) is skipped as ld does.
TYPES = frozenset({0, 256, *_DATA, *_CODE})


def apply(image: Pages, at: int, end: int, rtype: int, s: int, p: int) -> None:
    """Relocation `rtype` at file offset `at` of `image` (its section ends at `end`),
    S + A = `s`, P = `p`."""
    if rtype in (0, 256):
        return
    size, fn = _DATA[rtype] if rtype in _DATA else (4, _CODE.get(rtype))
    if fn is None:
        raise Unplaceable(f"relocation type {rtype}")
    if at < 0 or at + size > min(end, len(image)):
        raise Unplaceable("relocation outside its section")
    word = int.from_bytes(image.read(at, size), "little")
    image.write(at, fn(word, s, p).to_bytes(size, "little"))


# --------------------------------------------------------------------------- the template


@dataclass(frozen=True)
class Template:
    """What placing into a variant's slotted harness needs of it, read once per process; the
    executable's bytes stay in its file (`path`, `identity`: placed only while unchanged)."""

    path: Path
    identity: tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
    slots: tuple[tuple[int, int], ...]  # (address, file offset) of each slot
    kernel_value_at: int  # file offset of the `kernel` symbol's st_value
    calls: tuple[tuple[int, int, int, int], ...]  # (type, address, file offset, addend)
    functions: Mapping[str, int]  # the allowed math functions' addresses
    aligns: tuple[int, int, int]  # the output sections' alignments, by slot
    # The code ld puts after the candidate's (the executable segment's rest after the slot) and
    # its alignment: copied after the candidate's code, so that running off its end meets what
    # it would meet in ld's link.
    tail: bytes = b""
    tail_align: int = 1
    # the tail's references to move with it: (type to encode, offset in the tail, target,
    # whether the target is in the tail: then relative to its start); None: it cannot be moved
    tail_relocs: tuple[tuple[int, int, int, bool], ...] | None = ()

    @classmethod
    def read(cls, path: Path, functions: Sequence[str]) -> Template:
        with open(path, "rb") as f:
            data = f.read()
            identity = _identity(os.fstat(f.fileno()))
        image = guard.Image(data)

        def offset(address: int) -> int:
            for vaddr, off, filesz in image.segments:
                if vaddr <= address < vaddr + filesz:
                    return off + address - vaddr
            raise ValueError(f"{address:#x} is not in a loaded segment")

        slots = tuple((a, offset(a)) for a in map(image.symbol, SLOT_SYMBOLS))
        headers = guard.section_headers(data)
        kernel_value_at, calls, others = _relocations(data, image, headers)
        placed = [(t, p, offset(p), a) for t, p, _s, a in _entries(calls)]
        starts, ends = headers["addr"], headers["addr"] + headers["size"]
        aligns = tuple(int(headers["addralign"][(starts <= a) & (a < ends)].max(initial=0))
                       for a, _ in slots)
        end = slots[0][0] + TEXT_SLOT
        code = headers[(headers["flags"] & oc.SHF_EXECINSTR != 0) & (starts >= end)]
        tail, tail_align, moved = b"", 1, []
        if len(code):
            first = code[np.lexsort((code["addralign"], code["addr"]))[0]]
            seg = next(s for s in image.segments if s[0] <= end < s[0] + s[2])
            lo, hi = int(first["addr"]), seg[0] + seg[2]
            tail, tail_align = data[offset(lo): seg[1] + seg[2]], max(int(first["addralign"]), 1)
            inside = others[(others["offset"] >= lo) & (others["offset"] < hi)]
            try:
                for rtype, p, sym, addend in _entries(inside):
                    at = offset(p)
                    moved += _moved(rtype, p, sym + addend, lo, hi, data[at: at + 8])
            except ValueError:
                moved = None  # a tail this cannot move: every attempt of the variant goes to ld
        return cls(path, identity, slots, kernel_value_at, tuple(placed),
                   {name: image.symbol(name) for name in functions},
                   (aligns[0], aligns[1], aligns[2]), tail, tail_align,
                   tuple(moved) if moved is not None else None)


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def current(template: Template) -> bool:
    """Whether the template's file is still the one it was read from."""
    try:
        return _identity(os.stat(template.path)) == template.identity
    except OSError:
        return False


def _sext(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


# PC-relative types by how the linked field reads back: (type to encode it with, decoder of
# the target from (word, P)).
_PCREL: dict[int, tuple[int, object]] = {}
for _t in (275, 276, 311):  # ADRP, of a symbol or its GOT entry
    _PCREL[_t] = (276, lambda w, p: _page(p) + (_sext(((w >> 5) & 0x7FFFF) << 2 | (w >> 29) & 3,
                                                      21) << 12))
_PCREL[274] = (274, lambda w, p: p + _sext(((w >> 5) & 0x7FFFF) << 2 | (w >> 29) & 3, 21))
for _t in (273, 280, 309):  # ldr literal, b.cond/cbz, ldr of a GOT entry
    _PCREL[_t] = (273, lambda w, p: p + 4 * _sext((w >> 5) & 0x7FFFF, 19))
_PCREL[279] = (279, lambda w, p: p + 4 * _sext((w >> 5) & 0x3FFF, 14))
for _t in (282, 283):
    _PCREL[_t] = (283, lambda w, p: p + 4 * _sext(w & 0x3FFFFFF, 26))
_PCREL[261] = (261, lambda w, p: p + _sext(w & 0xFFFFFFFF, 32))
_PCREL[260] = (260, lambda w, p: p + _sext(w, 64))


def _moved(rtype: int, p: int, target: int, lo: int, hi: int, field: bytes
           ) -> list[tuple[int, int, int, bool]]:
    """How the tail's relocation at `p` (S + A = `target`) is applied again where the tail
    lands: a PC-relative field keeps the target ld encoded (moved with the tail when inside);
    an absolute one changes only when it points into the tail."""
    if rtype in (0, 256):
        return []
    if rtype in _PCREL:
        kind, read = _PCREL[rtype]
        size = 8 if rtype == 260 else 4
        encoded = read(int.from_bytes(field[:size], "little"), p)  # type: ignore[operator]
        inside = lo <= encoded < hi
        return [(kind, p - lo, encoded - lo if inside else encoded, inside)]
    if not lo <= target < hi:
        return []
    if rtype not in _DATA and rtype not in _CODE:
        raise ValueError(f"relocation type {rtype} in the harness's tail")
    return [(rtype, p - lo, target - lo, True)]


_RELA = np.dtype([("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")])  # Elf64_Rela
# A relocation as `_relocations` gives it: its type, place, S (its symbol's value) and addend.
_ENTRY = np.dtype([("type", "<u8"), ("offset", "<u8"), ("s", "<u8"), ("addend", "<i8")])


def _entries(table: np.ndarray) -> list[tuple[int, int, int, int]]:
    """An `_ENTRY` array as Python ints: S + A is then exact (numpy would mix u8 and i8 in
    floats)."""
    return list(zip(table["type"].tolist(), table["offset"].tolist(), table["s"].tolist(),
                    table["addend"].tolist(), strict=True))


def _relocations(data: bytes, image: guard.Image, headers: np.ndarray
                 ) -> tuple[int, np.ndarray, np.ndarray]:
    """What `ld -q` kept in the executable: the file offset of the `kernel` symbol's st_value,
    and the relocations (`_ENTRY`) against `kernel` and all the others; read as arrays, since
    a harness keeps some 15,000 of them."""
    syms = image.symbols
    kernels = np.flatnonzero(image.named("kernel") & (syms["shndx"] != 0) &
                             (syms["info"] >> 4 == oc.STB_GLOBAL))
    if not len(kernels):
        raise ValueError("the slotted harness defines no kernel")
    index = int(kernels[-1])
    tables = [np.frombuffer(data, _RELA, int(h["size"]) // _RELA.itemsize, int(h["offset"]))
              for h in headers if h["type"] == oc.SHT_RELA and h["link"] == image.symtab]
    rela = np.concatenate(tables) if tables else np.zeros(0, _RELA)
    sym = rela["info"] >> np.uint64(32)
    if len(sym) and int(sym.max()) >= len(syms):
        raise IndexError("a relocation's symbol is outside the symbol table")
    entries = np.empty(len(rela), _ENTRY)
    entries["type"] = rela["info"] & np.uint64(0xFFFFFFFF)
    entries["offset"] = rela["offset"]
    entries["s"] = syms["value"][sym.astype(np.intp)]
    entries["addend"] = rela["addend"]
    against = sym == index
    if not against.any():
        raise ValueError("the slotted harness keeps no reference to kernel")
    symtab_at = int(headers["offset"][image.symtab])
    return symtab_at + index * guard.SYM.itemsize + 8, entries[against], entries[~against]


# --------------------------------------------------------------------------- one attempt


@dataclass(frozen=True)
class Placed:
    source: Path  # the template's executable
    pages: Mapping[int, bytes]  # page number -> the page as placed (the others: the source's)
    code: tuple[guard.Range, ...]  # the candidate's non-empty code sections, sorted
    entry: int  # kernel's address
    data: tuple[guard.Range, ...] = ()  # its other sections (data it may write), sorted

    def write(self, dest: Path) -> None:
        """The executable at `dest`: the source copied by the kernel, the placed pages over it."""
        with open(self.source, "rb") as src, open(dest, "wb") as out:
            size = os.fstat(src.fileno()).st_size
            try:
                done = 0
                while done < size:
                    step = os.copy_file_range(src.fileno(), out.fileno(), size - done)
                    if step <= 0:
                        raise OSError("copy_file_range copied nothing")
                    done += step
            except OSError:  # a file system or kernel without it: copied through user space
                src.seek(0)
                out.seek(0)
                out.truncate()
                shutil.copyfileobj(src, out)
            for n, page in self.pages.items():
                os.pwrite(out.fileno(), page, n * PAGE)


def place(obj: bytes, template: Template) -> Placed:
    """The candidate `obj` (a checked object) placed into `template`; Unplaceable when the fast
    path does not take it (ld does)."""
    try:
        elf = oc.parse_elf(obj)
    except oc.ElfError as exc:
        raise Unplaceable(str(exc)) from exc
    fd = os.open(template.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        image = Pages(fd, template.identity[2])
        return _place(elf, template, image)
    finally:
        os.close(fd)


def _place(elf: oc.ElfObject, template: Template, image: Pages) -> Placed:
    address = _layout(elf, template, image)
    symbols = [_symbol_value(sym, address, template) for sym in elf.symbols]
    for target, relocs in elf.relocations.items():
        sec = elf.sections[target]
        if target not in address:
            if sec.alloc:
                raise Unplaceable(f"relocations for unplaced section {sec.name}")
            continue  # .debug_*: not part of the run
        base, file_at = address[target]
        for rel in relocs:
            s = symbols[rel.symbol]
            if s is None:
                raise Unplaceable("relocation against an unresolved symbol")
            if sec.type == oc.SHT_NOBITS:
                raise Unplaceable("relocation in a section without contents")
            apply(image, file_at + rel.offset, file_at + sec.size, rel.type, s + rel.addend,
                  base + rel.offset)
    kernels = [s for s in elf.symbols if s.name == oc.KERNEL_SYMBOL and
               s.bind != oc.STB_LOCAL and s.shndx != oc.SHN_UNDEF]
    entry = symbols[kernels[0].index] if len(kernels) == 1 else None
    if entry is None:
        raise Unplaceable("no single placed kernel")
    for rtype, p, at, addend in template.calls:
        apply(image, at, len(image), rtype, entry + addend, p)
    image.write(template.kernel_value_at, struct.pack("<Q", entry))
    code = sorted((address[s.index][0], address[s.index][0] + s.size)
                  for s in oc.code_sections(elf))
    placed = sorted((at, at + elf.sections[i].size) for i, (at, _) in address.items()
                    if elf.sections[i].size)
    data = [r for r in placed if r not in code]
    return Placed(template.path, {n: bytes(p) for n, p in image.pages.items()}, tuple(code),
                  entry, tuple(data))


def _layout(elf: oc.ElfObject, template: Template, image: Pages
            ) -> dict[int, tuple[int, int]]:
    """Section index -> (address, file offset), the contents copied into the slots."""
    cursor = [a for a, _ in template.slots]
    out: dict[int, tuple[int, int]] = {}
    for sec in elf.sections[1:]:
        kind = oc.section_kind(sec.name)
        if not sec.alloc:
            continue
        if kind not in _SLOT_OF:
            raise Unplaceable(f"section {sec.name}")
        if kind == "text" and (sec.name.startswith(_EARLY_TEXT) or
                               sec.name.endswith("_unlikely") or sec.flags & SHF_MERGE):
            raise Unplaceable(f"section {sec.name} is not placed after the harness's")
        slot = _SLOT_OF[kind]
        start, file_start = template.slots[slot]
        align = max(sec.addralign, 1)
        if align & (align - 1) or align > template.aligns[slot]:
            raise Unplaceable("alignment beyond the output section's")
        at = -(-cursor[slot] // align) * align
        if at + sec.size > start + _SLOT_SIZE[slot]:
            raise Unplaceable("the slots are full")
        cursor[slot] = at + sec.size
        file_at = file_start + at - start
        out[sec.index] = (at, file_at)
        if sec.type != oc.SHT_NOBITS:
            image.write(file_at, elf.contents(sec))
    start, file_start = template.slots[0]
    at = -(-cursor[0] // template.tail_align) * template.tail_align
    room = max(0, start + TEXT_SLOT - at)
    tail_at = file_start + at - start
    image.write(tail_at, template.tail[:room])
    if template.tail_relocs is None:
        raise Unplaceable("the code after the candidate's cannot be moved")
    for rtype, off, target, inside in template.tail_relocs:
        if off + 8 <= room:  # relocated where it now runs
            apply(image, tail_at + off, tail_at + room, rtype, at + target if inside else target,
                  at + off)
    return out


def _symbol_value(sym: oc.Symbol, address: Mapping[int, tuple[int, int]],
                  template: Template) -> int | None:
    """S of a relocation against `sym`; None when the fast path cannot resolve it."""
    if sym.index == 0:
        return 0
    if sym.shndx == oc.SHN_ABS:
        return sym.value
    if sym.shndx == oc.SHN_UNDEF:
        return template.functions.get(sym.name)
    if sym.shndx in address:
        return address[sym.shndx][0] + sym.value
    return None
