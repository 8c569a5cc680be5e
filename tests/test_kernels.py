"""Tests of the kernel suite (MISSION §3): size, ids, signatures, split, and that the C is real.

The compile check uses the real cross compilers; a missing compiler is a failure, not a skip,
because a suite that was never compiled cannot be trusted as a baseline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from toolchain.kernels import (
    DType,
    Tolerance,
    Variant,
    filter_variants,
    get,
    odd_shaped,
    suite,
    templates,
)
from toolchain.kernels.split import split_of
from toolchain.kernels.templates import build_all

REQUIRED_TEMPLATES = {
    "vec_add", "dot", "saxpy", "relu", "leaky_relu", "clip", "max_reduce", "l2_norm_sq",
    "popcount", "abs_diff", "prefix_sum", "elementwise_fma", "conv1d_3", "gemv", "transpose",
    "matmul", "softmax_numer", "silu", "gelu_approx", "layernorm", "cosine_similarity",
    "quantize", "dequantize", "rmsnorm", "argmax", "sum_reduce", "min_reduce",
}  # fmt: skip
MATRIX_TEMPLATES = {"gemv", "transpose", "matmul"}
DTYPES = "float16|float32|float64|int8|int32|int64|uint32"
ID_RE = re.compile(
    rf"^(?P<template>[a-z][a-z0-9_]*?)_(?:m(?P<m>\d+)_)?n(?P<n>\d+)(?:_k(?P<k>\d+))?"
    rf"_(?P<dtype>{DTYPES})$"
)
POW2_SIZES = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096}
POW2_SIDES = {4, 8, 16, 32}
SIZES = POW2_SIZES | {17, 100, 1000, 1023, 4095}
SIDES = POW2_SIDES | {5, 7, 9, 12, 13, 17, 31}
LIBM = {"exp", "tanh", "sqrt", "round", "fabs", "log", "pow", "fma", "floor", "ceil", "rint"}

CLANG = [
    sys.executable, "-m", "ziglang", "clang", "--target=aarch64-linux-gnu",
    "-mcpu=neoverse-v2", "-O3", "-fwrapv", "-fno-addrsig", "-S",
    "-isystem", "/usr/aarch64-linux-gnu/include", "-Wall", "-Wextra", "-Werror",
]  # fmt: skip
GCC = [
    "aarch64-linux-gnu-gcc", "-O3", "-mcpu=demeter", "-fwrapv", "-S",
    "-Wall", "-Wextra", "-Werror",
]  # fmt: skip


def test_templates_cover_the_mission() -> None:
    """§3 names every family; all of them must exist under exactly these names."""
    names = templates()
    assert len(names) >= 24
    assert set(names) >= REQUIRED_TEMPLATES
    assert list(names) == sorted(names)


def test_suite_size_and_balance() -> None:
    """At least 800 variants, and no template dominates training."""
    variants = suite()
    assert 800 <= len(variants) <= 1700
    per_template = Counter(v.template for v in variants)
    assert set(per_template) == set(templates())
    assert max(per_template.values()) <= 150


def test_suite_is_cached_sorted_and_deterministic() -> None:
    """The C text is hashed into caches, so rebuilding must give identical variants."""
    variants = suite()
    assert suite() is variants
    assert [v.id for v in variants] == sorted(v.id for v in variants)
    rebuilt = sorted(build_all(), key=lambda v: v.id)
    assert [v.to_json() for v in rebuilt] == [v.to_json() for v in variants]


def test_ids_unique_and_grammatical() -> None:
    """Ids are parsed by people and tools; they must match params, dtype and template."""
    ids = [v.id for v in suite()]
    assert len(set(ids)) == len(ids)
    for v in suite():
        match = ID_RE.match(v.id)
        assert match, v.id
        assert match["template"] == v.template
        assert match["dtype"] == v.dtype.value
        parsed = {key: int(match[key]) for key in ("m", "n", "k") if match[key]}
        assert parsed == v.params, v.id
        if v.template in MATRIX_TEMPLATES:
            assert "m" in v.params and set(v.params.values()) <= SIDES, v.id
            assert all(4 <= side <= 32 for side in v.params.values()), v.id
            assert ("k" in v.params) == (v.template == "matmul"), v.id
        else:
            assert set(v.params) == {"n"} and v.params["n"] in SIZES, v.id
            assert 16 <= v.params["n"] <= 4096, v.id


def _power_of_two_shaped(v: Variant) -> bool:
    sides = POW2_SIDES if v.template in MATRIX_TEMPLATES else POW2_SIZES
    return set(v.params.values()) <= sides


#: The suite as it was before odd sizes were added: 1081 variants, 105 of them eval. Trainers,
#: stored attempts and baseline caches refer to these ids, so none may move, change or vanish.
EXISTING_COUNT, EXISTING_EVAL = 1081, 105
#: sha256 over `json.dumps(v.to_json(), sort_keys=True)` of those variants, one per line, by id.
EXISTING_DIGEST = "01330f83401690d0ee8c05211d0cb942565f8534c09934796e99eeed3e503544"
EXISTING_SAMPLE = [
    ("transpose_m32_n16_float64", "train"), ("matmul_m8_n16_k4_float64", "train"),
    ("prefix_sum_n2048_int32", "train"), ("elementwise_fma_n256_float32", "train"),
    ("relu_n256_float32", "eval"), ("abs_diff_n2048_float32", "train"),
    ("relu_n128_int8", "train"), ("transpose_m4_n16_int32", "train"),
    ("matmul_m8_n4_k16_float32", "train"), ("sum_reduce_n4096_int64", "train"),
    ("matmul_m16_n4_k32_float64", "train"), ("abs_diff_n1024_int32", "train"),
    ("elementwise_fma_n4096_float16", "train"), ("softmax_numer_n32_float32", "train"),
    ("quantize_n512_float32", "train"), ("gemv_m16_n4_int32", "train"),
    ("popcount_n16_uint32", "train"), ("leaky_relu_n128_float32", "train"),
    ("clip_n1024_int32", "train"), ("layernorm_n1024_float32", "train"),
    ("clip_n32_int8", "eval"), ("vec_add_n256_int8", "train"),
    ("min_reduce_n64_int64", "train"), ("saxpy_n1024_float16", "train"),
]  # fmt: skip


def test_existing_variants_and_their_split_are_unchanged() -> None:
    """Adding odd sizes appended variants; every earlier one keeps its id, split and content."""
    existing = [v for v in suite() if _power_of_two_shaped(v)]
    assert len(existing) == EXISTING_COUNT
    assert sum(v.split == "eval" for v in existing) == EXISTING_EVAL
    blob = "\n".join(json.dumps(v.to_json(), sort_keys=True) for v in existing)
    assert hashlib.sha256(blob.encode()).hexdigest() == EXISTING_DIGEST
    for variant_id, split in EXISTING_SAMPLE:
        assert get(variant_id).split == split_of(variant_id) == split, variant_id


def test_odd_sizes_cover_every_template_and_dtype() -> None:
    """Tails are the commonest bug of hand-vectorised code: every (template, dtype) has them."""
    variants = suite()
    odd = [v for v in variants if not _power_of_two_shaped(v)]
    assert odd == [v for v in variants if odd_shaped(v)]
    assert len(variants) == EXISTING_COUNT + len(odd) == 1596
    pairs = {(v.template, v.dtype) for v in variants}
    assert {(v.template, v.dtype) for v in odd} == pairs
    for v in odd:
        if v.template in MATRIX_TEMPLATES:
            assert any(side % 2 for side in v.params.values()), v.id
        else:
            assert v.params["n"] in {17, 100, 1000, 1023, 4095}, v.id


@pytest.mark.parametrize(
    ("variant_id", "prototype"),
    [
        (
            "vec_add_n1024_float32",
            "void kernel(float *restrict a, const float *restrict b, const float *restrict c)",
        ),
        ("dot_n64_int8", "int32_t kernel(const int8_t *restrict a, const int8_t *restrict b)"),
        ("dot_n64_float64", "double kernel(const double *restrict a, const double *restrict b)"),
        (
            "saxpy_n16_float32",
            "void kernel(float alpha, const float *restrict x, float *restrict y)",
        ),
        (
            "saxpy_n256_float16",
            "void kernel(_Float16 alpha, const _Float16 *restrict x, _Float16 *restrict y)",
        ),
        ("relu_n128_int32", "void kernel(int32_t *restrict y, const int32_t *restrict x)"),
        ("relu_n64_float16", "void kernel(_Float16 *restrict y, const _Float16 *restrict x)"),
        ("max_reduce_n256_float32", "float kernel(const float *restrict x)"),
        ("popcount_n64_uint32", "unsigned kernel(const uint32_t *restrict x)"),
        ("argmax_n32_float32", "int32_t kernel(const float *restrict x)"),
        (
            "quantize_n1024_float32",
            "void kernel(int8_t *restrict y, const float *restrict x, float scale)",
        ),
        (
            "dequantize_n1024_float32",
            (
                "void kernel(float *restrict y, const int8_t *restrict x, float scale, "
                "int32_t zero_point)"
            ),
        ),
    ],
)
def test_core_signatures(variant_id: str, prototype: str) -> None:
    """The core families' prototypes are fixed by §3; trainers call them by these names."""
    v = get(variant_id)
    assert v.signature.c_prototype() == prototype
    assert f"\n{prototype}\n{{\n" in v.c_source


def test_core_signature_details() -> None:
    """Roles, lengths and return types are what the harness generator relies on."""
    dot8 = get("dot_n64_int8")
    assert dot8.dtype is DType.int8 and dot8.signature.ret is DType.int32
    assert [(a.name, a.role, a.length) for a in dot8.signature.args] == [
        ("a", "in", 64),
        ("b", "in", 64),
    ]
    saxpy = get("saxpy_n16_float32")
    assert [(a.pointer, a.role, a.length) for a in saxpy.signature.args] == [
        (False, "in", 0),
        (True, "in", 16),
        (True, "inout", 16),
    ]
    assert get("popcount_n64_uint32").signature.ret is DType.uint32
    assert get("vec_add_n1024_float32").signature.args[0].role == "out"
    conv = get("conv1d_3_n16_float32")
    assert [a.length for a in conv.signature.args] == [16, 18, 3]
    mm = get("matmul_m4_n8_k16_float32")
    assert [(a.name, a.length) for a in mm.signature.args] == [("c", 32), ("a", 64), ("b", 128)]
    gemv = get("gemv_m8_n16_float64")
    assert [(a.name, a.length) for a in gemv.signature.args] == [("y", 8), ("a", 128), ("x", 16)]
    assert get("transpose_m8_n16_int32").signature.args[0].length == 128


def test_prototype_in_source_for_every_variant() -> None:
    """The source's prototype is generated from the signature, so they can never disagree."""
    for v in suite():
        proto = v.signature.c_prototype()
        assert v.c_source.count(" kernel(") == 1, v.id
        assert f"\n{proto}\n{{\n" in v.c_source, v.id


def test_sources_are_well_formed() -> None:
    """One-line semantic comment first; restrict pointers, const inputs, only needed headers."""
    for v in suite():
        src = v.c_source
        first = src.splitlines()[0]
        assert first.startswith(f"/* {v.template}: ") and first.endswith(" */"), v.id
        for arg in v.signature.args:
            if arg.pointer:
                assert arg.length > 0, v.id
                assert (arg.role == "in") == arg.c_decl().startswith("const "), v.id
            else:
                assert arg.length == 0 and arg.role == "in", v.id
        assert ("#include <math.h>" in src) == bool(v.math_functions or "isnan(" in src), v.id
        uses_stdint = re.search(r"\bu?int(8|32|64)_t\b", src) is not None
        assert ("#include <stdint.h>" in src) == uses_stdint, v.id
        assert not re.search(r"#include <(?!math\.h|stdint\.h)", src), v.id


def test_trip_counts_are_literal_constants() -> None:
    """Every loop is `for (int v = <lit>; v < <literal or #define of a literal>; v++)`."""
    loop_re = re.compile(r"for \(int (\w+) = \d+; \1 < (\w+); \1\+\+\)")
    for v in suite():
        src = v.c_source
        defines = dict(re.findall(r"^#define (\w+) (\S+)$", src, re.MULTILINE))
        assert all(value.isdigit() for value in defines.values()), v.id
        assert {name.lower() for name in defines} == set(v.params), v.id
        assert all(int(defines[k.upper()]) == val for k, val in v.params.items()), v.id
        assert src.count("for (") == len(loop_re.findall(src)) >= 1, v.id
        for _, bound in loop_re.findall(src):
            assert bound.isdigit() or bound in defines, (v.id, bound)
        assert not re.search(r"\b(while|do|goto)\b", src), v.id


def test_math_functions_match_calls() -> None:
    """The object gate allows exactly these undefined symbols, so the list must be exact."""
    for v in suite():
        code = re.sub(r"/\*.*?\*/", "", v.c_source, flags=re.DOTALL)
        called = {
            name
            for name in re.findall(r"\b([a-z_]\w*)\s*\(", code)
            if name.rstrip("f") in LIBM or name in LIBM
        }
        assert called == set(v.math_functions), v.id
        suffix = "f" if v.dtype is DType.float32 else ""
        assert all(fn.endswith(suffix) for fn in v.math_functions), v.id


def test_tolerances_and_reduction_flags() -> None:
    """Tolerance bounds follow the Tolerance docstring; integers compare exactly."""
    expected_terms = {
        "dot": "n", "sum_reduce": "n", "l2_norm_sq": "n", "cosine_similarity": "n",
        "prefix_sum": "n", "layernorm": "n", "rmsnorm": "n", "gemv": "n", "matmul": "k",
    }  # fmt: skip
    ulps = {"silu": 16, "gelu_approx": 16, "softmax_numer": 16}
    ulps.update({"rmsnorm": 4, "layernorm": 4, "cosine_similarity": 4})
    reductions = set(expected_terms)
    for v in suite():
        assert v.reduction == (v.template in reductions), v.id
        if not v.dtype.is_float:
            assert v.tolerance == Tolerance(), v.id
            continue
        if v.template in expected_terms:
            terms = v.params[expected_terms[v.template]]
        else:
            terms = 3 if v.template == "conv1d_3" else 0
        assert v.tolerance.terms == terms, v.id
        assert v.tolerance.ulps == ulps.get(v.template, 0), v.id


def test_dtypes_per_template() -> None:
    """float16 only where it is element-wise; transcendental families are float32/float64."""
    dtypes: dict[str, set[str]] = {}
    for v in suite():
        dtypes.setdefault(v.template, set()).add(v.dtype.value)
    float16 = {t for t, ds in dtypes.items() if "float16" in ds}
    assert float16 == {
        "vec_add", "saxpy", "relu", "leaky_relu", "clip", "abs_diff", "elementwise_fma",
    }  # fmt: skip
    for t in ("softmax_numer", "silu", "gelu_approx", "layernorm", "rmsnorm",
              "cosine_similarity", "quantize", "dequantize"):  # fmt: skip
        assert dtypes[t] == {"float32", "float64"}, t
    assert dtypes["popcount"] == {"uint32"}
    assert "int8" in dtypes["dot"]
    assert set().union(*dtypes.values()) == set(DTYPES.split("|"))


def test_split_is_hash_based_and_about_ten_percent() -> None:
    """The split depends only on the id, so adding templates never moves a variant."""
    variants = suite()
    for v in variants:
        digest = hashlib.sha256(v.id.encode()).digest()
        expected = "eval" if int.from_bytes(digest[:8], "big") % 1000 < 100 else "train"
        assert v.split == expected == split_of(v.id), v.id
    share = sum(v.split == "eval" for v in variants) / len(variants)
    assert 0.05 <= share <= 0.15
    assert split_of("not_a_template_n16_float32") == split_of("not_a_template_n16_float32")


def test_get_and_filter() -> None:
    """Lookup by id and the /tasks filters."""
    v = get("vec_add_n1024_float32")
    assert isinstance(v, Variant) and v.template == "vec_add"
    with pytest.raises(KeyError, match="no_such_kernel_n16_float32"):
        get("no_such_kernel_n16_float32")
    assert len(filter_variants()) == len(suite())
    dots = filter_variants(template="dot", dtype="int8")
    assert dots and all(d.template == "dot" and d.dtype is DType.int8 for d in dots)
    assert filter_variants(dtype=DType.float16) == filter_variants(dtype="float16")
    evals = filter_variants(split="eval", difficulty=3)
    assert evals and all(e.split == "eval" and e.difficulty == 3 for e in evals)
    assert {v.difficulty for v in suite()} == {1, 2, 3}


def _compile(source: str, compiler: list[str]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.c")
        with open(path, "w") as f:
            f.write(source)
        result = subprocess.run(
            [*compiler, "-o", os.devnull, path],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if result.returncode != 0 or result.stderr.strip():
        return f"{compiler[0]} {compiler[2] if compiler[0] == sys.executable else ''}: " + (
            result.stderr.strip() or f"exit {result.returncode}"
        )
    return ""


def test_sources_compile_warning_free_with_both_compilers() -> None:
    """One power-of-two and one odd variant per (template, dtype), both compilers, -Werror."""
    assert shutil.which(GCC[0]), f"{GCC[0]} not found: the compile check cannot run"
    probe = subprocess.run([*CLANG[:4], "--version"], capture_output=True, text=True, check=False)
    assert probe.returncode == 0, f"python3 -m ziglang clang unavailable: {probe.stderr}"
    picked: dict[tuple[str, DType, bool], Variant] = {}
    for v in suite():
        picked.setdefault((v.template, v.dtype, _power_of_two_shaped(v)), v)
    jobs = [(v, cc) for v in picked.values() for cc in (CLANG, GCC)]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        errors = list(pool.map(lambda job: _compile(job[0].c_source, job[1]), jobs))
    failures = [f"{v.id}: {err}" for (v, _), err in zip(jobs, errors, strict=True) if err]
    assert not failures, "\n".join(failures)
