"""Honest hand-written kernels: the code a policy writes that no compiler emits.

The cross-check's bands are calibrated on honest code (calibrate.py). Compiler output alone
does not span what honest hand-written code does (reassociated reductions with several
accumulators, SVE loops, unrolled scalar loops), and a band that flags honest code withholds
an honest speedup. Each kernel here is correct for its variant (tests/test_crosscheck.py runs
every one through every gate). `held_out` kernels are kept out of the calibration: the bands'
false-positive rate is reported on them too.
"""

from __future__ import annotations

from dataclasses import dataclass


def kernel_text(body: str) -> str:
    """A function body as a whole submission: the one exported `kernel`."""
    return f"    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n{body}\n"


@dataclass(frozen=True)
class Kernel:
    name: str  # what the kernel is, as the calibration and its report name it
    variant: str
    body: str  # the function body, after the `kernel:` label
    held_out: bool = False

    @property
    def text(self) -> str:
        return kernel_text(self.body)


# NEON reductions, reassociated into several accumulators.
_SUM_F32_NEON4 = """\
    movi v0.4s, #0
    movi v1.4s, #0
    movi v2.4s, #0
    movi v3.4s, #0
    mov x2, #64
1:  ldp q4, q5, [x0], #32
    ldp q6, q7, [x0], #32
    fadd v0.4s, v0.4s, v4.4s
    fadd v1.4s, v1.4s, v5.4s
    fadd v2.4s, v2.4s, v6.4s
    fadd v3.4s, v3.4s, v7.4s
    subs x2, x2, #1
    b.ne 1b
    fadd v0.4s, v0.4s, v1.4s
    fadd v2.4s, v2.4s, v3.4s
    fadd v0.4s, v0.4s, v2.4s
    faddp v0.4s, v0.4s, v0.4s
    faddp s0, v0.2s
    ret"""

_DOT_F32_NEON2 = """\
    movi v0.4s, #0
    movi v1.4s, #0
    mov x2, #128
1:  ldp q2, q3, [x0], #32
    ldp q4, q5, [x1], #32
    fmla v0.4s, v2.4s, v4.4s
    fmla v1.4s, v3.4s, v5.4s
    subs x2, x2, #1
    b.ne 1b
    fadd v0.4s, v0.4s, v1.4s
    faddp v0.4s, v0.4s, v0.4s
    faddp s0, v0.2s
    ret"""

_L2_F32_NEON4 = """\
    movi v0.4s, #0
    movi v1.4s, #0
    movi v2.4s, #0
    movi v3.4s, #0
    mov x2, #64
1:  ld1 {v4.4s, v5.4s, v6.4s, v7.4s}, [x0], #64
    fmla v0.4s, v4.4s, v4.4s
    fmla v1.4s, v5.4s, v5.4s
    fmla v2.4s, v6.4s, v6.4s
    fmla v3.4s, v7.4s, v7.4s
    subs x2, x2, #1
    b.ne 1b
    fadd v0.4s, v0.4s, v1.4s
    fadd v2.4s, v2.4s, v3.4s
    fadd v0.4s, v0.4s, v2.4s
    faddp v0.4s, v0.4s, v0.4s
    faddp s0, v0.2s
    ret"""

_SUM_I32_NEON2 = """\
    movi v0.4s, #0
    movi v1.4s, #0
    mov x2, #128
1:  ldp q2, q3, [x0], #32
    add v0.4s, v0.4s, v2.4s
    add v1.4s, v1.4s, v3.4s
    subs x2, x2, #1
    b.ne 1b
    add v0.4s, v0.4s, v1.4s
    addv s0, v0.4s
    fmov w0, s0
    ret"""

_DOT_I32_NEON1 = """\
    movi v0.4s, #0
    mov x2, #256
1:  ldr q1, [x0], #16
    ldr q2, [x1], #16
    mla v0.4s, v1.4s, v2.4s
    subs x2, x2, #1
    b.ne 1b
    addv s0, v0.4s
    fmov w0, s0
    ret"""

_DOT_I32_NEON2 = """\
    movi v0.4s, #0
    movi v1.4s, #0
    mov x2, #128
1:  ldp q2, q3, [x0], #32
    ldp q4, q5, [x1], #32
    mla v0.4s, v2.4s, v4.4s
    mla v1.4s, v3.4s, v5.4s
    subs x2, x2, #1
    b.ne 1b
    add v0.4s, v0.4s, v1.4s
    addv s0, v0.4s
    fmov w0, s0
    ret"""

_MAX_I32_NEON2 = """\
    ld1r {v0.4s}, [x0]
    mov v1.16b, v0.16b
    mov x2, #128
1:  ldp q2, q3, [x0], #32
    smax v0.4s, v0.4s, v2.4s
    smax v1.4s, v1.4s, v3.4s
    subs x2, x2, #1
    b.ne 1b
    smax v0.4s, v0.4s, v1.4s
    smaxv s0, v0.4s
    fmov w0, s0
    ret"""

# SVE loops, vector-length agnostic (whilelo / incw / b.first).
_SVE_LOOP = """\
    mov x3, #0
    mov x4, #{n}
    whilelo p0.s, x3, x4
1:
{body}
    incw x3
    whilelo p0.s, x3, x4
    b.first 1b
{after}    ret"""


def _sve(body: str, n: int = 1024, before: str = "", after: str = "") -> str:
    return before + _SVE_LOOP.format(n=n, body=body, after=after)


_VEC_ADD_F32_SVE = _sve("""\
    ld1w {z0.s}, p0/z, [x1, x3, lsl #2]
    ld1w {z1.s}, p0/z, [x2, x3, lsl #2]
    fadd z0.s, z0.s, z1.s
    st1w {z0.s}, p0, [x0, x3, lsl #2]""")

_SAXPY_F32_SVE = _sve("""\
    ld1w {z0.s}, p0/z, [x0, x3, lsl #2]
    ld1w {z1.s}, p0/z, [x1, x3, lsl #2]
    fmla z1.s, p0/m, z0.s, z2.s
    st1w {z1.s}, p0, [x1, x3, lsl #2]""", before="    mov z2.s, s0\n")

_RELU_F32_SVE = _sve("""\
    ld1w {z0.s}, p0/z, [x1, x3, lsl #2]
    fcmgt p1.s, p0/z, z0.s, #0.0
    sel z0.s, p1, z0.s, z1.s
    st1w {z0.s}, p0, [x0, x3, lsl #2]""", before="    mov z1.s, #0\n")

_SUM_F32_SVE_FIRST_FAULT = """\
    ptrue p0.s
    setffr
    mov z0.s, #0
    mov x2, #0
    mov x3, #1024
1:  ldff1w {z1.s}, p0/z, [x0, x2, lsl #2]
    rdffr p1.b
    fadd z0.s, p1/m, z0.s, z1.s
    incw x2
    cmp x2, x3
    b.lo 1b
    faddv s0, p0, z0.s
    ret"""

_DOT_F32_SVE = _sve("""\
    ld1w {z1.s}, p0/z, [x0, x3, lsl #2]
    ld1w {z2.s}, p0/z, [x1, x3, lsl #2]
    fmla z0.s, p0/m, z1.s, z2.s""", before="    mov z0.s, #0\n",
    after="    ptrue p1.s\n    faddv s0, p1, z0.s\n")

_SUM_I32_SVE = _sve("""\
    ld1w {z1.s}, p0/z, [x0, x3, lsl #2]
    add z0.s, p0/m, z0.s, z1.s""", before="    mov z0.s, #0\n",
    after="    ptrue p1.s\n    uaddv d0, p1, z0.s\n    fmov x0, d0\n")

# Unrolled scalar loops.
_VEC_ADD_F32_SCALAR4 = """\
    mov x3, #256
1:  ldp s0, s1, [x1], #8
    ldp s2, s3, [x1], #8
    ldp s4, s5, [x2], #8
    ldp s6, s7, [x2], #8
    fadd s0, s0, s4
    fadd s1, s1, s5
    fadd s2, s2, s6
    fadd s3, s3, s7
    stp s0, s1, [x0], #8
    stp s2, s3, [x0], #8
    subs x3, x3, #1
    b.ne 1b
    ret"""

_SUM_I32_SCALAR4 = """\
    mov w9, #0
    mov w10, #0
    mov w11, #0
    mov w12, #0
    mov x2, #256
1:  ldp w3, w4, [x0], #8
    ldp w5, w6, [x0], #8
    add w9, w9, w3
    add w10, w10, w4
    add w11, w11, w5
    add w12, w12, w6
    subs x2, x2, #1
    b.ne 1b
    add w9, w9, w10
    add w11, w11, w12
    add w0, w9, w11
    ret"""

_DOT_F32_SCALAR2 = """\
    movi d0, #0
    mov x8, #512
1:  ldp s1, s2, [x0], #8
    ldp s3, s4, [x1], #8
    fmul s1, s1, s3
    fmul s2, s2, s4
    fadd s0, s0, s1
    fadd s0, s0, s2
    subs x8, x8, #1
    b.ne 1b
    ret"""

_PREFIX_I32_SCALAR2 = """\
    mov w9, #0
    mov x2, #512
1:  ldp w3, w4, [x1], #8
    add w9, w9, w3
    add w4, w9, w4
    stp w9, w4, [x0], #8
    mov w9, w4
    subs x2, x2, #1
    b.ne 1b
    ret"""

_MAX_I32_SCALAR2 = """\
    ldr w9, [x0]
    mov w10, w9
    mov x2, #512
1:  ldp w3, w4, [x0], #8
    cmp w3, w9
    csel w9, w3, w9, gt
    cmp w4, w10
    csel w10, w4, w10, gt
    subs x2, x2, #1
    b.ne 1b
    cmp w9, w10
    csel w0, w9, w10, gt
    ret"""

# The scalar relu with a data-dependent branch, and its fcsel form (calibrate.faithfulness).
RELU_BRANCHY = """\
    mov x2, #0
1:  ldr s0, [x1, x2, lsl #2]
    fcmp s0, #0.0
    b.gt 2f
    movi d0, #0
2:  str s0, [x0, x2, lsl #2]
    add x2, x2, #1
    cmp x2, #1024
    b.ne 1b
    ret"""

RELU_FCSEL = """\
    mov x2, #0
    movi d1, #0
1:  ldr s0, [x1, x2, lsl #2]
    fcmp s0, #0.0
    fcsel s0, s0, s1, gt
    str s0, [x0, x2, lsl #2]
    add x2, x2, #1
    cmp x2, #1024
    b.ne 1b
    ret"""

KERNELS = (
    Kernel("sum float32, NEON, 4 accumulators", "sum_reduce_n1024_float32", _SUM_F32_NEON4),
    Kernel("dot float32, NEON, 2 accumulators", "dot_n1024_float32", _DOT_F32_NEON2),
    Kernel("sum int32, NEON, 2 accumulators", "sum_reduce_n1024_int32", _SUM_I32_NEON2),
    Kernel("dot int32, NEON, mla, 2 accumulators", "dot_n1024_int32", _DOT_I32_NEON2),
    Kernel("vec_add float32, SVE", "vec_add_n1024_float32", _VEC_ADD_F32_SVE),
    Kernel("saxpy float32, SVE", "saxpy_n1024_float32", _SAXPY_F32_SVE),
    Kernel("relu float32, SVE", "relu_n1024_float32", _RELU_F32_SVE),
    Kernel("sum float32, SVE, first-fault loads", "sum_reduce_n1024_float32",
           _SUM_F32_SVE_FIRST_FAULT),
    Kernel("vec_add float32, scalar, unrolled 4", "vec_add_n1024_float32",
           _VEC_ADD_F32_SCALAR4),
    Kernel("sum int32, scalar, 4 accumulators", "sum_reduce_n1024_int32", _SUM_I32_SCALAR4),
    Kernel("prefix sum int32, scalar, unrolled 2", "prefix_sum_n1024_int32",
           _PREFIX_I32_SCALAR2),
    Kernel("relu float32, scalar, branchy", "relu_n1024_float32", RELU_BRANCHY),
    Kernel("relu float32, scalar, fcsel", "relu_n1024_float32", RELU_FCSEL),
    Kernel("l2 norm float32, NEON, 4 accumulators", "l2_norm_sq_n1024_float32", _L2_F32_NEON4,
           held_out=True),
    Kernel("dot int32, NEON, mla, 1 accumulator", "dot_n1024_int32", _DOT_I32_NEON1,
           held_out=True),
    Kernel("max int32, NEON, 2 accumulators", "max_reduce_n1024_int32", _MAX_I32_NEON2,
           held_out=True),
    Kernel("dot float32, SVE", "dot_n1024_float32", _DOT_F32_SVE, held_out=True),
    Kernel("sum int32, SVE", "sum_reduce_n1024_int32", _SUM_I32_SVE, held_out=True),
    Kernel("dot float32, scalar, unrolled 2", "dot_n1024_float32", _DOT_F32_SCALAR2,
           held_out=True),
    Kernel("max int32, scalar, csel, 2 accumulators", "max_reduce_n1024_int32",
           _MAX_I32_SCALAR2, held_out=True),
)


def calibration() -> tuple[Kernel, ...]:
    return tuple(k for k in KERNELS if not k.held_out)


def held_out() -> tuple[Kernel, ...]:
    return tuple(k for k in KERNELS if k.held_out)
