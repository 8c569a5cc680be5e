"""The demo set the README's run command scores: honest baselines, broken kernels, a faster one.

Everything is derived from the suite and the compilers at run time, so it stays true as the
suite changes; nothing here hard-codes a verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import baselines, kernels
from .settings import Settings

# Sixteen partial sums (4 vectors x 4 lanes), the reassociation clang refuses without
# -ffast-math; legitimate under the documented tolerance.
DOT_1024_F32_NEON = """\
    .text
    .globl  kernel
    .type   kernel, %function
kernel:
    movi    v0.4s, #0
    movi    v1.4s, #0
    movi    v2.4s, #0
    movi    v3.4s, #0
    mov     x2, #1024
1:  ldp     q4, q5, [x0], #32
    ldp     q6, q7, [x0], #32
    ldp     q16, q17, [x1], #32
    ldp     q18, q19, [x1], #32
    fmla    v0.4s, v4.4s, v16.4s
    fmla    v1.4s, v5.4s, v17.4s
    fmla    v2.4s, v6.4s, v18.4s
    fmla    v3.4s, v7.4s, v19.4s
    subs    x2, x2, #16
    b.ne    1b
    fadd    v0.4s, v0.4s, v1.4s
    fadd    v2.4s, v2.4s, v3.4s
    fadd    v0.4s, v0.4s, v2.4s
    faddp   v0.4s, v0.4s, v0.4s
    faddp   s0, v0.2s
    ret
    .size   kernel, .-kernel
"""

RETURN_ZERO = "    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n    ret\n"
SVC_EXIT = (
    "    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n"
    "    mov x8, #93\n    mov x0, #0\n    svc #0\n    ret\n"
)
CLOBBER_X19 = (
    "    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n"
    "    mov x19, #1\n    movi v0.2d, #0\n    ret\n"
)


@dataclass(frozen=True)
class DemoCase:
    label: str
    variant_id: str
    make: Callable[[Settings], str]  # the submission (baselines come from the settings' cache)
    expect: str  # "pass" or the error kind the case demonstrates


def _baseline(variant_id: str, compiler: str) -> Callable[[Settings], str]:
    return lambda s: baselines.get(kernels.get(variant_id), compiler, settings=s).assembly


def _skip_last(variant_id: str) -> Callable[[Settings], str]:
    """The clang baseline with the loop count one vector short: the last elements are skipped."""

    def make(settings: Settings) -> str:
        text = baselines.get(kernels.get(variant_id), "clang", settings=settings).assembly
        return text.replace("#1024", "#1008", 1)  # one 16-element iteration short

    return make


CASES: tuple[DemoCase, ...] = (
    DemoCase("clang -O3 baseline", "vec_add_n1024_float32", _baseline("vec_add_n1024_float32",
                                                                     "clang"), "pass"),
    DemoCase("gcc -O3 baseline", "vec_add_n1024_float32", _baseline("vec_add_n1024_float32",
                                                                   "gcc"), "pass"),
    DemoCase("clang -O3 baseline", "dot_n1024_float32", _baseline("dot_n1024_float32", "clang"),
             "pass"),
    DemoCase("hand-written NEON, 16 partial sums", "dot_n1024_float32",
             lambda _: DOT_1024_F32_NEON, "pass"),
    DemoCase("loop count short (skips the tail)", "vec_add_n1024_float32",
             _skip_last("vec_add_n1024_float32"), "wrong_output"),
    DemoCase("returns without computing", "dot_n1024_float32", lambda _: RETURN_ZERO,
             "wrong_output"),
    DemoCase("exit through a system call", "dot_n1024_float32", lambda _: SVC_EXIT,
             "object_rejected"),
    DemoCase("clobbers callee-saved x19", "dot_n1024_float32", lambda _: CLOBBER_X19,
             "abi_violation"),
    DemoCase("unknown mnemonic", "relu_n256_float32", lambda _: "kernel:\n    fadd.x v0, v1\n",
             "assemble_error"),
)
