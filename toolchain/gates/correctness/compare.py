"""Judge a candidate's records against the C reference's records.

Every decision is made here, in the verifier's process, from raw bytes: guard zones and const
inputs must be byte-identical to the reference's, callee-saved registers must hold the canaries
planted before the call, and outputs must match the reference under the variant's tolerance,
or exactly where no evaluation order can round (`exact_arithmetic`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ErrorKind
from ...execution.harness import (
    BASE_TESTS,
    RANDOM_TESTS,
    outcome_pair_tests,
    position_tests,
    selection_positions,
)
from ...execution.records import NP_DTYPE, Record
from ...kernels.model import DType, Tolerance, Variant
from ...verdict import CorrectnessDetails

TEST_NAMES = (
    "zeros", "signed_zeros", "denormals", "nan", "infinities", "extremes", "alternating_signs",
    "large_magnitudes", "small_magnitudes", "small_integers",
    *["random"] * 10,
    "ramp_up", "ramp_down", "ties_max", "ties_min", "nan_last", "inf_last", "nan_first",
    "min_max_alternating", "narrow_float_integers", "narrow_float_fractions", "halves",
)
assert len(TEST_NAMES) == BASE_TESTS
UNIT_ROUNDOFF = {DType.float16: 2.0**-11, DType.float32: 2.0**-24, DType.float64: 2.0**-53}
# Half the spacing of the subnormals: the absolute error of one rounding below the normal range
# (the standard model with gradual underflow, fl(x op y) = (x op y)(1 + d) + e, |e| <= this;
# float64's half spacing is not a float64, so its whole spacing).
UNDERFLOW = {DType.float16: 2.0**-25, DType.float32: 2.0**-150, DType.float64: 2.0**-1074}
# Integers up to 2^(mantissa bits + 1) are exact in the format.
EXACT_INTEGERS = {DType.float16: 2.0**11, DType.float32: 2.0**24, DType.float64: 2.0**53}
X_REGS = [f"x{i}" for i in range(19, 30)]
D_REGS = [f"d{i}" for i in range(8, 16)]


def test_name(test: int, variant: Variant | None = None) -> str:
    """A test's family; a selection's position tests (after the fixed ones) name the position
    of the extreme, the outcome-pairs tests after them their number."""
    if test < len(TEST_NAMES):
        return TEST_NAMES[test]
    positions = position_tests(variant) if variant is not None else ()
    j = test - len(TEST_NAMES)
    if j < len(positions):
        approached = variant is not None and j >= len(selection_positions(variant))
        return f"extreme_at_{positions[j]}" + ("_approached" if approached else "")
    j -= len(positions)
    if variant is not None and j < outcome_pair_tests(variant):
        return f"outcome_pairs_{j}"
    return "random"


@dataclass
class Finding:
    kind: ErrorKind
    message: str
    details: CorrectnessDetails


def first_mismatch(
    dtype: DType, cand: bytes, ref: bytes, mag: bytes | None, tol: Tolerance,
    exact: bool = False,
) -> tuple[int, float | int, float | int, float] | None:
    """Index, expected, got and bound of the first output element out of tolerance (`exact`:
    the allowance is zero, see `exact_arithmetic`)."""
    c = np.frombuffer(cand, dtype=NP_DTYPE[dtype])
    r = np.frombuffer(ref, dtype=NP_DTYPE[dtype])
    if not dtype.is_float or tol.strict:
        bits = np.dtype(f"u{dtype.size}")
        ok = c.view(bits) == r.view(bits)
        if dtype.is_float:
            ok |= np.isnan(c) & np.isnan(r)
        bound = np.zeros(len(r))
    elif exact:
        ok = (c == r) | (np.isnan(c) & np.isnan(r))
        bound = np.zeros(len(r))
    else:
        c64, r64 = c.astype(np.float64), r.astype(np.float64)
        m64 = np.abs(np.frombuffer(mag, dtype=NP_DTYPE[dtype]).astype(np.float64)) if mag else 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            bound = tol.factor * (UNIT_ROUNDOFF[dtype] * (np.abs(r64) + m64) + UNDERFLOW[dtype])
            bound = np.where(np.isfinite(bound), bound, 0.0)
            close = np.isfinite(c64) & np.isfinite(r64) & (np.abs(c64 - r64) <= bound)
        same = (c64 == r64) | (np.isnan(c64) & np.isnan(r64))
        ok = same | close
    bad = np.flatnonzero(~ok)
    if bad.size == 0:
        return None
    i = int(bad[0])
    return i, r[i].item(), c[i].item(), float(np.asarray(bound).flat[i] if np.ndim(bound) else 0)


def exact_arithmetic(variant: Variant, ref: Record) -> bool:
    """Whether no evaluation order can round in this test: every float input (buffers and
    scalars) is an integer and every output's magnitude (the C on |inputs|) is at most 2^(p),
    p the format's precision. The templates this applies to only add and multiply (a tolerance
    with no library ulps), so each partial sum or product of any order, fused or not, is an
    integer no larger than that magnitude: representable, hence exact. Their outputs must then
    equal the reference's (+0 and -0 are equal: the sign of an exact zero sum depends on
    whether an accumulator started at +0)."""
    tol = variant.tolerance
    if tol.strict or tol.ulps or ref.abs_outputs is None:
        return False
    limit = EXACT_INTEGERS[variant.dtype]
    for a in variant.signature.args:
        if a.role == "out" or not a.dtype.is_float:
            continue
        raw = ref.buffers[a.name].data if a.pointer else ref.scalars[a.name]
        values = np.frombuffer(raw, dtype=NP_DTYPE[a.dtype]).astype(np.float64)
        with np.errstate(invalid="ignore"):
            if not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
                return False
    mags = [ref.abs_ret] if variant.signature.ret is not None else []
    mags += [ref.abs_outputs[a.name] for a in variant.signature.args
             if a.pointer and a.role != "in"]
    for raw, dtype in zip(mags, _output_dtypes(variant), strict=True):
        if not dtype.is_float:
            continue
        m = np.abs(np.frombuffer(raw, dtype=NP_DTYPE[dtype]).astype(np.float64))
        if not (np.all(np.isfinite(m)) and np.all(m <= limit)):
            return False
    return True


def _output_dtypes(variant: Variant) -> list[DType]:
    sig = variant.signature
    return ([sig.ret] if sig.ret is not None else []) + [
        a.dtype for a in sig.args if a.pointer and a.role != "in"]


def _abi(rec: Record) -> str | None:
    for name, canary, after in ((X_REGS, rec.canary_x, rec.after_x), (D_REGS, rec.canary_d,
                                                                      rec.after_d)):
        for k, reg in enumerate(name):
            if canary[8 * k : 8 * k + 8] != after[8 * k : 8 * k + 8]:
                return f"callee-saved register {reg} was not restored"
    if rec.sp_before != rec.sp_after:
        return f"sp was not restored (moved by {rec.sp_after - rec.sp_before:+d} bytes)"
    if rec.fpcr_before != rec.fpcr_after:
        return "FPCR (rounding mode / flush-to-zero) was changed and not restored"
    return None


def judge(variant: Variant, cand: list[Record], ref: list[Record], *,
          shortcut: bool = True) -> Finding | None:
    """The most serious finding over all tests: memory, then inputs, then ABI, then outputs;
    the fixed tests first, so a kernel one of them rejects gets the same verdict under any seed.

    An output byte-identical to the reference's is skipped (`shortcut`): every rule of
    `first_mismatch` accepts equal bits (NaNs match NaNs, and equal non-NaNs are equal under
    any bound), so only the outputs that differ pay for the tolerance check, and a test whose
    outputs all match skips `exact_arithmetic`. `shortcut=False` checks every output (the
    tests' reference)."""
    pairs = sorted(zip(cand, ref, strict=True), key=lambda p: (p[0].test in RANDOM_TESTS,
                                                               p[0].test))
    for c, r in pairs:
        if c.stack_after != c.stack_guard:
            return Finding(ErrorKind.memory_violation, f"test {c.test}: the kernel wrote above "
                           "its stack pointer into the caller's frame",
                           CorrectnessDetails(test=c.test))
        for name, buf in c.buffers.items():
            rbuf = r.buffers[name]
            for side, got, want in (("below", buf.before, rbuf.before),
                                    ("above", buf.after, rbuf.after)):
                if got != want:
                    off = next(i for i in range(len(got)) if got[i] != want[i])
                    dist = len(got) - off if side == "below" else off + 1
                    return Finding(
                        ErrorKind.memory_violation,
                        f"test {c.test}: write {dist} bytes {side} buffer {name}",
                        CorrectnessDetails(test=c.test, buffer=name, side=side, distance=dist),
                    )
    for c, r in pairs:
        for a in variant.signature.args:
            if a.pointer and a.role == "in" and c.buffers[a.name].data != r.buffers[a.name].data:
                return Finding(ErrorKind.input_modified, f"test {c.test}: const input {a.name} "
                               "was modified", CorrectnessDetails(test=c.test, buffer=a.name))
    for c, _ in pairs:
        problem = _abi(c)
        if problem:
            return Finding(ErrorKind.abi_violation, f"test {c.test}: {problem}",
                           CorrectnessDetails(test=c.test))
    for c, r in pairs:
        exact: bool | None = None  # computed for the first output that differs
        outputs: list[tuple[str, DType, bytes, bytes, bytes | None]] = []
        if variant.signature.ret is not None:
            outputs.append(("return value", variant.signature.ret, c.ret, r.ret, r.abs_ret or None))
        for a in variant.signature.args:
            if a.pointer and a.role != "in":
                mag = r.abs_outputs.get(a.name) if r.abs_outputs else None
                outputs.append((a.name, a.dtype, c.buffers[a.name].data, r.buffers[a.name].data,
                                mag))
        for name, dtype, got, want, mag in outputs:
            if shortcut and got == want:
                continue
            if exact is None:
                exact = exact_arithmetic(variant, r)
            miss = first_mismatch(dtype, got, want, mag, variant.tolerance, exact)
            if miss:
                i, expected, value, bound = miss
                where = name if name == "return value" else f"{name}[{i}]"
                return Finding(
                    ErrorKind.wrong_output,
                    f"test {c.test} ({test_name(c.test, variant)}): {where} = {value!r}, expected "
                    f"{expected!r}" + (f" (bound {bound:.3g})" if bound else "")
                    + (" (exact arithmetic: no rounding in any order)" if exact else ""),
                    CorrectnessDetails(test=c.test, test_name=test_name(c.test, variant),
                                       output=name, index=i, expected=repr(expected),
                                       got=repr(value), bound=bound, exact=exact),
                )
    return None
