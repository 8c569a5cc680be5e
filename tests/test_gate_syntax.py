"""The syntax gate with the real, sandboxed GNU as: limits, directive screen, errors, budgets."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VEC_ADD_1024_LOOP

from toolchain import kernels, limits
from toolchain.errors import ErrorKind
from toolchain.gates import syntax
from toolchain.settings import Settings, get_settings
from toolchain.tools import CLANG_FLAGS, COMMON_CFLAGS, GCC_FLAGS, tool

REPO = Path(__file__).resolve().parents[1]

VEC_ADD_NEON = """\
// a[i] = b[i] + c[i], 1024 floats
    .text
    .globl  kernel
    .type   kernel, %function
    .p2align 4
kernel:
""" + VEC_ADD_1024_LOOP + """\
    .size   kernel, .-kernel
"""

GCC_HEADER = """\
\t.arch armv9-a+crc+profile+rng+memtag+sve2-bitperm+i8mm+bf16
\t.file\t"vec_add.c"
\t.text
\t.align\t2
\t.p2align 5,,15
\t.global\tkernel
\t.type\tkernel, %function
kernel:
.LFB0:
\t.cfi_startproc
\tmov\tx3, 0
\tret
\t.cfi_endproc
.LFE0:
\t.size\tkernel, .-kernel
\t.ident\t"GCC: (Debian 12.2.0-14) 12.2.0"
\t.section\t.note.GNU-stack,"",@progbits
"""


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A scratch directory the sandbox's unprivileged user can reach (pytest's tmp_path sits
    under a root-only 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="armgym-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wrap(body: str) -> str:
    return f"\t.text\n\t.globl kernel\nkernel:\n{body}\n\tret\n"


def no_host_paths(result: object, *extra: str) -> None:
    blob = json.dumps(result.to_json())  # type: ignore[attr-defined]
    assert "/work/" not in blob
    for root in ("/usr/", "/tmp/", "/etc/", "/proc/", "/root/", "/home/", str(REPO)):
        assert root not in blob, root
    for secret in extra:
        assert secret not in blob


# ----------------------------------------------------------------------------- assembling


def test_vec_add_neon_assembles(scratch: Path) -> None:
    result, obj = syntax.assemble(VEC_ADD_NEON, scratch, settings=get_settings())
    assert result.passed and result.kind is None, result.message
    assert result.name == "syntax"
    assert obj == scratch / "kernel.o" and obj.is_file()
    assert result.details.object_bytes == obj.stat().st_size
    assert result.seconds == 0.0  # a gate is timed by pipeline.run alone


@pytest.mark.parametrize("insn", [
    "histcnt z0.s, p0/z, z1.s, z2.s",            # SVE2
    "bdep z0.s, z1.s, z2.s",                     # SVE2 bit permute
    "ld1w {z0.s}, p0/z, [x0]",                   # SVE
    "smmla v0.4s, v1.16b, v2.16b",               # i8mm
    "sdot v0.4s, v1.16b, v2.16b",                # dot product
    "sdot z0.s, z1.b, z2.b",                     # SVE dot product
    "bfdot v0.4s, v1.8h, v2.8h",                 # bf16
    "fmlal v0.4s, v1.4h, v2.4h",                 # fp16fml
    "fadd v0.8h, v1.8h, v2.8h",                  # fp16
    "aese v0.16b, v1.16b",                       # crypto
    "crc32cx w0, w1, x2",                        # crc
    "ldadd x0, x1, [x2]",                        # LSE atomics
])
def test_neoverse_v2_extensions_assemble(scratch: Path, insn: str) -> None:
    result, obj = syntax.assemble(wrap(f"\t{insn}"), scratch, settings=get_settings())
    assert result.passed, result.message
    assert obj is not None


def test_gcc_style_arch_header_assembles(scratch: Path) -> None:
    result, _ = syntax.assemble(GCC_HEADER, scratch, settings=get_settings())
    assert result.passed, result.message
    assert result.details.warnings is None


@pytest.mark.parametrize("compiler", ["clang", "gcc"])
@pytest.mark.parametrize("variant_id", ["vec_add_n1024_float32", "dot_n256_int8"])
def test_compiler_baselines_assemble_without_warnings(
    tmp_path: Path, scratch: Path, compiler: str, variant_id: str
) -> None:
    variant = kernels.get(variant_id)
    c_file = tmp_path / "k.c"
    c_file.write_text(variant.c_source)
    if compiler == "clang":
        cmd = [tool("clang").path, "clang", *CLANG_FLAGS]
    else:
        cmd = [tool("gcc").path, *GCC_FLAGS]
    out = tmp_path / "k.s"
    subprocess.run([*cmd, "-O3", *COMMON_CFLAGS, "-S", "-o", str(out), str(c_file)], check=True)
    result, obj = syntax.assemble(out.read_text(), scratch, settings=get_settings())
    assert result.passed, result.message
    assert result.details.warnings is None
    assert obj is not None


def test_benign_warning_does_not_fail(scratch: Path) -> None:
    result, obj = syntax.assemble(wrap("\t.byte 300"), scratch, settings=get_settings())
    assert result.passed and obj is not None
    assert result.details.warnings[0].line == 4
    assert "truncated" in result.details.warnings[0].message


def test_unpredictable_encoding_is_an_error(scratch: Path) -> None:
    result, obj = syntax.assemble(wrap("\tldp x0, x0, [x1]"), scratch, settings=get_settings())
    assert not result.passed and obj is None
    assert result.kind is ErrorKind.assemble_error
    assert "unpredictable" in result.details.errors[0].message


# ----------------------------------------------------------------------------- error reports


def test_unknown_mnemonic_reports_line_column_message(scratch: Path) -> None:
    src = "\t.text\n\t.globl kernel\nkernel:  FOO   x0,  x1\n\tret\n"
    result, obj = syntax.assemble(src, scratch, settings=get_settings())
    assert not result.passed and obj is None
    assert result.kind is ErrorKind.assemble_error
    err = result.details.errors[0]
    assert err.line == 3
    assert err.column == 10
    assert "unknown mnemonic" in err.message and "foo" in err.message
    assert result.message.startswith("line 3, column 10: unknown mnemonic")
    assert not (scratch / "kernel.o").exists()
    no_host_paths(result, str(scratch))


def test_operand_errors_point_at_the_operand(scratch: Path) -> None:
    src = wrap("\tadd x0, x1, lsl #3\n\tadd x0,x1\n\tnop ; bogus x1")
    result, _ = syntax.assemble(src, scratch, settings=get_settings())
    errors = {e.line: e for e in result.details.errors}
    assert errors[4].column == 14  # `lsl`, operand 3
    assert errors[5].column == 11  # just past `x1`, where operand 3 is missing
    assert errors[6].column == 8   # `bogus`, after the `;` separator
    assert len(result.details.errors) == 3
    assert "(and 2 more)" in result.message


def test_repeated_statements_on_one_line_get_their_own_columns(scratch: Path) -> None:
    result, _ = syntax.assemble("nop; zork x0 ; zork x0\n", scratch, settings=get_settings())
    assert [(e.line, e.column) for e in result.details.errors] == [(1, 6), (1, 16)]


def test_error_flood_is_capped_and_fast(scratch: Path) -> None:
    flood = "; ".join(["zork x0, x1"] * 20000)[: 250 * 1024]
    start = time.monotonic()
    result, _ = syntax.assemble(flood, scratch, settings=get_settings())
    assert time.monotonic() - start < 3
    assert len(result.details.errors) == syntax.MAX_REPORTED_ERRORS
    assert result.details.errors[1].column == 14
    assert re.search(r"\(and \d{3,} more\)$", result.message)


def test_error_without_quote_points_at_first_non_blank(scratch: Path) -> None:
    result, _ = syntax.assemble(wrap("   mov x0, #0x123456789"), scratch, settings=get_settings())
    err = result.details.errors[0]
    assert (err.line, err.column) == (4, 4)


def test_sme_instruction_text_is_refused(scratch: Path) -> None:
    result, obj = syntax.assemble(wrap("\tfmopa za0.s, p0/m, p1/m, z0.s, z1.s"), scratch,
                                  settings=get_settings())
    assert not result.passed and obj is None
    assert result.kind is ErrorKind.assemble_error
    assert "does not support" in result.details.errors[0].message


def test_sanitize_removes_absolute_paths() -> None:
    msg = "can't open /etc/passwd for reading; /work/kernel.s and p0/m stay"
    assert syntax.sanitize(msg) == "can't open <path> for reading; kernel.s and p0/m stay"


# ----------------------------------------------------------------------------- directives


@pytest.mark.parametrize(("src", "line", "column", "name"), [
    ('.incbin "/etc/passwd"', 1, 1, ".incbin"),
    ('\t.include "/etc/passwd"', 1, 2, ".include"),
    ('nop\nfoo: .incbin "x"', 2, 6, ".incbin"),
    ('foo:.INCBIN "x"', 1, 5, ".incbin"),
    ('nop ; .Include "x"', 1, 7, ".include"),
    ('nop;bar: baz: .incbin "x"', 1, 15, ".incbin"),
    ('.macro m\n  .incbin "x"\n.endm', 2, 3, ".incbin"),
    ('/* a\n# b */ .incbin "x"', 2, 8, ".incbin"),
    ('.ascii "//" ; .incbin "x"', 1, 15, ".incbin"),
    ('.space 0x100001', 1, 1, ".space"),
    ('.fill 300000, 8, 0', 1, 1, ".fill"),
    ('.zero 2*1024*1024', 1, 1, ".zero"),
    ('.skip (1<<20)+1', 1, 1, ".skip"),
    ('.ds.l 300000', 1, 1, ".ds.l"),
])
def test_forbidden_directives(src: str, line: int, column: int, name: str) -> None:
    result = syntax.check_directives(src)
    assert result is not None and not result.passed
    assert result.kind is ErrorKind.forbidden_directive
    first = result.details.errors[0]
    assert (first.line, first.column, first.directive) == (line, column, name)
    assert name in result.message


@pytest.mark.parametrize("src", [
    '// .incbin "/etc/passwd"',
    'nop // .include "x"',
    '/* .incbin "x" */ nop',
    '# .incbin "x"',
    '   # .include "x"',
    '.ascii ".incbin \\"x\\"; .include"',
    ".byte ';', 1",
    '.macro m n\n.rept \\n\nnop\n.endr\n.endm\nm 4',
    '.irp r, x0, x1\nmov \\r, #0\n.endr',
    ".arch armv9-a+sme\n.arch_extension sve2\n.cpu neoverse-v2",
    '.space 1<<20\n.fill 1024, 8, 0\n.zero n',
])
def test_allowed_text_passes_directive_screen(src: str) -> None:
    assert syntax.check_directives(src) is None


def test_macro_built_include_leaks_nothing(tmp_path: Path, scratch: Path) -> None:
    """Directive names spelled through macros get past the text screen; the sandbox stops them."""
    secret = f"host-secret-{uuid.uuid4().hex}"
    host_file = tmp_path / "secret.txt"
    host_file.write_text(secret + "\n")
    kernel_release = os.uname().release
    src = (
        '.macro m d, p\n .\\d "\\p"\n.endm\n'
        '.macro m2 p\n .inc\\()bin "\\p"\n.endm\n'
        f'.data\n m incbin "{host_file}"\n'
        f' m include "{host_file}"\n'
        ' m incbin "/etc/hostname"\n'
        ' m include "/proc/version"\n'
        ' m2 "/etc/passwd"\n'
    )
    assert syntax.check_directives(src) is None  # documented: the sandbox's job
    result, obj = syntax.assemble(src, scratch, settings=get_settings())
    assert not result.passed and obj is None
    assert result.kind is ErrorKind.assemble_error
    messages = [e.message for e in result.details.errors]
    # the sandbox has no /etc, /proc or host temp files: every read fails, nothing is shown
    assert all("not found" in m or "can't open" in m for m in messages), messages
    no_host_paths(result, secret, kernel_release, Path("/etc/hostname").read_text().strip())


# ----------------------------------------------------------------------------- budgets


def test_rept_bomb_hits_the_budget(scratch: Path) -> None:
    start = time.monotonic()
    result, obj = syntax.assemble(".rept 100000000\n nop\n.endr\n", scratch,
                                  Settings(assemble_timeout_s=5))
    assert time.monotonic() - start < 5
    assert not result.passed and obj is None
    assert result.kind is ErrorKind.assemble_error
    assert result.message == syntax.BUDGET_MESSAGE


def test_slow_nested_rept_hits_the_time_budget(scratch: Path) -> None:
    src = ".rept 100000\n.rept 100000\n.endr\n.endr\n"
    start = time.monotonic()
    result, obj = syntax.assemble(src, scratch, Settings(assemble_timeout_s=1))
    assert time.monotonic() - start < 5
    assert result.kind is ErrorKind.assemble_error and obj is None
    assert result.message == syntax.BUDGET_MESSAGE


def test_output_size_budget(scratch: Path) -> None:
    src = ".data\n.rept 64\n.space 1<<20\n.endr\n"
    result, obj = syntax.assemble(src, scratch, Settings(assemble_timeout_s=5))
    assert result.kind is ErrorKind.assemble_error and obj is None
    assert result.message == syntax.BUDGET_MESSAGE


# ----------------------------------------------------------------------------- input limits


@pytest.mark.parametrize(("text", "needle"), [
    ("", "empty"),
    (" \n\t\n", "empty"),
    ("nop\0\n", "NUL"),
    (b"nop // \xff\xfe\n", "UTF-8"),
    ("nop // \ud800\n", "UTF-8"),
    ("nop\n" * 11, "lines"),
    ("x" * 101, "bytes"),
])
def test_input_limits(text: str | bytes, needle: str) -> None:
    settings = Settings(max_source_lines=10, max_source_bytes=100)
    result = syntax.check_input(text, settings)
    assert result is not None and not result.passed
    assert result.kind is ErrorKind.input_rejected
    assert needle in result.message


@pytest.mark.parametrize("text", ["x" * 101, "nop\0\n", "nop // \ud800\n", "nop\n" * 11,
                                  " \n\t\n", "nop\n"])
def test_the_api_and_the_input_gate_share_one_check(text: str) -> None:
    """The API refuses early (413/422, before storing) exactly the problems the core marks
    so, with the input gate's own message; the others it stores for the gate to judge."""
    from api.submit import _problem
    from store.attempts import NewAttempt

    settings = Settings(max_source_lines=10, max_source_bytes=100)
    found = limits.input_problem(text, settings)
    gate = syntax.check_input(text, settings)
    assert (gate.message if gate else None) == (found.message if found else None)
    api = _problem(NewAttempt(variant_id="relu_n64_float32", assembly=text), settings)
    if found is not None and found.refused_early:
        assert api == (413 if found.limit == "size" else 422, found.message)
    else:
        assert api is None


def test_input_within_limits() -> None:
    settings = Settings(max_source_lines=10, max_source_bytes=100)
    assert syntax.check_input("nop\n" * 10, settings) is None
    assert syntax.check_input("nop // é\n".encode(), settings) is None
    assert syntax.check_input(VEC_ADD_NEON, settings=get_settings()) is None


# ----------------------------------------------------------------------------- whole gate


def test_the_pipeline_runs_the_steps_in_order_each_under_its_own_name() -> None:
    """Input limits, the directive screen and the assembler, as verify() runs them: a result
    carries its gate's name whether it passed or failed."""
    from toolchain.verify import verify
    refused = verify("vec_add_n1024_float32", b'.incbin "/etc/passwd"\n', 1,
                     settings=get_settings())
    assert [(g.name, g.passed) for g in refused.gates] == [
        ("input", True), ("variant", True), ("directives", False)]
    assert refused.error_kind is ErrorKind.forbidden_directive
    rejected = verify("vec_add_n1024_float32", b"\xff", 1, settings=get_settings())
    assert [(g.name, g.passed) for g in rejected.gates] == [("input", False)]
    assert rejected.error_kind is ErrorKind.input_rejected and rejected.gates[0].seconds > 0
    broken = verify("vec_add_n1024_float32", "kernel:\n    fadd.x v0, v1\n", 1,
                    settings=get_settings())
    assert [(g.name, g.passed) for g in broken.gates][-1] == ("syntax", False)
    assert broken.error_kind is ErrorKind.assemble_error


def test_missing_assembler_is_an_infra_error(tmp_path: Path, scratch: Path) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from toolchain.errors import InfraError\n"
        "from toolchain.gates import syntax\n"
        "from toolchain.settings import get_settings\n"
        "try:\n"
        "    syntax.assemble('nop\\n', Path(sys.argv[1]), get_settings())\n"
        "except InfraError as exc:\n"
        "    print('infra:', exc); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    env = {"PATH": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, str(scratch)], env=env,
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"infra: .*as is not installed", out.stdout)
