"""Shared fixtures: real tools, real sandbox, a private cache per test session."""

from __future__ import annotations

import pytest

from toolchain import baselines, kernels
from toolchain.verdict import Verdict
from toolchain.verify import verify

HONEST = "relu_n64_float32"


def asm(body: str) -> str:
    """A complete one-function assembly file around `body`."""
    return f"    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n{body}\n"


def baseline(variant_id: str, compiler: str = "clang") -> str:
    return baselines.get(kernels.get(variant_id), compiler).assembly


def check(variant_id: str, text: str, seed: int = 11) -> Verdict:
    return verify(variant_id, text, seed)


@pytest.fixture
def still_serving():
    """After a hostile submission, the same process must still verify honest code."""
    yield
    verdict = check(HONEST, baseline(HONEST))
    assert verdict.passed, verdict.message
