"""The candidate placed without ld (execution/place.py), against ld itself: real as, ld, qemu.

Every object is linked both ways, with settings.link_in_process on and off. Where the
placement takes an object, its code and read-only data must sit at the addresses ld gives them
with the same bytes (every admitted relocation type applied as ld applies it) and the tests must
write the same records; where it does not (a type or an overflow it leaves to ld, a hostile
object), ld links it as before and the verdict is ld's.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import asm, baseline, check

from toolchain import execution, kernels, sandbox
from toolchain.errors import ErrorKind
from toolchain.execution import guard, place
from toolchain.execution.records import parse
from toolchain.gates import object_checks, syntax
from toolchain.settings import Settings, get_settings

SEED = 5


@pytest.fixture
def scratch() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="armgym-place-"))
    made.chmod(0o755)  # the sandboxed tools run as an unprivileged user, in subdirectories
    yield made
    shutil.rmtree(made, ignore_errors=True)


def _mode(on: bool) -> Settings:
    return get_settings().model_copy(update={"link_in_process": on})


def linked_both(variant_id: str, text: str, root: Path) -> dict[bool, Path | str]:
    """{in process?: the scratch holding candidate.elf, or the link's message}."""
    out: dict[bool, Path | str] = {}
    for on in (False, True):
        scratch = root / str(on)
        scratch.mkdir(mode=0o777)
        scratch.chmod(0o777)
        result, obj = syntax.assemble(text, scratch, _mode(on))
        assert obj is not None, result.message
        failed = execution.link(kernels.get(variant_id), obj, scratch, _mode(on))
        out[on] = failed if failed else scratch
    return out


def placed(variant_id: str, text: str, root: Path) -> bool:
    """Whether the fast path takes the object (the layout file is its mark)."""
    result, obj = syntax.assemble(text, root, get_settings())
    assert obj is not None, result.message
    return execution.runs.place_candidate(kernels.get(variant_id), obj, root, get_settings())


def _records(variant_id: str, scratch: Path) -> bytes:
    variant = kernels.get(variant_id)
    tests = execution.harness.test_count(variant, get_settings())
    res = sandbox.run(execution.qemu_argv(f"./{execution.EXE_NAME}", SEED, tests, False),
                      scratch, timeout_s=20, writable=False, settings=get_settings())
    assert res.returncode == 0, res.stderr[-300:]
    records, clean = parse(variant, res.stdout, False)
    assert clean and len(records) == tests
    return repr(records).encode()


@pytest.mark.parametrize("variant_id", ["vec_add_n1024_float32", "gelu_approx_n128_float64",
                                        "softmax_numer_n64_float32", "dot_n1000_int32"])
@pytest.mark.parametrize("compiler", ["clang", "gcc"])
def test_baselines_run_as_linked_by_ld(variant_id: str, compiler: str, scratch: Path) -> None:
    both = linked_both(variant_id, baseline(variant_id, compiler), scratch)
    ld, own = both[False], both[True]
    assert isinstance(ld, Path) and isinstance(own, Path)
    code_ld = guard.candidate_code(ld, execution.MAP_NAME, syntax.OBJECT_NAME)
    code = guard.candidate_code(own, execution.MAP_NAME, syntax.OBJECT_NAME)
    assert (own / guard.LAYOUT_NAME).exists()  # placed (its constants included)
    assert code == code_ld  # the code where ld puts it; its references to data move with it
    assert _records(variant_id, ld) == _records(variant_id, own)


# Every relocation type the placement applies, against targets in other sections (so that gas
# leaves them to the linker); x0 is the first argument's pointer, left alone.
RELOCS = """\
    .section .rodata.k, "a"
    .p2align 4
ro:     .quad 1, 2
        .xword ro, target
        .word ro
        .word target - .
        .xword target - .
    .section .rodata.near, "a"
        .hword ro - .
    .data
    .p2align 3
rw:     .xword ro
    .section .text.far, "ax"
target: ret
    .text
    .globl kernel
kernel:
    movz x9, #:abs_g3:ro
    movk x9, #:abs_g2_nc:ro
    movk x9, #:abs_g1_nc:ro
    movk x9, #:abs_g0_nc:ro
    movz x10, #:abs_g1:ro
    movz x10, #:abs_g2:ro
    adrp x9, ro
    add x9, x9, :lo12:ro
    ldrb w10, [x9, :lo12:ro]
    ldrh w10, [x9, :lo12:ro]
    ldr w10, [x9, :lo12:ro]
    ldr x10, [x9, :lo12:ro]
    ldr q16, [x9, :lo12:ro]
    adrp x9, rw
    ldr x10, [x9, :lo12:rw]
    ldr x10, ro
    adr x9, ro
    tbz x9, #63, 1f
1:  b.eq 2f
2:  cbz x9, 3f
3:  bl target
    tbnz x9, #62, target
    cbz xzr, target
    b target
"""


def test_every_admitted_relocation_type_is_applied_as_ld_does(scratch: Path) -> None:
    """The code lands where ld puts it, so a relocation against code (branches, code
    addresses and offsets in data) gives ld's bytes; the slots move the data by a fixed amount,
    so those against data are checked through the run (the kernel returns at once; its loads
    through every addressing form must not fault) and the baselines' records above."""
    text = asm(RELOCS + "    ret\n")
    result, obj = syntax.assemble(text, scratch, get_settings())
    assert obj is not None, result.message
    elf = object_checks.parse_elf(obj.read_bytes())
    used = {r.type for rs in elf.relocations.values() for r in rs}
    assert used >= {257, 258, 260, 261, 262, 264, 265, 266, 267, 268, 269, 273, 274, 275, 277,
                    278, 279, 280, 282, 283, 284, 285, 286, 299}, sorted(used)
    assert used <= place.TYPES
    both = linked_both("vec_add_n1024_float32", text, scratch)
    ld, own = both[False], both[True]
    assert isinstance(ld, Path) and isinstance(own, Path)
    assert (own / guard.LAYOUT_NAME).exists()
    images = [guard.Image.read(p / execution.EXE_NAME) for p in (ld, own)]
    code = guard.candidate_code(own, execution.MAP_NAME, syntax.OBJECT_NAME)
    assert code == guard.candidate_code(ld, execution.MAP_NAME, syntax.OBJECT_NAME)
    code_targets = {r.offset for rs in (elf.relocations.get(s.index, [])
                                        for s in elf.sections if s.name == ".text")
                    for r in rs if r.type in (279, 280, 282, 283)}
    kernel = images[1].symbol("kernel")
    assert kernel == images[0].symbol("kernel")
    for at in sorted(code_targets):
        assert images[0].bytes_at(kernel + at, 4) == images[1].bytes_at(kernel + at, 4), at
    ro = images[1].symbol("armgym_ro_slot")
    ro_ld = int(next(ln.split()[1] for ln in (ld / execution.MAP_NAME).read_text().splitlines()
                     if ln.startswith(" .rodata.k")), 16)
    target = code[-1][0]  # .text.far, at the same address in both
    own_ro, ld_ro = images[1].bytes_at(-(-ro // 16) * 16, 40), images[0].bytes_at(ro_ld, 40)
    assert own_ro[24:32] == ld_ro[24:32] == target.to_bytes(8, "little")  # ABS64 of code
    assert int.from_bytes(own_ro[16:24], "little") == -(-ro // 16) * 16  # ABS64 of data
    assert int.from_bytes(ld_ro[16:24], "little") == ro_ld
    # PC-relative references to data: read back (with the decoder that reads ld's output
    # right), each names the data's own address in its image
    text_index = next(s.index for s in elf.sections if s.name == ".text")
    ro_index = next(s.index for s in elf.sections if s.name == ".rodata.k")
    by_symbol = {sym.index: sym for sym in elf.symbols}
    checked = 0
    for rel in elf.relocations[text_index]:
        if rel.type in (273, 274, 275) and by_symbol[rel.symbol].shndx == ro_index:
            read = place._PCREL[rel.type][1]
            for image, base in ((images[0], ro_ld), (images[1], -(-ro // 16) * 16)):
                word = int.from_bytes(image.bytes_at(kernel + rel.offset, 4), "little")
                want = base & ~0xFFF if rel.type == 275 else base
                assert read(word, kernel + rel.offset) == want + rel.addend  # type: ignore
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("line", [
    "movz x9, #:abs_g0:ro",  # UABS_G0 of an address above 64 KiB: ld says truncated
    "movz x9, #:abs_g1_s:ro",  # a type the placement leaves to ld (SABS_G1), which takes it
    ".hword ro",  # ABS16 overflow, in the code section as data
])
def test_what_the_placement_leaves_to_ld_gets_lds_answer(line: str, scratch: Path) -> None:
    text = asm(".section .rodata.k, \"a\"\nro: .quad 1\n.text\n.globl kernel\nkernel:\n"
               f"    {line}\n    ret\n")
    sub = scratch / "probe"
    sub.mkdir()
    sub.chmod(0o777)
    assert not placed("vec_add_n1024_float32", text, sub)
    assert not (sub / guard.LAYOUT_NAME).exists()
    both = linked_both("vec_add_n1024_float32", text, scratch)
    assert both[True] == both[False] or isinstance(both[True], Path) and \
        isinstance(both[False], Path) and not (both[True] / guard.LAYOUT_NAME).exists()
    if isinstance(both[False], str):
        assert check("vec_add_n1024_float32", text).error_kind == ErrorKind.link_error


def test_a_far_branch_is_left_to_ld(scratch: Path) -> None:
    """ld answers a branch beyond 128 MiB with a veneer; the placement does not make one."""
    text = asm(".text\n.globl kernel\nkernel:\n    b far\n.set far, 0x40000000\n")
    result, obj = syntax.assemble(text, scratch, get_settings())
    assert obj is not None, result.message
    variant = kernels.get("vec_add_n1024_float32")
    assert not execution.runs.place_candidate(variant, obj, scratch, get_settings())


def test_malformed_objects_are_never_placed(scratch: Path) -> None:
    """Bad symbol indices, relocations past their section, sections past the file, slots
    overflowed: Unplaceable (ld then answers), never another exception."""
    text = asm(RELOCS + "    ret\n")
    result, obj = syntax.assemble(text, scratch, get_settings())
    assert obj is not None, result.message
    good = obj.read_bytes()
    elf = object_checks.parse_elf(good)
    template = execution.runs._template(kernels.get("vec_add_n1024_float32"),
                                        execution.harness.build(
                                            kernels.get("vec_add_n1024_float32"),
                                            get_settings()))
    assert place.place(good, template).entry
    text_sec = next(s for s in elf.sections if s.name == ".text")
    rela = next(s for s in elf.sections if s.type == object_checks.SHT_RELA and
                s.info == text_sec.index)
    cases = []
    bad = bytearray(good)  # a relocation that names a symbol past the table
    bad[rela.offset + 12: rela.offset + 16] = (10**6).to_bytes(4, "little")
    cases.append(bad)
    bad = bytearray(good)  # a relocation far past the end of its section
    bad[rela.offset: rela.offset + 8] = (1 << 40).to_bytes(8, "little")
    cases.append(bad)
    bad = bytearray(good)  # one just past it
    bad[rela.offset: rela.offset + 8] = (text_sec.size - 2).to_bytes(8, "little")
    cases.append(bad)
    bad = bytearray(good)  # an unknown relocation type
    bad[rela.offset + 8: rela.offset + 12] = (500).to_bytes(4, "little")
    cases.append(bad)
    bad = bytearray(good)  # a section past the end of the file
    shdr = elf_header_offset(good, text_sec.index)
    bad[shdr + 32: shdr + 40] = (1 << 20).to_bytes(8, "little")
    cases.append(bad)
    bad = bytearray(good)  # truncated
    cases.append(bad[: len(good) // 2])
    for case in cases:
        with pytest.raises(place.Unplaceable):
            place.place(bytes(case), template)


def elf_header_offset(data: bytes, index: int) -> int:
    shoff = int.from_bytes(data[40:48], "little")
    return shoff + index * 64


def test_a_large_bss_is_left_to_ld(scratch: Path) -> None:
    text = asm(".bss\nbig: .skip 600000\n.text\n.globl kernel\nkernel:\n    ret\n")
    assert not placed("vec_add_n1024_float32", text, scratch)


def test_the_fast_path_serves_the_baselines(scratch: Path) -> None:
    """Not a fallback in disguise: the compiler baselines of a variant are placed."""
    for compiler in ("clang", "gcc"):
        sub = scratch / compiler
        sub.mkdir()
        sub.chmod(0o777)
        assert placed("vec_add_n1024_float32", baseline("vec_add_n1024_float32", compiler), sub)


# The reader before the tables were read as arrays: every section header, symbol and relocation
# unpacked one by one. The array reader must give the same template on every template's harness.
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")


def _unpacked_template(path: Path, functions: tuple[str, ...]) -> place.Template:
    data = path.read_bytes()
    segments = guard.load_segments(data)

    def offset(address: int) -> int:
        return next(off + address - vaddr for vaddr, off, filesz in segments
                    if vaddr <= address < vaddr + filesz)

    shoff, = struct.unpack_from("<Q", data, 40)
    shnum, = struct.unpack_from("<H", data, 60)
    headers = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
    symtab = next(h for h in headers if h[1] == object_checks.SHT_SYMTAB)
    strings = headers[symtab[6]]
    names = data[strings[4]: strings[4] + strings[5]]
    symbols = [_SYM.unpack_from(data, symtab[4] + i * _SYM.size)
               for i in range(symtab[5] // _SYM.size)]

    def name(sym: tuple[int, ...]) -> bytes:
        return names[sym[0]: names.index(b"\0", sym[0])]

    def value(wanted: str) -> int:
        return next(s[4] for s in symbols if s[3] and s[1] >> 4 in (1, 2)
                    and name(s) == wanted.encode())

    index = max(i for i, s in enumerate(symbols) if s[3] and s[1] >> 4 == 1
                and name(s) == b"kernel")
    calls, others = [], []
    for h in headers:
        if h[1] == object_checks.SHT_RELA and h[6] == headers.index(symtab):
            for r_offset, info, addend in _RELA.iter_unpack(data[h[4]: h[4] + h[5]]):
                entry = (info & 0xFFFFFFFF, r_offset, symbols[info >> 32][4], addend)
                (calls if info >> 32 == index else others).append(entry)
    slots = tuple((a, offset(a)) for a in map(value, place.SLOT_SYMBOLS))
    aligns = tuple(max((h[8] for h in headers if h[3] <= a < h[3] + h[5]), default=0)
                   for a, _ in slots)
    end = slots[0][0] + place.TEXT_SLOT
    after = sorted((h[3], h[8]) for h in headers
                   if h[2] & object_checks.SHF_EXECINSTR and h[3] >= end)
    tail, tail_align, moved = b"", 1, []
    if after:
        seg = next(s for s in segments if s[0] <= end < s[0] + s[2])
        lo, hi = after[0][0], seg[0] + seg[2]
        tail, tail_align = data[offset(lo): seg[1] + seg[2]], max(after[0][1], 1)
        try:
            for rtype, p, s, addend in others:
                if lo <= p < hi:
                    moved += place._moved(rtype, p, s + addend, lo, hi, data[offset(p):][:8])
        except ValueError:
            moved = None
    return place.Template(path, place._identity(path.stat()), slots,
                          symtab[4] + index * _SYM.size + 8,
                          tuple((t, p, offset(p), a) for t, p, _s, a in calls),
                          {f: value(f) for f in functions}, (aligns[0], aligns[1], aligns[2]),
                          tail, tail_align, tuple(moved) if moved is not None else None)


def _one_per_template() -> list[str]:
    """A variant of every template, the one calling the most math functions."""
    best: dict[str, kernels.Variant] = {}
    for v in kernels.build_all():
        if v.template not in best or len(v.math_functions) > len(best[v.template].math_functions):
            best[v.template] = v
    return sorted(v.id for v in best.values())


@pytest.mark.parametrize("variant_id", _one_per_template())
def test_the_template_read_as_arrays_is_the_one_read_entry_by_entry(variant_id: str) -> None:
    variant = kernels.get(variant_id)
    slotted = execution.harness.build(variant, get_settings()).slotted
    read = place.Template.read(slotted, variant.math_functions)
    assert read == _unpacked_template(slotted, variant.math_functions)
    assert read.calls and read.tail_relocs  # the tables were there to read
    assert all(type(x) is int for entry in (*read.calls, *read.tail_relocs) for x in entry[:3])
