"""Submissions for the farm's tests: honest compiler output, wrong kernels and hostile input,
each with the outcome it must get. Few distinct variants, so the per-variant reference harness
is built only a handful of times."""

from __future__ import annotations

from dataclasses import dataclass

from toolchain import baselines, kernels
from toolchain.settings import get_settings

VARIANTS = ("relu_n64_float32", "vec_add_n64_float32", "dot_n64_float32", "saxpy_n64_float32")
HEADER = "    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n"


def asm(body: str) -> str:
    return HEADER + body + "\n"


# (label, assembly, expected outcome); a tuple of kinds where more than one is right.
WRONG = (
    ("returns at once", asm("    ret"), ("wrong_output",)),
    ("clobbers x19", asm("    mov x19, #1\n    ret"), ("abi_violation", "wrong_output")),
    ("writes below its output", asm("    str xzr, [x0, #-8]\n    ret"),
     ("memory_violation", "wrong_output")),
)
HOSTILE = (
    ("exit through svc", asm("    mov x8, #93\n    svc #0\n    ret"), ("object_rejected",)),
    ("hypervisor call", asm("    hvc #0\n    ret"), ("object_rejected",)),
    (".incbin a host file", asm('    .incbin "/etc/passwd"\n    ret'), ("forbidden_directive",)),
    (".include a host file", asm('    .include "/etc/hostname"\n    ret'),
     ("forbidden_directive",)),
    (".rept bomb", asm("    .rept 100000000\n    nop\n    .endr\n    ret"),
     ("forbidden_directive", "object_rejected", "assemble_error")),
    ("unknown mnemonic", asm("    fadd.x v0, v1"), ("assemble_error",)),
    ("no kernel symbol", "    .text\nfoo:\n    ret\n", ("object_rejected",)),
)
INFINITE = ("infinite loop", asm("    b ."), ("timeout",))


@dataclass(frozen=True)
class Case:
    label: str
    variant_id: str
    assembly: str
    expect: tuple[str, ...]  # ("pass",) or the acceptable error kinds


def honest(variant_id: str, compiler: str) -> str:
    return baselines.get(kernels.get(variant_id), compiler, settings=get_settings()).assembly


def mixed(n: int, infinite: int = 2) -> list[Case]:
    """n cases: an eighth honest (clang and gcc alternately), an eighth wrong, the rest hostile
    (cheap: most are refused before anything runs), plus `infinite` endless loops (each costs a
    timeout)."""
    cases: list[Case] = []
    for i in range(n - infinite):
        variant = VARIANTS[i % len(VARIANTS)]
        if i % 8 == 0:
            compiler = "clang" if i % 16 else "gcc"
            cases.append(Case(f"{compiler} -O3", variant, honest(variant, compiler), ("pass",)))
        else:
            label, text, expect = WRONG[i // 8 % len(WRONG)] if i % 8 == 1 else \
                HOSTILE[i % len(HOSTILE)]
            cases.append(Case(label, variant, text, expect))
    cases += [Case(INFINITE[0], VARIANTS[0], INFINITE[1], INFINITE[2])] * infinite
    return cases
