"""judge's shortcut for byte-identical outputs against the full tolerance check, on records made
for every output dtype and tolerance of the kernel registry: the same Finding or None for
identical outputs (NaN payloads, signed zeros, infinities and subnormals among them) and for
outputs that differ by a signed zero, a NaN payload, an ulp or a whole unit."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from toolchain import kernels
from toolchain.execution.records import NP_DTYPE, Buffer, Record
from toolchain.gates.correctness.compare import judge
from toolchain.kernels.model import DType, Variant

TESTS = 30  # the fixed tests, the random ones and a few after them
LENGTH = 24


def _registry() -> list[str]:
    """A variant of every (input dtype, tolerance, output dtypes, signature shape) there is."""
    seen: dict[tuple[object, ...], str] = {}
    for v in kernels.build_all():
        sig = v.signature
        shape = (sig.ret, *((a.dtype, a.pointer, a.role) for a in sig.args))
        seen.setdefault((v.dtype, v.tolerance, shape), v.id)
    return sorted(seen.values())


def _values(dtype: DType, test: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """Special values (tests 0-9), small integers (exact arithmetic), then random values."""
    np_type = NP_DTYPE[dtype]
    if not dtype.is_float:
        info = np.iinfo(np_type)
        return rng.integers(info.min, info.max, n, dtype=np_type, endpoint=True)
    if test < 10:
        bits = np.dtype(f"u{dtype.size}")
        nans = np.array([np.nan, -np.nan], dtype=np_type).view(bits) | np.array(
            [1, 5], dtype=bits)  # quiet NaNs with payloads
        pool = np.concatenate([np.array([0.0, -0.0, np.inf, -np.inf, 1.0, -1.5],
                                        dtype=np_type),
                               nans.view(np_type),
                               np.array([np.finfo(np_type).smallest_subnormal,
                                         np.finfo(np_type).max], dtype=np_type)])
        return rng.choice(pool, n)
    if test < 20:
        return rng.integers(-8, 9, n).astype(np_type)
    return rng.standard_normal(n).astype(np_type)


def _record(variant: Variant, test: int, rng: np.random.Generator) -> Record:
    sig = variant.signature

    def raw(dtype: DType, n: int) -> bytes:
        return _values(dtype, test, rng, n).tobytes()

    buffers = {a.name: Buffer(b"\xa5" * 16, raw(a.dtype, min(a.length or 1, LENGTH)),
                              b"\x5a" * 16) for a in sig.args if a.pointer}
    outs = [a for a in sig.args if a.pointer and a.role != "in"]
    magnitude = variant.dtype.is_float and not variant.tolerance.strict

    def mag(data: bytes, dtype: DType) -> bytes:
        values = np.frombuffer(data, NP_DTYPE[dtype])
        with np.errstate(over="ignore"):
            return (np.abs(values) * 2 if dtype.is_float else values).tobytes()

    ret = raw(sig.ret, 1) if sig.ret is not None else b""
    return Record(
        test=test, ret=ret, buffers=buffers,
        scalars={a.name: raw(a.dtype, 1) for a in sig.args if not a.pointer},
        canary_x=bytes(88), canary_d=bytes(64), after_x=bytes(88), after_d=bytes(64),
        sp_before=0x1000, sp_after=0x1000, fpcr_before=0, fpcr_after=0,
        stack_guard=b"\x11" * 32, stack_after=b"\x11" * 32,
        abs_ret=mag(ret, sig.ret) if magnitude and sig.ret is not None else b"",
        abs_outputs={a.name: mag(buffers[a.name].data, a.dtype) for a in outs}
        if magnitude else None,
    )


def _bits(dtype: DType, data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.dtype(f"u{dtype.size}")).copy()


def _flip_zero_signs(dtype: DType, data: bytes) -> bytes:
    if not dtype.is_float:
        return data
    bits, sign = _bits(dtype, data), np.array(1 << (8 * dtype.size - 1), np.dtype(f"u{dtype.size}"))
    zero = (bits & ~sign) == 0
    bits[zero] ^= sign
    return bits.tobytes()


def _other_nan_payload(dtype: DType, data: bytes) -> bytes:
    if not dtype.is_float:
        return data
    bits = _bits(dtype, data)
    bits[np.isnan(np.frombuffer(data, NP_DTYPE[dtype]))] ^= np.array(2, bits.dtype)
    return bits.tobytes()


def _one_ulp(dtype: DType, data: bytes) -> bytes:
    bits = _bits(dtype, data)
    bits[len(bits) // 2] += np.array(1, bits.dtype)
    return bits.tobytes()


def _whole_unit(dtype: DType, data: bytes) -> bytes:
    values = np.frombuffer(data, NP_DTYPE[dtype]).copy()
    with np.errstate(over="ignore"):
        values[0] = values[0] + np.array(1, values.dtype)
    return values.tobytes()


CHANGES: dict[str, Callable[[DType, bytes], bytes]] = {
    "identical": lambda dtype, data: data, "signed zeros": _flip_zero_signs,
    "NaN payload": _other_nan_payload, "one ulp": _one_ulp, "a whole unit": _whole_unit,
}


def _changed(variant: Variant, rec: Record, change: Callable[[DType, bytes], bytes]) -> Record:
    sig = variant.signature
    buffers = {name: Buffer(buf.before, change(next(a.dtype for a in sig.args if a.name == name),
                                               buf.data) if any(a.name == name and a.role != "in"
                                                                for a in sig.args)
                            else buf.data, buf.after) for name, buf in rec.buffers.items()}
    ret = change(sig.ret, rec.ret) if sig.ret is not None else rec.ret
    return dataclasses.replace(rec, buffers=buffers, ret=ret)


@pytest.mark.parametrize("variant_id", _registry())
def test_the_shortcut_gives_the_full_checks_finding(variant_id: str) -> None:
    variant = kernels.get(variant_id)
    rng = np.random.default_rng(zlib.crc32(variant_id.encode()))
    ref = [_record(variant, t, rng) for t in range(TESTS)]
    outcomes: dict[str, list[bool]] = {}
    for label, change in CHANGES.items():
        for where in (range(TESTS), [int(rng.integers(TESTS))]):  # every test, or one
            cand = [_changed(variant, r, change) if r.test in where else r for r in ref]
            slow = judge(variant, cand, ref, shortcut=False)
            assert judge(variant, cand, ref) == slow, label
            outcomes.setdefault(label, []).append(slow is None)
    assert all(outcomes["identical"])  # the premise of the shortcut, under the full check
    assert not all(outcomes["a whole unit"])  # the check is not vacuous
