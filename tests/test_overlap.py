"""Overlapping a verification's tool runs (toolchain/background.py) changes its latency only."""

from __future__ import annotations

import pytest
from conftest import HONEST, asm, baseline

from toolchain.settings import get_settings
from toolchain.verify import verify


@pytest.mark.parametrize("variant,text", [
    (HONEST, baseline(HONEST, "gcc")),
    ("dot_n64_float32", baseline("dot_n64_float32", "clang")),
    (HONEST, asm("    ret")),
    (HONEST, asm("    mov x8, #93\n    svc #0\n    ret")),
    (HONEST, asm("    fadd.x v0, v1")),
], ids=["honest", "honest-dot", "wrong", "svc", "syntax"])
def test_verdict_is_the_same_with_and_without_overlap(variant: str, text: str) -> None:
    settings = get_settings()
    on = verify(variant, text, 4242, settings=settings.replace(overlap=True))
    off = verify(variant, text, 4242, settings=settings.replace(overlap=False))
    assert on.canonical() == off.canonical()
