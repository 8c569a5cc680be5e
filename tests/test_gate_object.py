"""The object gate on objects assembled by the real, sandboxed GNU as (§5.2)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VEC_ADD_1024_LOOP

from toolchain import kernels
from toolchain.errors import ErrorKind
from toolchain.gates import object_checks as oc
from toolchain.gates import syntax
from toolchain.settings import Settings, get_settings
from toolchain.tools import (
    CLANG_FLAGS,
    COMMON_CFLAGS,
    GCC_FLAGS,
    REQUIRED_LINK_FLAGS,
    link_argv,
    tool,
)

REPO = Path(__file__).resolve().parents[1]
HEAD = "\t.text\n\t.globl kernel\n\t.type kernel, %function\nkernel:\n"
GOOD = HEAD + VEC_ADD_1024_LOOP + "    .size   kernel, .-kernel\n"
MATH = frozenset({"expf"})


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A scratch directory the sandbox's unprivileged user can reach."""
    path = Path(tempfile.mkdtemp(prefix="armgym-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def build(scratch: Path, src: str) -> Path:
    result, obj = syntax.assemble(src, scratch, settings=get_settings())
    assert result.passed and obj is not None, result.message
    return obj


def judge(scratch: Path, src: str, allowed: frozenset[str] = MATH,
          settings: Settings | None = None) -> oc.GateResult:
    return oc.check_object(build(scratch, src), allowed, settings or get_settings())


def rejected(scratch: Path, src: str, needle: str, allowed: frozenset[str] = MATH) -> None:
    result = judge(scratch, src, allowed)
    assert not result.passed, "expected a rejection"
    assert result.kind is ErrorKind.object_rejected
    assert result.name == "object"
    text = " | ".join(result.details.problems)
    assert needle in text, text


# ----------------------------------------------------------------------------- passes


def test_good_object_passes(scratch: Path) -> None:
    result = judge(scratch, GOOD)
    assert result.passed, result.message
    assert result.kind is None and result.seconds == 0.0  # timed by pipeline.run alone
    assert result.details.code_bytes == 36
    assert ".text" in result.details.sections


@pytest.mark.parametrize("src", [
    HEAD + "\tb expf\n",                                           # allowed math call
    ".text\n.weak kernel\nkernel: ret\n",                          # weak definition
    HEAD + "\t.cfi_startproc\n\tret\n\t.cfi_endproc\n",            # .eh_frame
    '.file 1 "k.c"\n' + HEAD + "\t.loc 1 1 0\n\tret\n",            # .debug_line
    HEAD + '\tret\n\t.ident "x"\n',                                 # .comment
    HEAD + "\tmrs x0, fpcr\n\tmsr fpcr, x0\n\tmrs x1, nzcv\n\tret\n",  # FP control is fine
    HEAD + "\tadrp x0, t\n\tldr q0, [x0, :lo12:t]\n\tret\n"
    ".section .rodata.cst16,\"aM\",@progbits,16\nt: .xword 1, 2\n",  # constants
    HEAD + "\tret\n.data\n\t.inst 0xd4000001\n",                   # svc bytes in data: not code
    HEAD + "\tret\n.section .rodata\n\t.word 0xd4000001\n",        # ... nor in rodata
    HEAD + "\tret\n.lcomm buf, 64\n",                              # local .bss
    HEAD + "\tret\n.section .text.hot,\"axR\"\n\tnop\n",           # another .text section
])
def test_legitimate_objects_pass(scratch: Path, src: str) -> None:
    result = judge(scratch, src)
    assert result.passed, result.message


@pytest.mark.parametrize("compiler", ["clang", "gcc"])
@pytest.mark.parametrize("variant_id", ["vec_add_n1024_float32", "softmax_numer_n256_float32",
                                        "dot_n256_int8"])
def test_compiler_baselines_pass(tmp_path: Path, scratch: Path, compiler: str,
                                 variant_id: str) -> None:
    variant = kernels.get(variant_id)
    c_file = tmp_path / "k.c"
    c_file.write_text(variant.c_source)
    cc = [tool("clang").path, "clang", *CLANG_FLAGS] if compiler == "clang" else \
        [tool("gcc").path, *GCC_FLAGS]
    out = tmp_path / "k.s"
    subprocess.run([*cc, "-O3", *COMMON_CFLAGS, "-S", "-o", str(out), str(c_file)], check=True)
    result = judge(scratch, out.read_text(), frozenset(variant.math_functions))
    assert result.passed, result.message


# ----------------------------------------------------------------------------- symbols


def test_missing_kernel(scratch: Path) -> None:
    rejected(scratch, ".text\n.globl other\nother: ret\n", "no global symbol `kernel`")


def test_local_kernel_gets_a_hint(scratch: Path) -> None:
    rejected(scratch, ".text\nkernel: ret\n", "add `.globl kernel`")


def test_extra_global_symbol(scratch: Path) -> None:
    rejected(scratch, GOOD + ".globl memcpy\nmemcpy: ret\n", "global symbol 'memcpy'")


def test_undefined_printf_rejected_expf_allowed(scratch: Path) -> None:
    src = HEAD + "\tbl expf\n\tbl printf\n\tret\n"
    rejected(scratch, src, "undefined symbols not allowed for this variant: printf")
    result = judge(scratch, HEAD + "\tb expf\n")
    assert result.passed and result.details.calls == ["expf"]
    rejected(scratch, HEAD + "\tb expf\n", "expf", allowed=frozenset())


@pytest.mark.parametrize(("src", "needle"), [
    (".globl kernel\n.set kernel, 0x1234\n", "not as an absolute value"),
    (".data\n.globl kernel\n.type kernel, %object\nkernel: .word 1\n", "must be a function"),
    (".data\n.globl kernel\nkernel: .word 1\n", "must be defined in a .text section"),
    (HEAD + "\tret\n.comm buf, 64, 8\n", "common symbol"),
    (HEAD + "\tret\n.type f, %gnu_indirect_function\nf: ret\n", "indirect function"),
    (HEAD + "\tmrs x0, tpidr_el0\n\tadd x0, x0, :tprel_hi12:v\n\tret\n", "thread-local"),
    (HEAD + "\tret\n.weak foo\n\tadrp x0, foo\n", "undefined symbols"),
])
def test_symbol_rules(scratch: Path, src: str, needle: str) -> None:
    rejected(scratch, src, needle)


# ----------------------------------------------------------------------------- sections


@pytest.mark.parametrize(("src", "needle"), [
    (GOOD + '.section .init_array,"aw"\n\t.xword kernel\n', "section .init_array is not allowed"),
    (GOOD + '.section .fini_array,"aw"\n\t.xword kernel\n', "section .fini_array is not allowed"),
    (GOOD + '.section .data.x,"aw",%init_array\n\t.xword kernel\n', "type 14"),
    (GOOD + '.section .ctors,"aw"\n\t.xword kernel\n', "section .ctors is not allowed"),
    (GOOD + '.section .data.x,"awx"\n\tnop\n', "both writable and executable"),
    ('.section .text.x,"awx"\n.globl kernel\nkernel: ret\n', "both writable and executable"),
    (GOOD + '.section .mycode,"ax"\n\tnop\n', "executable section .mycode is not allowed"),
    (GOOD + '.section .rodata.x,"ax"\n\tnop\n', "must not be executable"),
    (GOOD + '.section .rodata.y,"aw"\n\t.word 1\n', "must not be writable"),
    (GOOD + '.section .note.GNU-stack,"x",%progbits\n', "note.GNU-stack must not be"),
    (GOOD + '.section .note.gnu.property,"a"\n\t.word 4\n', ".note.gnu.property is not allowed"),
    (GOOD + '.section .tdata,"awT"\n\t.word 4\n', "thread-local storage"),
    (GOOD + '.section .init,"ax"\n\tnop\n', "executable section .init is not allowed"),
    ('.section .text.k,"axG",%progbits,grp,comdat\n.globl kernel\nkernel: ret\n', "group"),
    (GOOD + ".data\n.balign 131072\n\t.word 1\n", "alignment"),
])
def test_section_rules(scratch: Path, src: str, needle: str) -> None:
    rejected(scratch, src, needle)


def test_size_limits(scratch: Path) -> None:
    rejected(scratch, GOOD + "\t.space 70000\n", "code is 70036 bytes")
    rejected(scratch, GOOD + ".bss\n\t.space 600000\n\t.space 600000\n", "allocated sections")
    result = judge(scratch, GOOD, settings=Settings(max_object_bytes=256))
    assert not result.passed and "object file is" in result.message


# ----------------------------------------------------------------------------- instructions


@pytest.mark.parametrize(("body", "needle"), [
    ("\tsvc #0", "svc"),
    ("\t.inst 0xd4000001", "svc"),
    ("\t.word 0xd4000001", "svc"),           # data-mapped word in .text is still code
    ("\tsvc #0x80", "svc"),
    ("\thvc #1", "hvc"),
    ("\tsmc #1", "smc"),
    ("\thlt #0", "hlt"),
    ("\tbrk #1", "brk"),
    ("\t.inst 0xd4a00001", "dcps"),
    ("\teret", "eret"),
    ("\tmrs x3, cntvct_el0", "system counter"),
    ("\tmrs x3, pmccntr_el0", "cycle counter"),
    ("\tmrs x3, rndr", "random-number"),
    ("\tdmb ish", "dmb"),
    ("\tdmb oshld", "dmb"),
    ("\tdsb sy", "dsb"),
    ("\tssbb", "dsb"),
    ("\tisb", "isb"),
    ("\tsb", "speculation barrier"),
    ("\tdc zva, x0", "cache maintenance"),
    ("\tdc civac, x0", "cache maintenance"),
    ("\tdc cvau, x1", "cache maintenance"),
    ("\tic ivau, x0", "cache maintenance"),
    ("\tic iallu", "cache maintenance"),
    ("\twfe", "wfe"),
    ("\twfi", "wfe/wfi"),
])
def test_forbidden_instructions(scratch: Path, body: str, needle: str) -> None:
    rejected(scratch, HEAD + body + "\n\tret\n", needle)


def test_prefetches_and_hints_are_allowed(scratch: Path) -> None:
    result = judge(scratch, HEAD + "\tprfm pldl1keep, [x1, #256]\n\tprfm pstl2strm, [x0]\n"
                   "\tnop\n\tyield\n\tret\n")
    assert result.passed, result.message


def test_forbidden_word_reported_with_offset(scratch: Path) -> None:
    result = judge(scratch, HEAD + "\tnop\n\tnop\n\tsvc #0\n\tret\n")
    assert result.details.problems == ["forbidden instruction svc (system call) at .text+0x8"]


def test_under_aligned_code_scanned_at_every_offset(scratch: Path) -> None:
    src = GOOD + '.section .text.z,"ax"\n\t.byte 0, 1, 0, 0, 0xd4\n'
    rejected(scratch, src, "svc (system call) at .text.z+0x1")


@pytest.mark.parametrize("src", [
    HEAD + "\t.inst 0x80800000\n\tret\n",                                    # fmopa as a word
    HEAD + "\t.word 0x80800000\n\tret\n",                                    # ... as data
    ".arch armv9-a+sme\n" + HEAD + "\tfmopa za0.s, p0/m, p1/m, z0.s, z1.s\n\tret\n",
    ".arch_extension sme\n" + HEAD + "\tzero {za}\n\tret\n",
])
def test_sme_bytes_rejected(scratch: Path, src: str) -> None:
    rejected(scratch, src, "not available on Neoverse V2 at .text+0x0")


def test_smstart_rejected(scratch: Path) -> None:
    rejected(scratch, ".arch_extension sme\n" + HEAD + "\tsmstart\n\tret\n", "smstart")


# ----------------------------------------------------------------------------- malformed ELF


@pytest.mark.parametrize("mangle", [
    lambda data: data[:100],
    lambda data: data[:-40],
    lambda data: b"",
    lambda data: b"#!/bin/sh\n" * 10,
    lambda data: data[:4] + b"\x01" + data[5:],              # ELFCLASS32
    lambda data: data[:18] + b"\x3e\x00" + data[20:],        # x86-64 machine
])
def test_malformed_elf_rejected(scratch: Path, mangle) -> None:  # type: ignore[no-untyped-def]
    obj = build(scratch, GOOD)
    obj.write_bytes(mangle(obj.read_bytes()))
    result = oc.check_object(obj, MATH, settings=get_settings())
    assert not result.passed and result.kind is ErrorKind.object_rejected
    assert "not a valid ELF64" in result.message


def test_corrupt_symbol_table_rejected(scratch: Path) -> None:
    obj = build(scratch, GOOD)
    elf = oc.parse_elf(obj.read_bytes())
    symtab = next(s for s in elf.sections if s.type == oc.SHT_SYMTAB)
    data = bytearray(obj.read_bytes())
    entry = symtab.offset + oc._SYM.size * (len(elf.symbols) - 1)
    data[entry: entry + 4] = (10**8).to_bytes(4, "little")   # name offset far outside .strtab
    obj.write_bytes(bytes(data))
    assert "string table" in oc.check_object(obj, MATH, settings=get_settings()).message


def test_elf_reader_sees_sections_symbols_relocations(scratch: Path) -> None:
    elf = oc.parse_elf(build(scratch, HEAD + "\tbl expf\n\tret\n").read_bytes())
    names = [s.name for s in elf.sections]
    assert ".text" in names and ".rela.text" in names and ".symtab" in names
    kernel = next(s for s in elf.symbols if s.name == "kernel")
    assert kernel.bind == oc.STB_GLOBAL and kernel.type == oc.STT_FUNC
    text = names.index(".text")
    (reloc,) = elf.relocations[text]
    assert reloc.type == 283  # R_AARCH64_CALL26
    assert elf.symbols[reloc.symbol].name == "expf"


def _executable_sections(elf: Path) -> set[str]:
    out = subprocess.run([tool("readelf").path, "-lW", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    headers = out.split("Program Headers:")[1].split("Section to Segment mapping")[0]
    # Type Offset VirtAddr PhysAddr FileSiz MemSiz Flg... Align, Flg being e.g. "R E" or "RW".
    flags = ["".join(line.split()[6:-1]) for line in headers.splitlines()
             if re.match(r"\s+[A-Z_]+\s+0x", line)]
    sections = out.split("Section to Segment mapping")[1]
    mapping = re.findall(r"^[ \t]+(\d\d)[ \t]+(.*)$", sections, re.M)
    return {name for idx, names in mapping if "E" in flags[int(idx)] for name in names.split()}


def test_required_link_flags_keep_rodata_out_of_executable_segments(
    tmp_path: Path, scratch: Path
) -> None:
    """The instruction checks only cover .text*: that is sound only with REQUIRED_LINK_FLAGS."""
    obj = build(scratch, HEAD + "\t.cfi_startproc\n\tadrp x0, t\n\tret\n\t.cfi_endproc\n"
                ".section .rodata\nt: .word 0xd4000001\n")
    plain, hardened = tmp_path / "plain.elf", tmp_path / "hardened.elf"
    ld = [tool("ld").path, "-static", "-e", "kernel", str(obj)]
    subprocess.run([*ld, "-o", str(plain)], check=True)
    subprocess.run([*ld, *REQUIRED_LINK_FLAGS, "-o", str(hardened)], check=True)
    # GNU ld's default layout for AArch64 maps read-only data into the executable segment.
    assert {".text", ".rodata", ".eh_frame"} <= _executable_sections(plain)
    assert _executable_sections(hardened) == {".text"}



def test_every_candidate_link_uses_the_required_flags() -> None:
    argv = link_argv(["harness.o", "kernel.o"], "candidate.elf", "candidate.map", runtime=False)
    n = len(REQUIRED_LINK_FLAGS)
    assert any(tuple(argv[i:i + n]) == REQUIRED_LINK_FLAGS for i in range(len(argv)))


def test_missing_objdump_is_an_infra_error(tmp_path: Path, scratch: Path) -> None:
    obj = build(scratch, GOOD)
    code = (
        "import sys; from pathlib import Path\n"
        "from toolchain.errors import InfraError\n"
        "from toolchain.gates import object_checks\n"
        "from toolchain.settings import get_settings\n"
        "try:\n"
        "    object_checks.check_object(Path(sys.argv[1]), frozenset(), get_settings())\n"
        "except InfraError as exc:\n"
        "    print('infra:', exc); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    env = {"PATH": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, str(obj)], env=env, capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "objdump" in out.stdout
    assert sorted(p.name for p in scratch.iterdir()) == ["kernel.o", "kernel.s"]
