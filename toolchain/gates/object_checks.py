"""The object gate (§5.2): judge the assembled ELF object by its bytes, never by the source text.

`.inst`/`.word` encodings, macros and `.arch` switches all end up here as plain words, so every
rule is checked on the object GNU as wrote. Policy:

* Symbols: exactly one global (or weak) definition, `kernel`, of type FUNC or NOTYPE, in a code
  section; no other global/weak/unique definitions (they could replace harness or libc symbols at
  link time); no common, TLS or GNU_IFUNC symbols (an IFUNC resolver would run before the
  harness's `main`). Undefined symbols only from `allowed_undefined` (the math functions the
  variant's C calls).
* Sections: `.text[.*]` (must be "ax", not writable), `.rodata[.*]` (read-only),
  `.data[.*]` and `.bss[.*]` (not executable), `.eh_frame` (from `.cfi_*`, read-only); as
  non-allocated bookkeeping `.symtab .strtab .shstrtab .comment .note.GNU-stack .ARM.attributes
  .debug_*` and `.rela.<one of the above>`. Everything else is refused, in particular
  `.init_array .fini_array .preinit_array .ctors .dtors .init .fini .tdata .tbss`, any other
  `.note.*`, section groups, TLS sections, executable sections not named `.text*`, writable code,
  and an executable `.note.GNU-stack` (it asks for an executable stack). Alignment is capped at
  64 KiB.
* Sizes: object file <= settings.max_object_bytes, code (`.text*`) <= 64 KiB, all allocated
  sections together (including `.bss`) <= 1 MiB. Relocations: static AArch64 types only (no TLS,
  no dynamic types).
* Instructions, on every 32-bit word of every code section: no exception-generating instruction
  (svc, hvc, smc, brk, hlt, dcps1-3), no exception return (eret, eretaa, eretab, drps), no
  smstart/smstop (SME's mode switch decodes as a generic msr, so the objdump check would miss
  it), no read of a clock, cycle counter or random-number register (cntvct/cntpct[ss], pmccntr,
  rndr, rndrrs: verdicts must be reproducible), no barrier (dmb, dsb, isb, sb, ssbb, pssbb), no
  cache maintenance or address translation (dc, ic, at: every `sys` with CRn = 7, `dc zva`
  included) and no wait for an event or interrupt (wfe, wfi, wfet, wfit). A single-threaded
  kernel on its own buffers has no use for any of them, and neither cost model prices them
  (llvm-mca charges a barrier one cycle and no resource; `dc zva` zeroes a 64-byte block for the
  price of one store), so a policy could only use them to hide work or to stall the hardware;
  refusing them is simpler and safer than pricing them. Prefetches (`prfm`) stay allowed: they
  are hints that occupy a load pipe, and llvm-mca prices them as loads (fidelity table). Other
  system-register accesses are left alone:
  privileged ones trap in the emulator and end as `crash`; FPCR/FPSR/NZCV access is legitimate.
  UDF is left alone too (it crashes). Then llvm-objdump decodes every word as a Neoverse V2
  instruction; a word it cannot decode (`<unknown>`: SME, any extension V2 lacks) is refused.
  Mapping symbols are dropped before decoding, so data placed in `.text` (literal pools,
  `.word`) is decoded as code too and refused when it is not a V2 instruction: deliberate, since
  the CPU would execute it if branched to. Keep data in `.rodata`.
* Bytes outside `.text*` are not decoded: the link must map `.rodata`/`.eh_frame` non-executable
  (tools.REQUIRED_LINK_FLAGS, which every link uses), and data sections are never executable.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import decoder
from ..errors import ErrorKind, InfraError
from ..settings import Settings
from ..verdict import GateResult, ObjectDetails

GATE = "object"
KERNEL_SYMBOL = "kernel"
MAX_CODE_BYTES = 64 * 1024
MAX_ALLOC_BYTES = 1024 * 1024
MAX_ALIGN = 64 * 1024
MAX_REPORTED = 20

# ELF constants (ELF64, AArch64).
EM_AARCH64 = 183
ET_REL = 1
SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_NOBITS = 8
SHT_AARCH64_ATTRIBUTES = 0x70000003
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHF_GROUP, SHF_TLS = 0x200, 0x400
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STT_COMMON, STT_TLS, STT_GNU_IFUNC = 5, 6, 10

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")


# --------------------------------------------------------------------------- ELF64 reader


class ElfError(ValueError):
    """The bytes are not a well-formed ELF64 little-endian AArch64 relocatable object."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int

    @property
    def alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC)


@dataclass(frozen=True)
class Symbol:
    index: int
    name: str
    bind: int
    type: int
    other: int
    shndx: int
    value: int
    size: int


@dataclass(frozen=True)
class Relocation:
    offset: int
    type: int
    symbol: int
    addend: int


@dataclass
class ElfObject:
    data: bytes
    sections: list[Section]
    symbols: list[Symbol] = field(default_factory=list)
    # Relocations by the index of the section they apply to.
    relocations: dict[int, list[Relocation]] = field(default_factory=dict)

    def contents(self, section: Section) -> bytes:
        if section.type == SHT_NOBITS:
            return b""
        return self.data[section.offset: section.offset + section.size]


def parse_elf(data: bytes) -> ElfObject:
    """Read sections, the symbol table and RELA relocations, bounds-checking everything."""
    if len(data) < _EHDR.size:
        raise ElfError("file is shorter than an ELF header")
    ident, e_type, machine, _ver, _entry, _phoff, shoff, _flags, _ehsize, _phentsize, _phnum, \
        shentsize, shnum, shstrndx = _EHDR.unpack_from(data)
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        raise ElfError("not an ELF64 little-endian file")
    if e_type != ET_REL or machine != EM_AARCH64:
        raise ElfError("not an AArch64 relocatable object")
    if shentsize != _SHDR.size or shnum == 0 or shstrndx >= shnum:
        raise ElfError("bad section header table")
    if shoff + shnum * _SHDR.size > len(data):
        raise ElfError("section header table is truncated")
    raw = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
    for i, (_, stype, _, _, offset, size, *_rest) in enumerate(raw):
        if stype != SHT_NOBITS and offset + size > len(data):
            raise ElfError(f"section {i} extends past the end of the file")
    names = _section_bytes(data, raw[shstrndx])
    sections = [
        Section(i, _string(names, r[0]), r[1], r[2], r[4], r[5], r[6], r[7], r[8], r[9])
        for i, r in enumerate(raw)
    ]
    elf = ElfObject(data, sections)
    elf.symbols = _read_symbols(elf)
    elf.relocations = _read_relocations(elf)
    return elf


def _section_bytes(data: bytes, header: tuple[int, ...]) -> bytes:
    return data[header[4]: header[4] + header[5]]


def _string(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    if offset >= len(table) or end < 0:
        raise ElfError("string table offset out of range")
    return table[offset:end].decode("utf-8", "replace")


def _symtab(elf: ElfObject) -> Section | None:
    tables = [s for s in elf.sections if s.type == SHT_SYMTAB]
    if len(tables) > 1:
        raise ElfError("more than one symbol table")
    return tables[0] if tables else None


def _read_symbols(elf: ElfObject) -> list[Symbol]:
    table = _symtab(elf)
    if table is None:
        return []
    if table.entsize != _SYM.size or table.size % _SYM.size:
        raise ElfError("bad symbol table entry size")
    if table.link >= len(elf.sections) or elf.sections[table.link].type != SHT_STRTAB:
        raise ElfError("symbol table has no string table")
    strings = elf.contents(elf.sections[table.link])
    raw = elf.contents(table)
    symbols = []
    for i in range(table.size // _SYM.size):
        name, info, other, shndx, value, size = _SYM.unpack_from(raw, i * _SYM.size)
        if len(elf.sections) <= shndx and shndx not in (SHN_ABS, SHN_COMMON):
            raise ElfError(f"symbol {i} has an invalid section index")
        symbols.append(Symbol(i, _string(strings, name), info >> 4, info & 0xF, other, shndx,
                              value, size))
    return symbols


def _read_relocations(elf: ElfObject) -> dict[int, list[Relocation]]:
    out: dict[int, list[Relocation]] = {}
    for sec in elf.sections:
        if sec.type != SHT_RELA:
            continue
        if sec.entsize != _RELA.size or sec.size % _RELA.size:
            raise ElfError(f"bad relocation entry size in {sec.name}")
        if not 0 < sec.info < len(elf.sections):
            raise ElfError(f"{sec.name} applies to no section")
        raw = elf.contents(sec)
        relocs = []
        for i in range(sec.size // _RELA.size):
            offset, info, addend = _RELA.unpack_from(raw, i * _RELA.size)
            if (info >> 32) >= max(len(elf.symbols), 1):
                raise ElfError(f"relocation {i} in {sec.name} names a missing symbol")
            relocs.append(Relocation(offset, info & 0xFFFFFFFF, info >> 32, addend))
        out.setdefault(sec.info, []).extend(relocs)
    return out


# --------------------------------------------------------------------------- sections


def section_kind(name: str) -> str | None:
    """text, rodata, data, bss, eh_frame, meta (non-allocated bookkeeping), rela, or None."""
    for prefix in (".text", ".rodata", ".data", ".bss"):
        if name == prefix or name.startswith(prefix + "."):
            return prefix[1:]
    if name == ".eh_frame":
        return "eh_frame"
    if name.startswith(".rela."):
        return "rela"
    if name in _META_TYPES or name.startswith(".debug_"):
        return "meta"
    return None


_META_TYPES: dict[str, frozenset[int]] = {
    ".symtab": frozenset({SHT_SYMTAB}),
    ".strtab": frozenset({SHT_STRTAB}),
    ".shstrtab": frozenset({SHT_STRTAB}),
    ".comment": frozenset({SHT_PROGBITS}),
    ".note.GNU-stack": frozenset({SHT_PROGBITS}),
    ".ARM.attributes": frozenset({SHT_AARCH64_ATTRIBUTES, SHT_PROGBITS}),
}
# kind -> (allowed types, flags required, flags refused)
_ALLOC_RULES: dict[str, tuple[frozenset[int], int, int]] = {
    "text": (frozenset({SHT_PROGBITS}), SHF_ALLOC | SHF_EXECINSTR, SHF_WRITE),
    "rodata": (frozenset({SHT_PROGBITS}), SHF_ALLOC, SHF_WRITE | SHF_EXECINSTR),
    "data": (frozenset({SHT_PROGBITS, SHT_NOBITS}), SHF_ALLOC, SHF_EXECINSTR),
    "bss": (frozenset({SHT_PROGBITS, SHT_NOBITS}), SHF_ALLOC, SHF_EXECINSTR),
    "eh_frame": (frozenset({SHT_PROGBITS}), SHF_ALLOC, SHF_WRITE | SHF_EXECINSTR),
}
_RELA_TARGETS = frozenset({"text", "rodata", "data", "eh_frame"})  # and .debug_*


def section_problems(elf: ElfObject) -> list[str]:
    problems: list[str] = []
    for sec in elf.sections[1:]:
        problems += _one_section(elf, sec)
    return problems


def _one_section(elf: ElfObject, sec: Section) -> list[str]:
    name = sec.name or f"#{sec.index}"
    if sec.flags & SHF_TLS:
        return [f"section {name} holds thread-local storage"]
    if sec.flags & SHF_GROUP:
        return [f"section {name} belongs to a section group (COMDAT)"]
    if sec.flags & SHF_EXECINSTR and sec.flags & SHF_WRITE:
        return [f"section {name} is both writable and executable"]
    kind = section_kind(sec.name)
    if kind is None:
        if sec.flags & SHF_EXECINSTR:
            return [f"executable section {name} is not allowed (code goes in .text)"]
        return [f"section {name} is not allowed (only .text, .rodata, .data, .bss)"]
    if kind in _ALLOC_RULES:
        return _alloc_section(sec, kind)
    if sec.alloc or sec.flags & (SHF_WRITE | SHF_EXECINSTR):
        return [f"section {name} must not be allocated, writable or executable"]
    if kind == "rela":
        return _rela_section(elf, sec)
    allowed = _META_TYPES.get(sec.name, frozenset({SHT_PROGBITS}))
    return [] if sec.type in allowed else [f"section {name} has an unexpected type {sec.type}"]


def _alloc_section(sec: Section, kind: str) -> list[str]:
    types, required, refused = _ALLOC_RULES[kind]
    if sec.type not in types:
        return [f"section {sec.name} has type {sec.type}, not allowed for {kind} sections"]
    if sec.flags & required != required:
        what = "allocated and executable (\"ax\")" if kind == "text" else "allocated"
        return [f"section {sec.name} must be {what}"]
    if sec.flags & refused:
        bad = "writable" if sec.flags & refused & SHF_WRITE else "executable"
        return [f"section {sec.name} must not be {bad}"]
    if sec.addralign > MAX_ALIGN:
        return [f"section {sec.name} asks for {sec.addralign}-byte alignment (limit {MAX_ALIGN})"]
    return []


def _rela_section(elf: ElfObject, sec: Section) -> list[str]:
    if sec.type != SHT_RELA:
        return [f"section {sec.name} has type {sec.type}, not RELA"]
    target = elf.sections[sec.info]
    kind = section_kind(target.name)
    debug = kind == "meta" and target.name.startswith(".debug_")
    if not (kind in _RELA_TARGETS or debug) or target.type == SHT_NOBITS:
        return [f"relocations for section {target.name} are not allowed"]
    table = _symtab(elf)
    if table is None or sec.link != table.index:
        return [f"section {sec.name} does not use the symbol table"]
    return []


# --------------------------------------------------------------------------- symbols


def symbol_problems(elf: ElfObject, allowed_undefined: Iterable[str]) -> list[str]:
    allowed = frozenset(allowed_undefined)
    problems: list[str] = []
    undefined: list[str] = []
    kernels = []
    for sym in elf.symbols[1:]:
        problem = _symbol_kind_problem(sym)
        if problem:
            problems.append(problem)
        elif sym.shndx == SHN_UNDEF:
            if sym.name and sym.name not in allowed:
                undefined.append(sym.name)
        elif sym.bind != STB_LOCAL:
            if sym.name == KERNEL_SYMBOL:
                kernels.append(sym)
            else:
                problems.append(f"global symbol {sym.name!r} is not allowed (only `kernel`)")
    if undefined:
        names = ", ".join(sorted(set(undefined)))
        problems.append(f"undefined symbols not allowed for this variant: {names}")
    return problems + _kernel_problems(elf, kernels)


def _symbol_kind_problem(sym: Symbol) -> str | None:
    label = repr(sym.name) if sym.name else f"#{sym.index}"
    if sym.type == STT_TLS:
        return f"symbol {label} is thread-local"
    if sym.type == STT_GNU_IFUNC:
        return f"symbol {label} is an indirect function (IFUNC)"
    if sym.type == STT_COMMON or sym.shndx == SHN_COMMON:
        return f"symbol {label} is a common symbol"
    if sym.bind not in (STB_LOCAL, STB_GLOBAL, STB_WEAK):
        return f"symbol {label} has binding {sym.bind} (only local, global, weak)"
    return None


def _kernel_problems(elf: ElfObject, kernels: list[Symbol]) -> list[str]:
    if not kernels:
        local = any(s.name == KERNEL_SYMBOL and s.shndx != SHN_UNDEF for s in elf.symbols)
        hint = " (it is defined but local: add `.globl kernel`)" if local else ""
        return [f"no global symbol `kernel` is defined{hint}"]
    kernel = kernels[0]
    if kernel.type not in (STT_FUNC, STT_NOTYPE):
        return ["`kernel` must be a function (type FUNC or NOTYPE)"]
    if kernel.shndx >= len(elf.sections):
        return ["`kernel` must be defined in a .text section, not as an absolute value"]
    sec = elf.sections[kernel.shndx]
    if section_kind(sec.name) != "text" or not sec.flags & SHF_EXECINSTR:
        return [f"`kernel` must be defined in a .text section, not {sec.name}"]
    if kernel.value >= sec.size:
        return ["`kernel` points past the end of its section"]
    return []


# --------------------------------------------------------------------------- relocations


def relocation_problems(elf: ElfObject) -> list[str]:
    """Only static AArch64 relocations (R_AARCH64_NONE, 257..511): no TLS, no dynamic types."""
    problems = []
    for target, relocs in elf.relocations.items():
        for rel in relocs:
            if rel.type == 0 or 257 <= rel.type < 512:
                continue
            what = "thread-local storage" if 512 <= rel.type < 1024 else "unsupported"
            name = elf.sections[target].name
            problems.append(f"{what} relocation type {rel.type} in {name} at {rel.offset:#x}")
            break
    return problems


# --------------------------------------------------------------------------- sizes


def size_problems(elf: ElfObject) -> list[str]:
    code = sum(s.size for s in elf.sections if section_kind(s.name) == "text")
    alloc = sum(s.size for s in elf.sections if s.alloc)
    problems = []
    if code > MAX_CODE_BYTES:
        problems.append(f"code is {code} bytes; the limit is {MAX_CODE_BYTES}")
    if alloc > MAX_ALLOC_BYTES:
        problems.append(f"allocated sections total {alloc} bytes; the limit is {MAX_ALLOC_BYTES}")
    return problems


# --------------------------------------------------------------------------- instructions

# (mask, value, what): refused wherever they occur in code.
FORBIDDEN_ENCODINGS: tuple[tuple[int, int, str], ...] = (
    (0xFFE0001F, 0xD4000001, "svc (system call)"),
    (0xFFE0001F, 0xD4000002, "hvc (hypervisor call)"),
    (0xFFE0001F, 0xD4000003, "smc (secure monitor call)"),
    (0xFFE0001F, 0xD4200000, "brk (breakpoint trap)"),
    (0xFFE0001F, 0xD4400000, "hlt (halt)"),
    (0xFFE0001C, 0xD4A00000, "dcps (debug state change)"),
    (0xFFFFFFFF, 0xD69F03E0, "eret (exception return)"),
    (0xFFFFFBFF, 0xD69F0BFF, "eretaa/eretab (exception return)"),
    (0xFFFFFFFF, 0xD6BF03E0, "drps (debug exception return)"),
    # msr svcr*, #imm: llvm-objdump decodes it as a generic msr, so it is named here.
    (0xFFFFF0FF, 0xD503407F, "smstart/smstop (SME streaming mode, absent on Neoverse V2)"),
    (0xFFFFFF00, 0xD53BE000, "mrs of a system counter (cntpct/cntvct[ss]): not reproducible"),
    (0xFFFFFFE0, 0xD53B9D00, "mrs of the cycle counter (pmccntr_el0): not reproducible"),
    (0xFFFFFFC0, 0xD53B2400, "mrs of a random-number register (rndr/rndrrs): not reproducible"),
    # barriers: CRm selects the domain (dsb #0 and #4 are ssbb and pssbb)
    (0xFFFFF0FF, 0xD50330BF, "dmb (memory barrier): no use in a kernel, unpriced"),
    (0xFFFFF0FF, 0xD503309F, "dsb/ssbb/pssbb (barrier): no use in a kernel, unpriced"),
    (0xFFFFF0FF, 0xD50330DF, "isb (instruction barrier): no use in a kernel, unpriced"),
    (0xFFFFFFFF, 0xD50330FF, "sb (speculation barrier): no use in a kernel, unpriced"),
    # sys with CRn = 7: dc (zva, civac, ...), ic, at
    (0xFFF8F000, 0xD5087000, "cache maintenance or address translation (dc/ic/at): unpriced"),
    (0xFFFFFFDF, 0xD503205F, "wfe/wfi (wait for event or interrupt)"),
    (0xFFFFFFC0, 0xD5031000, "wfet/wfit (wait with timeout)"),
)
# op2 of cntpct_el0, cntvct_el0, cntpctss_el0, cntvctss_el0; cntfrq_el0 (0) is a constant.
_COUNTER_OP2 = frozenset({1, 2, 5, 6})


def forbidden_instruction(word: int) -> str | None:
    for mask, value, what in FORBIDDEN_ENCODINGS:
        if word & mask == value:
            if value == 0xD53BE000 and (word >> 5) & 7 not in _COUNTER_OP2:
                continue
            return what
    return None


def code_sections(elf: ElfObject) -> list[Section]:
    return [s for s in elf.sections if section_kind(s.name) == "text" and s.size]


def instruction_problems(elf: ElfObject) -> list[str]:
    """Forbidden encodings at every word a CPU could execute in a code section."""
    problems = []
    for sec in code_sections(elf):
        code = elf.contents(sec)
        step = 4 if sec.addralign >= 4 else 1  # under-aligned code may land at any offset
        for offset in range(0, len(code) - 3, step):
            if code[offset + 3] not in (0xD4, 0xD5, 0xD6):
                continue
            word = int.from_bytes(code[offset: offset + 4], "little")
            what = forbidden_instruction(word)
            if what:
                problems.append(f"forbidden instruction {what} at {sec.name}+{offset:#x}")
    return problems[:MAX_REPORTED]


def code_blob(elf: ElfObject) -> tuple[bytes, list[tuple[int, Section]]]:
    """The code sections' bytes end to end (each padded to a word), and where each starts.

    gas marks `.word`/`.byte` in code with `$d` mapping symbols and llvm-objdump would print
    those as data; the CPU does not care, so every word is decoded as an instruction (the
    decoder's image has no symbols).
    """
    chunks, blob = [], bytearray()
    for sec in code_sections(elf):
        chunks.append((len(blob), sec))
        blob += elf.contents(sec)
        blob += b"\0" * (-len(blob) % 4)
    return bytes(blob), chunks


def availability_problems(elf: ElfObject, workdir: Path,
                          linked: Sequence[tuple[int, bytes]] = (),
                          words: decoder.Words | None = None
                          ) -> tuple[list[str], list[decoder.Decoded]]:
    """Words llvm-objdump cannot decode as Neoverse V2 instructions (SME and the like); the
    `linked` chunks are decoded in the same pass, for the performance gate (with `words`,
    the words decoded before are not decoded again)."""
    blob, chunks = code_blob(elf)
    own = [(0, blob)] if chunks else []
    if not own and not linked:
        return [], []
    decoded = decoder.decode([*own, *linked], workdir, words)
    problems = []
    for at in decoded[0].unknown if own else []:
        start, sec = max((c for c in chunks if c[0] <= at), key=lambda c: c[0])
        word = int.from_bytes(blob[at: at + 4], "little")
        problems.append(f"instruction not available on Neoverse V2 at {sec.name}+{at - start:#x}"
                        f" (word {word:#010x})")
    return problems[:MAX_REPORTED], decoded[len(own):]


# --------------------------------------------------------------------------- the gate


def check_object(
    obj: Path, allowed_undefined: frozenset[str], settings: Settings
) -> GateResult:
    """Judge the assembled object; object_rejected with every problem found, else a pass.
    Untimed: pipeline.run times every gate, in one place."""
    checked = check_static(Path(obj), allowed_undefined, settings)
    return checked if isinstance(checked, GateResult) else \
        finish(checked, allowed_undefined, Path(obj).parent)[0]


@dataclass(frozen=True)
class Checked:
    """An object that passed every check but the decoder's."""

    elf: ElfObject
    size: int


def check_static(obj: Path, allowed_undefined: frozenset[str],
                 settings: Settings) -> GateResult | Checked:
    """The checks that need no other process: a rejection, or the object to decode."""
    try:
        size = obj.stat().st_size
        if size > settings.max_object_bytes:
            return _reject([f"object file is {size} bytes; the limit is "
                            f"{settings.max_object_bytes}"])
        data = obj.read_bytes()
    except OSError as exc:
        raise InfraError(f"cannot read the assembled object: {exc.strerror}") from exc
    try:
        elf = parse_elf(data)
    except ElfError as exc:
        return _reject([f"object is not a valid ELF64 AArch64 relocatable: {exc}"])
    problems = (section_problems(elf) + symbol_problems(elf, allowed_undefined)
                + relocation_problems(elf) + size_problems(elf) + instruction_problems(elf))
    return _reject(problems) if problems else Checked(elf, len(data))


def finish(checked: Checked, allowed_undefined: frozenset[str], workdir: Path,
           linked: Sequence[tuple[int, bytes]] = (), words: decoder.Words | None = None
           ) -> tuple[GateResult, list[decoder.Decoded]]:
    """The decoder's check (at most one process per object, only once nothing cheaper failed;
    none when `words` holds every word), with the `linked` chunks decoded in the same pass."""
    problems, decoded = availability_problems(checked.elf, workdir, linked, words)
    if problems:
        return _reject(problems), decoded
    return GateResult(GATE, True, details=_summary(checked.elf, checked.size,
                                                   allowed_undefined)), decoded


def _reject(problems: list[str]) -> GateResult:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return GateResult.fail(GATE, ErrorKind.object_rejected, problems[0] + more,
                           ObjectDetails(problems=problems[:MAX_REPORTED]))


def _summary(elf: ElfObject, object_bytes: int, allowed: frozenset[str]) -> ObjectDetails:
    undefined = sorted({s.name for s in elf.symbols[1:] if s.shndx == SHN_UNDEF and s.name})
    return ObjectDetails(
        object_bytes=object_bytes,
        code_bytes=sum(s.size for s in code_sections(elf)),
        alloc_bytes=sum(s.size for s in elf.sections if s.alloc),
        sections=[s.name for s in elf.sections[1:]],
        calls=[n for n in undefined if n in allowed],
    )
