"""Gate 3 against the real assembler, linker and emulator: honest code passes, wrong code fails."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import asm, baseline, check

from toolchain import baselines, kernels
from toolchain.errors import ErrorKind
from toolchain.execution import reference
from toolchain.gates.correctness.compare import first_mismatch
from toolchain.kernels.model import DType, Tolerance
from toolchain.settings import get_settings

ONE_PER_FAMILY = sorted({(v.template, v.dtype): v.id for v in kernels.suite()
                         if v.params.get("n", 0) <= 256}.values())


@pytest.mark.parametrize("compiler", baselines.COMPILERS)
@pytest.mark.parametrize("variant_id", ONE_PER_FAMILY)
def test_baselines_pass_every_gate(variant_id: str, compiler: str) -> None:
    verdict = check(variant_id, baseline(variant_id, compiler))
    assert verdict.passed, f"{verdict.error_kind}: {verdict.message}"
    assert [g.name for g in verdict.gates][:6] == ["input", "variant", "directives", "syntax",
                                                   "object", "correctness"]


# (variant, C text to find, replacement, what the mutant gets wrong)
C_MUTANTS = [
    ("dot_n64_float32", "float s = 0.0f;", "float s = 1.0f;", "wrong constant"),
    ("dot_n64_float32", "i < N;", "i <= N;", "off-by-one trip count"),
    ("vec_add_n256_int32", "i < N;", "i < N - 1;", "last element skipped"),
    ("vec_add_n256_int32", "b[i] + c[i]", "b[i] - c[i]", "wrong operation"),
    ("max_reduce_n128_int32", "x[i] > m", "x[i] < m", "wrong operation"),
    ("saxpy_n256_float32", "alpha * x[i] + y[i]", "alpha * x[i] - y[i]", "wrong operation"),
    ("relu_n64_float32", ": 0.0f;", ": 0.5f;", "wrong constant"),
    ("gemv_m8_n16_float32", "j < N;", "j < N - 1;", "last element skipped"),
    ("prefix_sum_n64_int32", "int i = 0;", "int i = 1;", "off-by-one start"),
    ("popcount_n256_uint32", "i < N;", "i < N - 1;", "last element skipped"),
    ("matmul_m4_n8_k16_float32", "p < K;", "p < K - 1;", "off-by-one trip count"),
    ("conv1d_3_n64_float32", "w[2] * x[i + 2]", "w[2] * x[i + 1]", "wrong operand"),
    ("clip_n64_int32", "hi ? hi", "hi ? lo", "wrong operand"),
    ("quantize_n64_float32", "y[i] = 127;", "y[i] = 126;", "wrong constant"),
    ("argmax_n64_float32", "best = i;", "best = i - 1;", "wrong constant"),
    ("layernorm_n64_float32", "1e-5f", "1e-2f", "wrong constant"),
    ("dot_n64_int8", "i < N;", "i < N - 1;", "last element skipped"),
]


@pytest.mark.parametrize(("variant_id", "find", "replace", "why"), C_MUTANTS)
def test_mutants_are_wrong_output(variant_id: str, find: str, replace: str, why: str) -> None:
    variant = kernels.get(variant_id)
    assert find in variant.c_source
    body = replace.join(variant.c_source.rsplit(find, 1))  # the code, not the summary comment
    mutant = dataclasses.replace(variant, c_source=body)
    text = baselines.compile_variant(mutant, "clang", "-O3")
    verdict = check(variant_id, text)
    assert verdict.error_kind is ErrorKind.wrong_output, (why, verdict.message)


@pytest.mark.parametrize("variant_id", ["vec_add_n1024_float32", "vec_add_n256_int32",
                                        "elementwise_fma_n256_float32", "gemv_m8_n16_int32"])
def test_wrong_register_is_wrong_output(variant_id: str) -> None:
    text = baseline(variant_id)
    op = re.compile(r"^(\s+f?(?:add|mla|mul|sub)\s+v\d+\.\w+,\s*v\d+\.\w+,\s*v)(\d+)", re.MULTILINE)
    match = op.search(text)
    assert match, "no vector add in the baseline"
    other = (int(match.group(2)) + 1) % 8
    mutated = text[: match.start(2)] + str(other) + text[match.end(2):]
    assert check(variant_id, mutated).error_kind is ErrorKind.wrong_output


def _float_bits(value: float) -> int:
    return int(np.array([value], dtype=np.float32).view(np.uint32)[0])


def _return_float(bits: int) -> str:
    return asm(f"    mov w9, #{bits & 0xffff}\n    movk w9, #{bits >> 16}, lsl #16\n"
               "    fmov s0, w9\n    ret")


def test_constant_fitted_to_one_input_is_rejected() -> None:
    variant = kernels.get("dot_n64_float32")
    records = reference(variant, 5, get_settings()).records
    fitted = float(np.frombuffer(records[12].ret, dtype=np.float32)[0])
    verdict = check(variant.id, _return_float(_float_bits(fitted)), seed=5)
    assert verdict.error_kind is ErrorKind.wrong_output
    assert "test 0" in verdict.message  # fails the first test it is not fitted to


SCALAR_4_ACCUMULATORS = asm("""\
    movi v0.2s, #0
    movi v1.2s, #0
    movi v2.2s, #0
    movi v3.2s, #0
    mov x2, #64
1:  ldp s4, s5, [x0], #8
    ldp s6, s7, [x0], #8
    ldp s16, s17, [x1], #8
    ldp s18, s19, [x1], #8
    fmadd s0, s4, s16, s0
    fmadd s1, s5, s17, s1
    fmadd s2, s6, s18, s2
    fmadd s3, s7, s19, s3
    subs x2, x2, #4
    b.ne 1b
    fadd s0, s0, s1
    fadd s2, s2, s3
    fadd s0, s0, s2
    ret""")


def test_reassociated_dot_is_accepted() -> None:
    assert check("dot_n64_float32", SCALAR_4_ACCUMULATORS).passed
    from toolchain.demo import DOT_1024_F32_NEON

    assert check("dot_n1024_float32", DOT_1024_F32_NEON).passed


def _scaled(text: str, bits: int) -> str:
    scale = (f"    mov w9, #{bits & 0xffff}\n    movk w9, #{bits >> 16}, lsl #16\n"
             "    fmov s31, w9\n    fmul s0, s0, s31\n    ret")
    return text.replace("    ret", scale, 1) if "    ret" in text else text


def test_error_beyond_the_bound_is_rejected_and_within_it_only_where_rounding_can_occur() -> None:
    # 1 + 2^-22 is inside the bound of a 64-term sum, so the tests with inexact arithmetic
    # accept it, but one whose inputs are small integers has no rounding to excuse it.
    within = check("dot_n64_float32", _scaled(SCALAR_4_ACCUMULATORS, 0x3F800002))
    assert within.error_kind is ErrorKind.wrong_output
    details = within.gates[-1].details
    assert details.exact and details.test_name in ("alternating_signs", "small_integers")
    # 1 + 2^-10 is far outside it: rejected on the first test that has any rounding (denormals)
    verdict = check("dot_n64_float32", _scaled(SCALAR_4_ACCUMULATORS, 0x3F802000))
    assert verdict.error_kind is ErrorKind.wrong_output
    assert "bound" in verdict.message and verdict.gates[-1].details.test == 2


def test_same_inputs_give_byte_identical_verdicts() -> None:
    text = baseline("saxpy_n256_float32", "gcc")
    first, second = check("saxpy_n256_float32", text, 99), check("saxpy_n256_float32", text, 99)
    assert first.canonical() == second.canonical()
    wrong = text.replace("fmla", "fmls", 1)
    a, b = check("saxpy_n256_float32", wrong, 99), check("saxpy_n256_float32", wrong, 99)
    assert a.canonical() == b.canonical() and not a.passed
    # and in a fresh process, through the CLI
    out = subprocess.run(
        [sys.executable, "-m", "toolchain.cli", "verify", "saxpy_n256_float32", "-", "--seed",
         "99", "--json"], input=text.encode(), capture_output=True, check=True)
    other = json.loads(out.stdout)
    other.pop("timings")
    assert json.dumps(other, sort_keys=True, separators=(",", ":")) == first.canonical()


def test_seed_changes_the_random_tests_and_is_recorded() -> None:
    variant = kernels.get("vec_add_n64_float32")
    a = reference(variant, 1, get_settings()).records
    b = reference(variant, 2, get_settings()).records
    assert a[0].buffers["b"].data == b[0].buffers["b"].data  # fixed edge case: zeros
    assert a[15].buffers["b"].data != b[15].buffers["b"].data  # random case
    assert check(variant.id, baseline(variant.id), seed=1234).seed == 1234


def test_tolerance_logic() -> None:
    f32 = DType.float32
    ref = np.array([1.0, np.nan, np.inf, -0.0], dtype=np.float32).tobytes()
    same = np.array([1.0, np.nan, np.inf, -0.0], dtype=np.float32).tobytes()
    assert first_mismatch(f32, same, ref, None, Tolerance()) is None
    plus_zero = np.array([1.0, np.nan, np.inf, 0.0], dtype=np.float32).tobytes()
    assert first_mismatch(f32, plus_zero, ref, None, Tolerance())[0] == 3  # strict: -0 != +0
    assert first_mismatch(f32, plus_zero, ref, None, Tolerance(terms=4)) is None
    off = np.array([1.0 + 2**-20, np.nan, np.inf, 0.0], dtype=np.float32).tobytes()
    mag = np.array([1.0, 1.0, 1.0, 1.0], dtype=np.float32).tobytes()
    assert first_mismatch(f32, off, ref, mag, Tolerance(terms=4)) is None  # 10 * 2^-24 * 2
    assert first_mismatch(f32, off, ref, mag, Tolerance(terms=1))[0] == 0  # 4 * 2^-24 * 2
    inf_mag = np.array([np.inf] * 4, dtype=np.float32).tobytes()
    assert first_mismatch(f32, off, ref, inf_mag, Tolerance(terms=4))[0] == 0  # no free pass


def test_every_test_has_a_name_and_the_timing_test_is_a_random_one() -> None:
    from toolchain.execution import timing_test
    from toolchain.gates.correctness.compare import RANDOM_TESTS, TEST_NAMES

    tests = get_settings().tests_per_attempt
    assert len(TEST_NAMES) == tests == 31
    assert {timing_test(seed, tests) for seed in range(100)} == set(RANDOM_TESTS)
    assert timing_test(7, 5) == 7 % 5  # fewer tests than the fixed families: any of them
