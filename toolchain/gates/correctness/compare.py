"""Judge a candidate's records against the C reference's records.

Every decision is made here, in the verifier's process, from raw bytes: guard zones and const
inputs must be byte-identical to the reference's, callee-saved registers must hold the canaries
planted before the call, and outputs must match the reference under the variant's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ErrorKind
from ...kernels.model import DType, Tolerance, Variant
from .records import NP_DTYPE, Record

TEST_NAMES = (
    "zeros", "signed_zeros", "denormals", "nan", "infinities", "extremes", "alternating_signs",
    "large_magnitudes", "small_magnitudes", "small_integers",
)
UNIT_ROUNDOFF = {DType.float16: 2.0**-11, DType.float32: 2.0**-24, DType.float64: 2.0**-53}
X_REGS = [f"x{i}" for i in range(19, 30)]
D_REGS = [f"d{i}" for i in range(8, 16)]


def test_name(test: int) -> str:
    return TEST_NAMES[test] if test < len(TEST_NAMES) else "random"


@dataclass
class Finding:
    kind: ErrorKind
    message: str
    details: dict[str, Any]


def first_mismatch(
    dtype: DType, cand: bytes, ref: bytes, mag: bytes | None, tol: Tolerance
) -> tuple[int, float | int, float | int, float] | None:
    """Index, expected, got and bound of the first output element out of tolerance."""
    c = np.frombuffer(cand, dtype=NP_DTYPE[dtype])
    r = np.frombuffer(ref, dtype=NP_DTYPE[dtype])
    if not dtype.is_float or tol.strict:
        bits = np.dtype(f"u{dtype.size}")
        ok = c.view(bits) == r.view(bits)
        if dtype.is_float:
            ok |= np.isnan(c) & np.isnan(r)
        bound = np.zeros(len(r))
    else:
        c64, r64 = c.astype(np.float64), r.astype(np.float64)
        m64 = np.abs(np.frombuffer(mag, dtype=NP_DTYPE[dtype]).astype(np.float64)) if mag else 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            bound = tol.factor * UNIT_ROUNDOFF[dtype] * (np.abs(r64) + m64)
            bound = np.where(np.isfinite(bound), bound, 0.0)
            close = np.isfinite(c64) & np.isfinite(r64) & (np.abs(c64 - r64) <= bound)
        same = (c64 == r64) | (np.isnan(c64) & np.isnan(r64))
        ok = same | close
    bad = np.flatnonzero(~ok)
    if bad.size == 0:
        return None
    i = int(bad[0])
    return i, r[i].item(), c[i].item(), float(np.asarray(bound).flat[i] if np.ndim(bound) else 0)


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


def judge(variant: Variant, cand: list[Record], ref: list[Record]) -> Finding | None:
    """The most serious finding over all tests: memory, then inputs, then ABI, then outputs."""
    pairs = list(zip(cand, ref, strict=True))
    for c, r in pairs:
        if c.stack_after != c.stack_guard:
            return Finding(ErrorKind.memory_violation, f"test {c.test}: the kernel wrote above "
                           "its stack pointer into the caller's frame", {"test": c.test})
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
                        {"test": c.test, "buffer": name, "side": side, "distance": dist},
                    )
    for c, r in pairs:
        for a in variant.signature.args:
            if a.pointer and a.role == "in" and c.buffers[a.name].data != r.buffers[a.name].data:
                return Finding(ErrorKind.input_modified, f"test {c.test}: const input {a.name} "
                               "was modified", {"test": c.test, "buffer": a.name})
    for c, _ in pairs:
        problem = _abi(c)
        if problem:
            return Finding(ErrorKind.abi_violation, f"test {c.test}: {problem}", {"test": c.test})
    for c, r in pairs:
        outputs: list[tuple[str, DType, bytes, bytes, bytes | None]] = []
        if variant.signature.ret is not None:
            outputs.append(("return value", variant.signature.ret, c.ret, r.ret, r.abs_ret or None))
        for a in variant.signature.args:
            if a.pointer and a.role != "in":
                mag = r.abs_outputs.get(a.name) if r.abs_outputs else None
                outputs.append((a.name, a.dtype, c.buffers[a.name].data, r.buffers[a.name].data,
                                mag))
        for name, dtype, got, want, mag in outputs:
            miss = first_mismatch(dtype, got, want, mag, variant.tolerance)
            if miss:
                i, expected, value, bound = miss
                where = name if name == "return value" else f"{name}[{i}]"
                return Finding(
                    ErrorKind.wrong_output,
                    f"test {c.test} ({test_name(c.test)}): {where} = {value!r}, expected "
                    f"{expected!r}" + (f" (bound {bound:.3g})" if bound else ""),
                    {"test": c.test, "test_name": test_name(c.test), "output": name, "index": i,
                     "expected": repr(expected), "got": repr(value), "bound": bound},
                )
    return None
