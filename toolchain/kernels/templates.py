"""Kernel templates: each one turns (dtype, shape) into a variant's C source and signature.

The C text is generated from the `Signature`, so the prototype in the source is always exactly
`signature.c_prototype()`. Every trip count is a `#define` of a literal (N, M, K), every kernel is
total for all inputs (integer code is compiled with -fwrapv; no division by an integer, no shift,
no float -> int conversion of an out-of-range value), and the text is stable: it is part of the
task shown to the model and its hash is cached.

Argument order follows the core families: outputs first, then inputs, then scalars (saxpy keeps
its BLAS order `alpha, x, y`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from toolchain.kernels.model import Arg, DType, Role, Signature, Tolerance, Variant
from toolchain.kernels.split import split_of

F16, F32, F64 = DType.float16, DType.float32, DType.float64
I8, I32, I64, U32 = DType.int8, DType.int32, DType.int64, DType.uint32

#: Lengths of 1-D kernels: powers of two, then sizes whose tails every vector width and unroll
#: factor sees (17 = 16 + 1, 100 = 4 mod 16 and 32, 1000 = 8 mod 16, 1023 and 4095 = -1 mod 16).
SIZES: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
ODD_SIZES: tuple[int, ...] = (17, 100, 1000, 1023, 4095)
#: Sides of matrices (every power-of-two pair), then odd (m, n) shapes: prime sides, one side
#: 31 = 32 - 1, one even but not a power of two.
SIDES: tuple[int, ...] = (4, 8, 16, 32)
ODD_SHAPES: tuple[tuple[int, int], ...] = ((5, 7), (7, 31), (13, 17), (31, 5), (9, 12))
#: (m, n, k) odd shapes of matmul, each within MATMUL_MAX_MACS.
ODD_MATMUL_SHAPES: tuple[tuple[int, int, int], ...] = (
    (5, 7, 9), (7, 13, 5), (13, 5, 31), (31, 7, 9), (9, 31, 7),
)  # fmt: skip
#: matmul keeps shapes with at most this many multiply-adds, so no template dominates the suite.
MATMUL_MAX_MACS = 2048

FLOATS = (F32, F64)
ELEMENTWISE_FLOATS = (F16, F32, F64)
INTS = (I8, I32, I64)

Shape = dict[str, int]


@dataclass(frozen=True)
class Kernel:
    """What a template builds for one (dtype, shape): everything but the id and the split."""

    summary: str
    args: tuple[Arg, ...]
    body: str
    ret: DType | None = None
    ret_c_type: str | None = None
    math_functions: tuple[str, ...] = ()
    tolerance: Tolerance = field(default_factory=Tolerance)


@dataclass(frozen=True)
class Template:
    """A family of kernels; `build` is called once per (dtype, shape)."""

    name: str
    dtypes: tuple[DType, ...]
    shapes: tuple[Shape, ...]
    difficulty: int
    reduction: bool
    build: Callable[[DType, Shape], Kernel]


# ----------------------------------------------------------------------------- C helpers


def lit(dt: DType, text: str) -> str:
    """A floating literal of type `dt` (`text` must contain a '.' or an exponent)."""
    if dt is F32:
        return f"{text}f"
    if dt is F64:
        return text
    if dt is F16:
        return f"(_Float16){text}f"
    raise ValueError(f"{dt.value} is not a float dtype")


def zero(dt: DType) -> str:
    """The literal 0 of type `dt`."""
    return lit(dt, "0.0") if dt.is_float else "0"


def mathfn(dt: DType, name: str) -> str:
    """The libm function `name` for `dt` (expf for float, exp for double)."""
    if dt is F32:
        return f"{name}f"
    if dt is F64:
        return name
    raise ValueError(f"no libm function for {dt.value}")


def ptr(name: str, dt: DType, length: int, role: Role = "in") -> Arg:
    return Arg(name=name, dtype=dt, pointer=True, length=length, role=role)


def scalar(name: str, dt: DType) -> Arg:
    return Arg(name=name, dtype=dt, pointer=False, length=0, role="in")


def float_tol(dt: DType, terms: int = 0, ulps: int = 0, contract: bool = False) -> Tolerance:
    """Integer outputs compare exactly (the default Tolerance)."""
    return Tolerance(terms=terms, ulps=ulps, contract=contract) if dt.is_float else Tolerance()


def loop(body: str, bound: str = "N", var: str = "i", start: int = 0) -> str:
    """A counted loop over a compile-time bound; `body` is one statement without indentation."""
    return f"    for (int {var} = {start}; {var} < {bound}; {var}++)\n        {body}"


# ------------------------------------------------------------------------ elementwise maps


def vec_add(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="vec_add: a[i] = b[i] + c[i]",
        args=(ptr("a", dt, n, "out"), ptr("b", dt, n), ptr("c", dt, n)),
        body=loop("a[i] = b[i] + c[i];"),
    )


def saxpy(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="saxpy: y[i] = alpha * x[i] + y[i]",
        args=(scalar("alpha", dt), ptr("x", dt, n), ptr("y", dt, n, "inout")),
        body=loop("y[i] = alpha * x[i] + y[i];"),
        tolerance=float_tol(dt, contract=True),
    )


def relu(dt: DType, p: Shape) -> Kernel:
    n, z = p["n"], zero(dt)
    return Kernel(
        summary="relu: y[i] = x[i] > 0 ? x[i] : 0 (NaN -> 0)",
        args=(ptr("y", dt, n, "out"), ptr("x", dt, n)),
        body=loop(f"y[i] = x[i] > {z} ? x[i] : {z};"),
    )


def leaky_relu(dt: DType, p: Shape) -> Kernel:
    n, z = p["n"], zero(dt)
    return Kernel(
        summary="leaky_relu: y[i] = x[i] > 0 ? x[i] : alpha * x[i]",
        args=(ptr("y", dt, n, "out"), ptr("x", dt, n), scalar("alpha", dt)),
        body=loop(f"y[i] = x[i] > {z} ? x[i] : alpha * x[i];"),
    )


def clip(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="clip: y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]) (NaN passes through)",
        args=(ptr("y", dt, n, "out"), ptr("x", dt, n), scalar("lo", dt), scalar("hi", dt)),
        body=loop("y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);"),
    )


def abs_diff(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="abs_diff: y[i] = |a[i] - b[i]|, as a[i] > b[i] ? a[i] - b[i] : b[i] - a[i]",
        args=(ptr("y", dt, n, "out"), ptr("a", dt, n), ptr("b", dt, n)),
        body=loop("y[i] = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];"),
    )


def elementwise_fma(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="elementwise_fma: y[i] = a[i] * b[i] + c[i] (fused or not)",
        args=(ptr("y", dt, n, "out"), ptr("a", dt, n), ptr("b", dt, n), ptr("c", dt, n)),
        body=loop("y[i] = a[i] * b[i] + c[i];"),
        tolerance=float_tol(dt, contract=True),
    )


def dequantize(dt: DType, p: Shape) -> Kernel:
    # The variant's dtype names the float side (dequantize_n1024_float32); the input is int8.
    # zero_point is an int32 scalar argument; x[i] - zero_point wraps under -fwrapv.
    n = p["n"]
    t = dt.c_type
    return Kernel(
        summary=f"dequantize: y[i] = ({t})(x[i] - zero_point) * scale, int8 -> {t}",
        args=(
            ptr("y", dt, n, "out"),
            ptr("x", I8, n),
            scalar("scale", dt),
            scalar("zero_point", I32),
        ),
        body=loop(f"y[i] = ({t})(x[i] - zero_point) * scale;"),
    )


# ------------------------------------------------------------------ reductions and scans


def dot(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    acc = I32 if dt is I8 else dt
    return Kernel(
        summary=f"dot: sum of a[i] * b[i] in index order, accumulated in {acc.c_type}",
        args=(ptr("a", dt, n), ptr("b", dt, n)),
        ret=acc,
        body=(
            f"    {acc.c_type} s = {zero(acc)};\n" + loop("s += a[i] * b[i];") + "\n    return s;"
        ),
        tolerance=float_tol(dt, terms=n),
    )


def sum_reduce(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="sum_reduce: sum of x[i] in index order",
        args=(ptr("x", dt, n),),
        ret=dt,
        body=f"    {dt.c_type} s = {zero(dt)};\n" + loop("s += x[i];") + "\n    return s;",
        tolerance=float_tol(dt, terms=n),
    )


def l2_norm_sq(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="l2_norm_sq: sum of x[i] * x[i] in index order",
        args=(ptr("x", dt, n),),
        ret=dt,
        body=f"    {dt.c_type} s = {zero(dt)};\n" + loop("s += x[i] * x[i];") + "\n    return s;",
        tolerance=float_tol(dt, terms=n),
    )


def _extreme(dt: DType, p: Shape, name: str, op: str) -> Kernel:
    n = p["n"]
    return Kernel(
        summary=f"{name}: m = x[0]; for i >= 1: if (x[i] {op} m) m = x[i]",
        args=(ptr("x", dt, n),),
        ret=dt,
        body=(
            f"    {dt.c_type} m = x[0];\n"
            "    for (int i = 1; i < N; i++)\n"
            f"        if (x[i] {op} m)\n"
            "            m = x[i];\n"
            "    return m;"
        ),
    )


def max_reduce(dt: DType, p: Shape) -> Kernel:
    return _extreme(dt, p, "max_reduce", ">")


def min_reduce(dt: DType, p: Shape) -> Kernel:
    return _extreme(dt, p, "min_reduce", "<")


def argmax(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="argmax: index of the first maximum of x, by x[i] > m (NaN is never greater)",
        args=(ptr("x", dt, n),),
        ret=I32,
        body=(
            f"    {dt.c_type} m = x[0];\n"
            "    int32_t best = 0;\n"
            "    for (int i = 1; i < N; i++) {\n"
            "        if (x[i] > m) {\n"
            "            m = x[i];\n"
            "            best = i;\n"
            "        }\n"
            "    }\n"
            "    return best;"
        ),
    )


def popcount(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="popcount: total number of set bits in x[0..N)",
        args=(ptr("x", dt, n),),
        ret=U32,
        ret_c_type="unsigned",
        body=(
            "    unsigned total = 0;\n"
            + loop("total += (unsigned)__builtin_popcount(x[i]);")
            + "\n    return total;"
        ),
    )


def prefix_sum(dt: DType, p: Shape) -> Kernel:
    n = p["n"]
    return Kernel(
        summary="prefix_sum: inclusive scan, y[i] = x[0] + ... + x[i] in index order",
        args=(ptr("y", dt, n, "out"), ptr("x", dt, n)),
        body=(
            f"    {dt.c_type} s = {zero(dt)};\n"
            "    for (int i = 0; i < N; i++) {\n"
            "        s += x[i];\n"
            "        y[i] = s;\n"
            "    }"
        ),
        tolerance=float_tol(dt, terms=n),
    )


def conv1d_3(dt: DType, p: Shape) -> Kernel:
    # N is the output length; the input x holds N + 2 elements (a "valid" convolution).
    n = p["n"]
    return Kernel(
        summary=(
            "conv1d_3: y[i] = w[0] * x[i] + w[1] * x[i + 1] + w[2] * x[i + 2], x has N + 2 elements"
        ),
        args=(ptr("y", dt, n, "out"), ptr("x", dt, n + 2), ptr("w", dt, 3)),
        body=loop("y[i] = w[0] * x[i] + w[1] * x[i + 1] + w[2] * x[i + 2];"),
        tolerance=float_tol(dt, terms=3),
    )


def quantize(dt: DType, p: Shape) -> Kernel:
    # The variant's dtype names the float side (quantize_n1024_float32); the output is int8.
    n = p["n"]
    t, rnd = dt.c_type, mathfn(dt, "round")
    return Kernel(
        summary=(
            f"quantize: y[i] = {rnd}(x[i] * scale) saturated to [-128, 127], NaN -> 0, {t} -> int8"
        ),
        args=(ptr("y", I8, n, "out"), ptr("x", dt, n), scalar("scale", dt)),
        body=(
            "    for (int i = 0; i < N; i++) {\n"
            f"        {t} r = {rnd}(x[i] * scale);\n"
            "        if (isnan(r))\n"
            "            y[i] = 0;\n"
            f"        else if (r < {lit(dt, '-128.0')})\n"
            "            y[i] = -128;\n"
            f"        else if (r > {lit(dt, '127.0')})\n"
            "            y[i] = 127;\n"
            "        else\n"
            "            y[i] = (int8_t)r;\n"
            "    }"
        ),
        math_functions=(rnd,),
    )


# ------------------------------------------------------------------------------- matrices


def gemv(dt: DType, p: Shape) -> Kernel:
    m, n = p["m"], p["n"]
    return Kernel(
        summary="gemv: y[i] = sum over j of a[i * N + j] * x[j] (a is M x N, row-major)",
        args=(ptr("y", dt, m, "out"), ptr("a", dt, m * n), ptr("x", dt, n)),
        body=(
            "    for (int i = 0; i < M; i++) {\n"
            f"        {dt.c_type} s = {zero(dt)};\n"
            "        for (int j = 0; j < N; j++)\n"
            "            s += a[i * N + j] * x[j];\n"
            "        y[i] = s;\n"
            "    }"
        ),
        tolerance=float_tol(dt, terms=n),
    )


def transpose(dt: DType, p: Shape) -> Kernel:
    m, n = p["m"], p["n"]
    return Kernel(
        summary="transpose: b[j * M + i] = a[i * N + j] (a is M x N, b is N x M, row-major)",
        args=(ptr("b", dt, m * n, "out"), ptr("a", dt, m * n)),
        body=(
            "    for (int i = 0; i < M; i++)\n"
            "        for (int j = 0; j < N; j++)\n"
            "            b[j * M + i] = a[i * N + j];"
        ),
    )


def matmul(dt: DType, p: Shape) -> Kernel:
    m, n, k = p["m"], p["n"], p["k"]
    return Kernel(
        summary=(
            "matmul: c[i * N + j] = sum over p of a[i * K + p] * b[p * N + j] "
            "(a M x K, b K x N, row-major)"
        ),
        args=(ptr("c", dt, m * n, "out"), ptr("a", dt, m * k), ptr("b", dt, k * n)),
        body=(
            "    for (int i = 0; i < M; i++) {\n"
            "        for (int j = 0; j < N; j++) {\n"
            f"            {dt.c_type} s = {zero(dt)};\n"
            "            for (int p = 0; p < K; p++)\n"
            "                s += a[i * K + p] * b[p * N + j];\n"
            "            c[i * N + j] = s;\n"
            "        }\n"
            "    }"
        ),
        tolerance=float_tol(dt, terms=k),
    )


# --------------------------------------------------------- transcendental and normalisation


def softmax_numer(dt: DType, p: Shape) -> Kernel:
    n, t, exp = p["n"], dt.c_type, mathfn(dt, "exp")
    return Kernel(
        summary=f"softmax_numer: y[i] = {exp}(x[i] - m), m = max of x as in max_reduce",
        args=(ptr("y", dt, n, "out"), ptr("x", dt, n)),
        body=(
            f"    {t} m = x[0];\n"
            "    for (int i = 1; i < N; i++)\n"
            "        if (x[i] > m)\n"
            "            m = x[i];\n" + loop(f"y[i] = {exp}(x[i] - m);")
        ),
        math_functions=(exp,),
        tolerance=Tolerance(terms=0, ulps=16),
    )


def silu(dt: DType, p: Shape) -> Kernel:
    n, exp, one = p["n"], mathfn(dt, "exp"), lit(dt, "1.0")
    return Kernel(
        summary=f"silu: y[i] = x[i] / (1 + {exp}(-x[i]))",
        args=(ptr("y", dt, n, "out"), ptr("x", dt, n)),
        body=loop(f"y[i] = x[i] / ({one} + {exp}(-x[i]));"),
        math_functions=(exp,),
        tolerance=Tolerance(terms=0, ulps=16),
    )


def gelu_approx(dt: DType, p: Shape) -> Kernel:
    n, t, tanh = p["n"], dt.c_type, mathfn(dt, "tanh")
    half, one = lit(dt, "0.5"), lit(dt, "1.0")
    c0, c1 = lit(dt, "0.7978845608028654"), lit(dt, "0.044715")
    return Kernel(
        summary=(
            f"gelu_approx: y[i] = 0.5 * x * (1 + {tanh}(sqrt(2 / pi) * (x + 0.044715 * x^3))), "
            "x = x[i]"
        ),
        args=(ptr("y", dt, n, "out"), ptr("x", dt, n)),
        body=(
            "    for (int i = 0; i < N; i++) {\n"
            f"        {t} v = x[i];\n"
            f"        y[i] = {half} * v * ({one} + {tanh}({c0} * (v + {c1} * v * v * v)));\n"
            "    }"
        ),
        math_functions=(tanh,),
        tolerance=Tolerance(terms=0, ulps=16),
    )


def layernorm(dt: DType, p: Shape) -> Kernel:
    n, t, sqrt = p["n"], dt.c_type, mathfn(dt, "sqrt")
    z = zero(dt)
    return Kernel(
        summary=(
            "layernorm: y[i] = (x[i] - mean) / sqrt(var + 1e-5) * gamma[i] + beta[i], "
            "var = mean((x - mean)^2)"
        ),
        args=(
            ptr("y", dt, n, "out"),
            ptr("x", dt, n),
            ptr("gamma", dt, n),
            ptr("beta", dt, n),
        ),
        body=(
            f"    {t} sum = {z};\n" + loop("sum += x[i];") + f"\n    {t} mean = sum / N;\n"
            f"    {t} sq = {z};\n"
            "    for (int i = 0; i < N; i++) {\n"
            f"        {t} d = x[i] - mean;\n"
            "        sq += d * d;\n"
            "    }\n"
            f"    {t} var = sq / N;\n"
            f"    {t} denom = {sqrt}(var + {lit(dt, '1e-5')});\n"
            + loop("y[i] = (x[i] - mean) / denom * gamma[i] + beta[i];")
        ),
        math_functions=(sqrt,),
        tolerance=Tolerance(terms=n, ulps=4),
    )


def rmsnorm(dt: DType, p: Shape) -> Kernel:
    n, t, sqrt = p["n"], dt.c_type, mathfn(dt, "sqrt")
    return Kernel(
        summary="rmsnorm: y[i] = x[i] / sqrt(mean of x^2 + 1e-5) * w[i]",
        args=(ptr("y", dt, n, "out"), ptr("x", dt, n), ptr("w", dt, n)),
        body=(
            f"    {t} sq = {zero(dt)};\n"
            + loop("sq += x[i] * x[i];")
            + f"\n    {t} denom = {sqrt}(sq / N + {lit(dt, '1e-5')});\n"
            + loop("y[i] = x[i] / denom * w[i];")
        ),
        math_functions=(sqrt,),
        tolerance=Tolerance(terms=n, ulps=4),
    )


def cosine_similarity(dt: DType, p: Shape) -> Kernel:
    n, t, sqrt, z = p["n"], dt.c_type, mathfn(dt, "sqrt"), zero(dt)
    return Kernel(
        summary=(
            "cosine_similarity: dot(a, b) / (sqrt(dot(a, a)) * sqrt(dot(b, b))), "
            "0 if that denominator is 0"
        ),
        args=(ptr("a", dt, n), ptr("b", dt, n)),
        ret=dt,
        body=(
            f"    {t} ab = {z}, aa = {z}, bb = {z};\n"
            "    for (int i = 0; i < N; i++) {\n"
            "        ab += a[i] * b[i];\n"
            "        aa += a[i] * a[i];\n"
            "        bb += b[i] * b[i];\n"
            "    }\n"
            f"    {t} denom = {sqrt}(aa) * {sqrt}(bb);\n"
            f"    if (denom == {z})\n"
            f"        return {z};\n"
            "    return ab / denom;"
        ),
        math_functions=(sqrt,),
        tolerance=Tolerance(terms=n, ulps=4),
    )


# ------------------------------------------------------------------------------- registry


# Odd shapes are appended after the power-of-two ones: ids and the split depend only on the id,
# so the variants that existed before them are unchanged (tests/test_kernels.py pins them).


def _vec() -> tuple[Shape, ...]:
    return tuple({"n": n} for n in (*SIZES, *ODD_SIZES))


def _mat() -> tuple[Shape, ...]:
    pairs = (*itertools.product(SIDES, SIDES), *ODD_SHAPES)
    return tuple({"m": m, "n": n} for m, n in pairs)


def _matmul() -> tuple[Shape, ...]:
    cube = itertools.product(SIDES, SIDES, SIDES)
    triples = (*(t for t in cube if t[0] * t[1] * t[2] <= MATMUL_MAX_MACS), *ODD_MATMUL_SHAPES)
    return tuple({"m": m, "n": n, "k": k} for m, n, k in triples)


# difficulty: 1 = one independent operation per element (fine even as a scalar loop),
# 2 = needs SIMD technique beyond a plain map (horizontal reductions, scans, selects with index
# tracking, conversions, sliding windows), 3 = nested loops, transcendental functions or
# multi-pass normalisations.
TEMPLATES: tuple[Template, ...] = (
    Template("vec_add", (F16, F32, F64, I8, I32, I64, U32), _vec(), 1, False, vec_add),
    Template("saxpy", (F16, F32, F64, I32, I64), _vec(), 1, False, saxpy),
    Template("relu", (F16, F32, F64, I8, I32, I64), _vec(), 1, False, relu),
    Template("leaky_relu", ELEMENTWISE_FLOATS, _vec(), 1, False, leaky_relu),
    Template("clip", (F16, F32, F64, I8, I32, I64), _vec(), 1, False, clip),
    Template("abs_diff", (F16, F32, F64, I8, I32, I64, U32), _vec(), 1, False, abs_diff),
    Template("elementwise_fma", ELEMENTWISE_FLOATS, _vec(), 1, False, elementwise_fma),
    Template("dequantize", FLOATS, _vec(), 1, False, dequantize),
    Template("dot", (F32, F64, I8, I32, I64), _vec(), 2, True, dot),
    Template("sum_reduce", (F32, F64, I32, I64, U32), _vec(), 2, True, sum_reduce),
    Template("l2_norm_sq", (F32, F64, I32, I64), _vec(), 2, True, l2_norm_sq),
    Template("max_reduce", (F32, F64, I8, I32, I64, U32), _vec(), 2, False, max_reduce),
    Template("min_reduce", (F32, F64, I8, I32, I64, U32), _vec(), 2, False, min_reduce),
    Template("argmax", (F32, F64, I8, I32, I64, U32), _vec(), 2, False, argmax),
    Template("popcount", (U32,), _vec(), 2, False, popcount),
    Template("prefix_sum", (F32, F64, I32, I64), _vec(), 2, True, prefix_sum),
    Template("conv1d_3", (F32, F64, I32), _vec(), 2, False, conv1d_3),
    Template("quantize", FLOATS, _vec(), 2, False, quantize),
    Template("gemv", (F32, F64, I32), _mat(), 3, True, gemv),
    Template("transpose", (F32, F64, I8, I32), _mat(), 3, False, transpose),
    Template("matmul", (F32, F64, I32), _matmul(), 3, True, matmul),
    Template("softmax_numer", FLOATS, _vec(), 3, False, softmax_numer),
    Template("silu", FLOATS, _vec(), 3, False, silu),
    Template("gelu_approx", FLOATS, _vec(), 3, False, gelu_approx),
    Template("layernorm", FLOATS, _vec(), 3, True, layernorm),
    Template("rmsnorm", FLOATS, _vec(), 3, True, rmsnorm),
    Template("cosine_similarity", FLOATS, _vec(), 3, True, cosine_similarity),
)


# ------------------------------------------------------------------------------ rendering

_INT_TYPES = ("int8_t", "int32_t", "int64_t", "uint32_t")


def variant_id(template: str, shape: Shape, dt: DType) -> str:
    """`<template>_n<N>_<dtype>` or `<template>_m<M>_n<N>[_k<K>]_<dtype>`."""
    dims = "".join(f"_{key}{shape[key]}" for key in ("m", "n", "k") if key in shape)
    return f"{template}{dims}_{dt.value}"


def render(kernel: Kernel, signature: Signature, shape: Shape) -> str:
    """The complete C translation unit; the prototype is `signature.c_prototype()` verbatim."""
    prototype = signature.c_prototype()
    includes = []
    if kernel.math_functions or "isnan(" in kernel.body:
        includes.append("#include <math.h>")
    if any(t in prototype or t in kernel.body for t in _INT_TYPES):
        includes.append("#include <stdint.h>")
    defines = [f"#define {key.upper()} {shape[key]}" for key in ("m", "n", "k") if key in shape]
    parts = [f"/* {kernel.summary} */"]
    if includes:
        parts.append("\n".join(includes))
    parts.append("\n".join(defines))
    parts.append(f"{prototype}\n{{\n{kernel.body}\n}}")
    return "\n\n".join(parts) + "\n"


def build_variant(template: Template, dt: DType, shape: Shape) -> Variant:
    kernel = template.build(dt, shape)
    signature = Signature(args=kernel.args, ret=kernel.ret, ret_c_type=kernel.ret_c_type)
    vid = variant_id(template.name, shape, dt)
    return Variant(
        id=vid,
        template=template.name,
        params=dict(shape),
        dtype=dt,
        c_source=render(kernel, signature, shape),
        signature=signature,
        difficulty=template.difficulty,
        split=split_of(vid),
        tolerance=kernel.tolerance,
        math_functions=kernel.math_functions,
        reduction=template.reduction,
    )


def build_all() -> list[Variant]:
    """Every variant of every template (unsorted)."""
    return [build_variant(t, dt, shape) for t in TEMPLATES for dt in t.dtypes for shape in t.shapes]
