"""Shared fixtures: real tools, real sandbox, a private cache per test session."""

from __future__ import annotations

import os

import pytest

# Tests judge the gates, so they verify for real: the verdict cache would otherwise answer a
# test from an earlier one with the same input. The cache's own tests switch it on explicitly.
os.environ.setdefault("ARMGYM_VERDICT_CACHE", "0")

from toolchain import baselines, kernels
from toolchain.settings import get_settings
from toolchain.verdict import Verdict
from toolchain.verify import verify

HONEST = "relu_n64_float32"
# The body of a plain NEON vec_add over 1024 floats, shared by the gate tests.
VEC_ADD_1024_BODY = """\
    mov     x3, #0
1:  ldr     q0, [x1, x3]
    ldr     q1, [x2, x3]
    fadd    v0.4s, v0.4s, v1.4s
    str     q0, [x0, x3]
    add     x3, x3, #16
    cmp     x3, #4096
    b.ne    1b
"""
VEC_ADD_1024_LOOP = VEC_ADD_1024_BODY + "    ret\n"


def asm(body: str) -> str:
    """A complete one-function assembly file around `body`."""
    return f"    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n{body}\n"


def baseline(variant_id: str, compiler: str = "clang") -> str:
    return baselines.get(kernels.get(variant_id), compiler, settings=get_settings()).assembly


def check(variant_id: str, text: str, seed: int = 11) -> Verdict:
    return verify(variant_id, text, seed, settings=get_settings())


@pytest.fixture
def still_serving():
    """After a hostile submission, the same process must still verify honest code."""
    yield
    verdict = check(HONEST, baseline(HONEST))
    assert verdict.passed, verdict.message


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """The fault tests' matrix (tests/faults), when they ran."""
    from faults.matrix import summary

    summary(terminalreporter)
