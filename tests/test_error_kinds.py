"""Each way a kernel can misbehave gets its own error kind, and the verifier keeps serving."""

from __future__ import annotations

import re

import pytest
from conftest import asm, baseline, check

from toolchain.errors import ErrorKind
from toolchain.settings import get_settings

RELU = "relu_n16_float32"  # void kernel(float *y, const float *x), 16 elements = 64 bytes


def relu_then(extra: str) -> str:
    """The honest clang kernel with `extra` run before it."""
    text, count = re.subn(r"^kernel:.*$", lambda m: f"{m.group(0)}\n{extra}", baseline(RELU),
                          count=1, flags=re.MULTILINE)
    assert count == 1
    return text


CASES = [
    ("write past the end", relu_then("    str wzr, [x0, #64]"), ErrorKind.memory_violation),
    ("write before the start", relu_then("    str wzr, [x0, #-4]"), ErrorKind.memory_violation),
    ("write into the caller's frame", relu_then("    str xzr, [sp, #8]"),
     ErrorKind.memory_violation),
    ("x19 not restored", relu_then("    mov x19, #7"), ErrorKind.abi_violation),
    ("d8 not restored", relu_then("    fmov d8, #1.0"), ErrorKind.abi_violation),
    ("x29 not restored", relu_then("    mov x29, #0"), ErrorKind.abi_violation),
    ("sp not restored", relu_then("    sub sp, sp, #16"), ErrorKind.abi_violation),
    ("rounding mode changed", relu_then("    mov x9, #0x400000\n    msr fpcr, x9"),
     ErrorKind.abi_violation),
    ("const input written", relu_then("    str wzr, [x1]"), ErrorKind.input_modified),
    ("infinite loop", asm("    b ."), ErrorKind.timeout),
    ("null dereference", asm("    mov x0, #0\n    ldr w1, [x0]\n    ret"), ErrorKind.crash),
    ("undefined instruction", asm("    udf #0\n    ret"), ErrorKind.crash),
    ("no kernel symbol", "    .text\n    .globl other\nother:\n    ret\n",
     ErrorKind.object_rejected),
    ("undefined symbol", asm("    b printf"), ErrorKind.object_rejected),
    ("svc", asm("    mov x8, #93\n    svc #0\n    ret"), ErrorKind.object_rejected),
    ("svc as .inst", asm("    .inst 0xd4000001\n    ret"), ErrorKind.object_rejected),
    ("svc as .word in .text", asm("    ret\n    .word 0xd4000001"), ErrorKind.object_rejected),
    ("unknown mnemonic", asm("    fadd.x v0, v1\n    ret"), ErrorKind.assemble_error),
    ("SME instruction", asm("    fmopa za0.s, p0/m, p1/m, z0.s, z1.s\n    ret"),
     ErrorKind.assemble_error),
    ("SME as .inst", asm("    .inst 0x80800000\n    ret"), ErrorKind.object_rejected),
    ("nothing computed", asm("    ret"), ErrorKind.wrong_output),
]


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize(("label", "text", "kind"), CASES, ids=[c[0] for c in CASES])
def test_error_kind(label: str, text: str, kind: ErrorKind) -> None:
    verdict = check(RELU, text)
    assert not verdict.passed
    assert verdict.error_kind is kind, f"{label}: {verdict.error_kind} {verdict.message}"
    assert verdict.message


def test_assemble_error_reports_line_column_message_without_paths() -> None:
    verdict = check(RELU, asm("    mov x0, #1\n    fadd.x v0, v1\n    ret"))
    errors = verdict.gates[-1].details.errors
    assert errors[0].line == 6 and errors[0].column >= 1
    assert "/" not in errors[0].message.replace("p0/m", "")


def test_unknown_variant_and_bad_input() -> None:
    assert check("no_such_kernel_n1_float32", asm("    ret")).error_kind is \
        ErrorKind.unknown_variant
    assert check(RELU, "").error_kind is ErrorKind.input_rejected
    assert check(RELU, "kernel:\n\0ret\n").error_kind is ErrorKind.input_rejected


def test_completion_format() -> None:
    from toolchain.verify import verify

    good = f"Here you go:\n<assembly>\n```asm\n{baseline(RELU)}```\n</assembly>\n"
    assert verify(RELU, good, 3, completion=True, settings=get_settings()).passed
    bad = verify(RELU, "no tags here", 3, completion=True, settings=get_settings())
    assert bad.error_kind is ErrorKind.format_error
    two = verify(RELU, "<assembly>ret</assembly><assembly>ret</assembly>", 3, completion=True,
                 settings=get_settings())
    assert two.error_kind is ErrorKind.format_error
