"""The execution guard (execution/guard.py): real emulator, real plugin, real links.

The hostile corpus (test_hostile.py, category foreign-code and the host-syscall cases) holds the
attacks; here: what the guard allows (math functions and what they call, tail calls), what it
refuses that the corpus does not show, its decoding logic, and that a run without it is an
infrastructure failure, never a verdict on the kernel.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import asm, baseline, check
from test_hostile import link_symbols, movz_sequence

from toolchain import execution, kernels, tools
from toolchain.errors import ErrorKind
from toolchain.execution import guard
from toolchain.gates import syntax
from toolchain.settings import get_settings
from toolchain.verify import verify

MATH_SETS = sorted({v.math_functions: v.id for v in kernels.suite() if v.math_functions}.items())


@pytest.fixture(scope="module")
def linked() -> Iterator[Callable[[str, str], Path]]:
    """link(variant_id, text) -> the scratch directory holding candidate.elf and its map."""
    made: list[Path] = []

    def link(variant_id: str, text: str) -> Path:
        settings = get_settings()
        scratch = Path(tempfile.mkdtemp(prefix="armgym-guard-"))
        made.append(scratch)
        result, obj = syntax.assemble(text, scratch, settings)
        assert obj is not None, result.message
        assert execution.link(kernels.get(variant_id), obj, scratch, settings) is None
        return scratch

    yield link
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def guard_for(scratch: Path, variant_id: str) -> guard.Guard:
    return guard.for_link(scratch, execution.EXE_NAME, execution.MAP_NAME,
                          syntax.OBJECT_NAME, kernels.get(variant_id).math_functions,
                          get_settings().cache_dir)


def address(scratch: Path, name: str) -> int:
    return guard.Image.read(scratch / execution.EXE_NAME).symbol(name)


# --------------------------------------------------------------------------- the plugin


def test_plugin_needs_nothing_but_qemus_plugin_api() -> None:
    """Built freestanding: no C library, so it loads into any qemu of the same plugin API."""
    plugin = guard.plugin_path(get_settings().cache_dir)
    out = subprocess.run([tools.tool("readelf").path, "--dyn-syms", "-d", str(plugin)],
                         capture_output=True, text=True, check=True).stdout
    assert "NEEDED" not in out
    undefined = {ln.split()[-1] for ln in out.splitlines() if " UND " in ln and ln.split()[-1]
                 != "UND"}
    assert undefined and all(name.startswith("qemu_plugin_") for name in undefined), undefined


@pytest.mark.parametrize(("names", "variant_id"), MATH_SETS, ids=[n[0] for n, _ in MATH_SETS])
def test_allowed_code_is_the_math_function_and_what_it_calls(
        names: tuple[str, ...], variant_id: str, linked: Callable[[str, str], Path]) -> None:
    scratch = linked(variant_id, baseline(variant_id, "gcc"))
    watch = guard_for(scratch, variant_id)
    image = guard.Image.read(scratch / execution.EXE_NAME)
    allowed = guard.allowed_functions(image, names, watch.text)
    starts = {f.start for f in allowed}

    def allowed_at(*symbols: str) -> bool:
        return all(image.function_at(image.symbol(n)).start in starts for n in symbols)

    assert allowed_at(*names)
    assert not any(allowed_at(n) for n in ("__memcpy_generic", "write", "main", "ldexp"))
    assert all(not (lo < f.end and f.start < hi) for f in allowed for lo, hi in watch.text)
    if names == ("expf",):
        assert allowed_at("__math_oflowf", "__math_uflowf", "__math_may_uflowf")
    if names == ("tanhf",):
        assert allowed_at("__expm1f")


# A silu over 1024 floats whose loop calls expf(-x) through `bl`, and one that ends in a tail call.
SILU_CALLS = """\
    stp x29, x30, [sp, #-48]!
    mov x29, sp
    stp x19, x20, [sp, #16]
    str x21, [sp, #32]
    str d8, [sp, #40]
    mov x19, x0
    mov x20, x1
    mov x21, #0
1:  ldr s8, [x20, x21, lsl #2]
    fneg s0, s8
    bl expf
    fmov s1, #1.0
    fadd s0, s0, s1
    fdiv s0, s8, s0
    str s0, [x19, x21, lsl #2]
    add x21, x21, #1
    cmp x21, #1024
    b.ne 1b
    ldr x21, [sp, #32]
    ldr d8, [sp, #40]
    ldp x19, x20, [sp, #16]
    ldp x29, x30, [sp], #48
    ret
"""


def test_honest_calls_into_libm_pass() -> None:
    verdict = check("silu_n1024_float32", asm(SILU_CALLS))
    assert verdict.passed, verdict.message


def test_a_jump_into_an_allowed_function_that_returns_to_the_kernel_passes() -> None:
    """`b expf` with the link register set by hand is a call like any other."""
    verdict = check("silu_n1024_float32",
                    asm(SILU_CALLS.replace("    bl expf\n", "    adr x30, 3f\n    b expf\n3:\n")))
    assert verdict.passed, verdict.message


def test_a_math_function_the_variant_does_not_call_is_foreign(
        linked: Callable[[str, str], Path]) -> None:
    """relu may call nothing: libm's ldexp (linked for the harness) is outside code there."""
    probe = linked("relu_n16_float32", asm("    ret\n"))
    ldexp = address(probe, "ldexp")
    body = ("    stp x29, x30, [sp, #-16]!\n" + movz_sequence("x16", ldexp) + "\n    blr x16\n"
            "    ldp x29, x30, [sp], #16\n    ret\n")
    assert address(linked("relu_n16_float32", asm(body)), "ldexp") == ldexp
    verdict = check("relu_n16_float32", asm(body))
    assert verdict.error_kind is ErrorKind.abi_violation, verdict.message
    assert "outside" in verdict.message


def test_an_allowed_function_returning_into_the_harness_is_caught(
        linked: Callable[[str, str], Path]) -> None:
    """expf tail-called with a forged link register: it "returns" into libc's _exit."""
    variant = "silu_n1024_float32"
    text = asm(SILU_CALLS.replace("    ret\n", "@FORGE@\n    b expf\n", 1))
    probe = linked(variant, text.replace("@FORGE@", "    movz x30, #0\n" * 4))
    target = address(probe, "_exit")
    final = text.replace("@FORGE@", movz_sequence("x30", target))
    assert address(linked(variant, final), "_exit") == target
    verdict = check(variant, final)
    assert verdict.error_kind is ErrorKind.abi_violation, verdict.message
    assert "system call" in verdict.message


RELU_16 = """\
    ldp q1, q2, [x1]
    movi v0.2d, #0
    fmaxnm v2.4s, v2.4s, v0.4s
    fmaxnm v1.4s, v1.4s, v0.4s
    stp q1, q2, [x0]
    ldp q1, q2, [x1, #32]
    fmaxnm v1.4s, v1.4s, v0.4s
    fmaxnm v0.4s, v2.4s, v0.4s
    stp q1, q0, [x0, #32]
"""


def test_a_kernel_that_falls_off_its_end_runs_foreign_code() -> None:
    """No `ret`: execution runs on into whatever the link put after the kernel's text. With
    the next section 16-byte aligned, one of four paddings lands on its code without a gap."""
    kinds = {check("relu_n16_float32", asm(RELU_16 + "    nop\n" * pad)).error_kind
             for pad in range(4)}
    assert ErrorKind.abi_violation in kinds and kinds <= {ErrorKind.abi_violation,
                                                          ErrorKind.crash}, kinds


def test_a_kernel_in_thousands_of_sections_is_a_few_ranges(
        linked: Callable[[str, str], Path]) -> None:
    """Aligned .text.N sections leave padding between them, never harness code: one range."""
    parts = ["    b 0f"] + [f"    .section .text.s{i},\"ax\"\n    .p2align 4\n{i}:\n    b {i + 1}f"
                             for i in range(2000)]
    text = asm("\n".join(parts) + f"\n    .section .text.end,\"ax\"\n2000:\n{RELU_16}    ret\n")
    assert len(guard_for(linked("relu_n16_float32", text), "relu_n16_float32").text) == 1
    verdict = check("relu_n16_float32", text)
    assert verdict.passed, verdict.message


# --------------------------------------------------------------------------- no guard, no verdict


@pytest.fixture
def no_cached_plugin() -> Iterator[None]:
    guard.plugin_path.cache_clear()
    yield
    guard.plugin_path.cache_clear()


@pytest.mark.usefixtures("no_cached_plugin")
def test_a_missing_plugin_header_is_infra_error(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setattr(guard, "header_dir", lambda cache_dir: tmp_path / "never-fetched")
    verdict = check("relu_n16_float32", baseline("relu_n16_float32"))
    assert verdict.error_kind is ErrorKind.infra_error
    assert "armgym prepare" in verdict.message


def test_a_plugin_qemu_cannot_load_is_infra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin file qemu refuses: the run has no guard, so there is no verdict."""
    where = Path(tempfile.mkdtemp(prefix="broken-guard-", dir=get_settings().cache_dir))
    try:
        where.chmod(0o755)  # the sandboxed emulator runs as an unprivileged user
        broken = where / "guard.so"
        broken.write_bytes(b"not an ELF shared object")
        broken.chmod(0o755)
        monkeypatch.setattr(guard, "plugin_path", lambda cache_dir: broken)
        verdict = check("relu_n16_float32", baseline("relu_n16_float32"))
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert verdict.error_kind is ErrorKind.infra_error, verdict.message
    assert "without the execution guard" in verdict.message


# --------------------------------------------------------------------------- pure logic


@pytest.mark.parametrize(("word", "pc", "target"), [
    (0x94000010, 0x1000, 0x1040),  # bl .+0x40
    (0x17FFFFFF, 0x1000, 0xFFC),  # b .-4
    (0x54000081, 0x1000, 0x1010),  # b.ne .+16
    (0xB4FFFFE0, 0x1000, 0xFFC),  # cbz x0, .-4
    (0x37000040, 0x1000, 0x1008),  # tbnz w0, #0, .+8
    (0xD65F03C0, 0x1000, None),  # ret
    (0x8B020020, 0x1000, None),  # add x0, x1, x2
])
def test_branch_targets(word: int, pc: int, target: int | None) -> None:
    assert guard._branch_target(pc, word) == target


@pytest.mark.parametrize(("word", "indirect"), [
    (0xD61F0200, True),  # br x16
    (0xD63F0200, True),  # blr x16
    (0xD71F0A11, True),  # braa x16, x17
    (0xD63F0A1F, True),  # blraaz x16
    (0xD65F03C0, False),  # ret
    (0xD65F0BFF, False),  # retaa
    (0x94000010, False),  # bl
])
def test_indirect_branches(word: int, indirect: bool) -> None:
    assert guard._indirect(word) is indirect


def test_violation_lines_need_the_runs_token() -> None:
    watch = guard.Guard(Path("/x"), "abc", 0, 0, ((0, 4),), ())
    ok = b"armgym-guard abc start\narmgym-guard abc end 20 20\n"
    assert guard.violation(watch, ok, 0) is None
    stopped = b"armgym-guard abc start\narmgym-guard abc violation syscall 64\n"
    escape = guard.violation(watch, stopped, guard.STATUS)
    assert escape is not None and escape.kind == ErrorKind.abi_violation
    assert "system call (number 64)" in escape.reason
    forged = b"armgym-guard abc start\narmgym-guard xyz violation outside\n"
    assert guard.violation(watch, forged, guard.STATUS) is None
    with pytest.raises(Exception, match="without the execution guard"):
        guard.violation(watch, b"armgym-guard xyz start\n", 0)


def test_ranges_merge() -> None:
    assert guard.merge([(8, 12), (0, 4), (4, 6), (20, 24)]) == [(0, 6), (8, 12), (20, 24)]


def test_ranges_subtract() -> None:
    assert guard.subtract([(0, 100)], [(10, 20), (90, 120), (40, 40)]) == [(0, 10), (20, 90)]
    assert guard.subtract([(0, 10), (20, 30)], [(0, 30)]) == []


# --------------------------------------------------------------------------- stores

# relu_n16_float32 with a frame of its own: x19 and d8 spilled to its stack, a call counter in its
# own .bss, its own stack written right up to its entry stack pointer, the harness's stack read
# above it (sp+0..sp+63 as it entered are the stack guard, the host's check; above that the
# execution guard stops a store, never a load)
RELU_OWN_FRAME = """\
    stp x29, x30, [sp, #-48]!
    mov x29, sp
    stp x19, x20, [sp, #16]
    str d8, [sp, #32]
    str xzr, [sp, #40]
    adrp x9, calls
    ldr x10, [x9, :lo12:calls]
    add x10, x10, #1
    str x10, [x9, :lo12:calls]
    ldr x19, [sp, #112]
""" + RELU_16 + """\
    ldr d8, [sp, #32]
    ldp x19, x20, [sp, #16]
    ldp x29, x30, [sp], #48
    ret
    .bss
    .p2align 3
calls: .zero 8
"""


@pytest.mark.parametrize("in_process", [True, False], ids=["placed", "ld"])
def test_an_honest_kernel_writing_its_own_frame_and_data_passes(in_process: bool) -> None:
    settings = get_settings().model_copy(update={"link_in_process": in_process})
    verdict = verify("relu_n16_float32", asm(RELU_OWN_FRAME), 11, settings=settings)
    assert verdict.passed, verdict.message


@pytest.mark.parametrize("in_process", [True, False], ids=["placed", "ld"])
@pytest.mark.parametrize(("store", "where"), [
    ("    str x30, [sp, #72]\n", "sp+72 as the kernel entered"),  # the saved return address
    ("    str xzr, [sp, #64]\n", "sp+64 as the kernel entered"),  # the saved frame pointer
    ("    add x9, sp, #400\n    str wzr, [x9, #3]\n", "sp+403"),  # unaligned, further up
    ("@ADDR x9 armgym_cb@\n    str xzr, [x9]\n", "data"),
], ids=["x30", "x29", "above", "call-block"])
def test_a_store_into_the_harness_is_a_memory_violation(in_process: bool, store: str,
                                                          where: str) -> None:
    """The same with either link: the candidate's own data is exempt from the map or the
    placement alike. Storing the value already there changes nothing, and is still refused."""
    settings = get_settings().model_copy(update={"link_in_process": in_process})
    body = store
    if "@ADDR" in store:
        symbols = link_symbols("relu_n16_float32", asm(store.replace(
            "@ADDR x9 armgym_cb@\n", movz_sequence("x9", 0) + "\n")), settings)
        body = store.replace("@ADDR x9 armgym_cb@\n",
                             movz_sequence("x9", symbols["armgym_cb"]) + "\n")
    verdict = verify("relu_n16_float32", asm(RELU_OWN_FRAME.replace("    ret\n", body + "    ret\n",
                                                                  1)), 11, settings=settings)
    assert verdict.error_kind is ErrorKind.memory_violation, verdict.message
    assert where in verdict.message and "test 0" in verdict.message
