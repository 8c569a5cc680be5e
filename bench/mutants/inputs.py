"""The oracle's own tests: many more than the gate's, designed so that every position decides.

Each test is a full set of arguments. Families, per element type:

- random values over several magnitudes, and full-range integers;
- exact small integers (all non-zero, and all positive): no evaluation order rounds, so a dropped,
  repeated or misplaced term changes a sum, a product or a scan at every position;
- strictly monotone sequences (the decisive element of a selection is the last, or the first);
- for selections (max, min, argmax, softmax), one test per position of the first and last 24
  and 8 random ones, with the extreme exactly there, plus ties (first against last maximum);
  up to 64 elements, every position twice more, approached by a strictly monotone run;
- IEEE corners mixed into random data and at the first and last positions: NaN, +-Inf, +-0,
  subnormals, the largest finite values; integer extremes (INT_MIN, INT_MAX, -1, 0);
- values not representable in a narrower format, all of one sign (bf16/fp16 for float32,
  float32 for float64);
- template corners: rounding ties and saturation bounds (quantize), lo > hi and NaN bounds
  (clip), every int8 value and a wrapping zero point (dequantize), zero vectors (cosine).

Scalars (alpha, lo, hi, scale, zero_point) are drawn per test, special values included. The
entry registers are randomised by the oracle harness from each test's seed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from toolchain.kernels.model import Arg, DType, Variant

NP = {DType.float16: np.float16, DType.float32: np.float32, DType.float64: np.float64,
      DType.int8: np.int8, DType.int32: np.int32, DType.int64: np.int64,
      DType.uint32: np.uint32}  # fmt: skip
SELECTIONS = {"max_reduce": 1, "argmax": 1, "softmax_numer": 1, "min_reduce": -1}
EDGE = 24  # positions at each end of a selection that get their own test
_ONCE = ("increasing", "decreasing", "zeros", "alternating", "equal", "nan_last", "inf_last",
         "special_first", "extreme")
_DRAWN = ("random", "wide", "small_int", "pos_int", "special", "narrow")
#: 45 tests per variant and 12 more at the end (selections add one per decisive position and
#: four ties).
FAMILIES = _ONCE + _DRAWN * 6


@dataclass(frozen=True)
class Test:
    seed: int  # the harness draws the entry registers, guard bytes and poison from it
    values: tuple[np.ndarray | np.generic, ...]  # one per argument, in signature order


def _float_specials(dt: type[np.floating]) -> np.ndarray:
    fi = np.finfo(dt)
    return np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, fi.smallest_subnormal,
                     -fi.smallest_subnormal, fi.max, -fi.max, fi.tiny, -fi.tiny, 1.0, -1.0, 0.5,
                     -np.nan], dtype=dt)


def _int_specials(dt: type[np.integer]) -> np.ndarray:
    ii = np.iinfo(dt)
    return np.array([ii.min, ii.max, 0, 1, ii.max - 1, ii.min + 1, -1 if ii.min < 0 else 2,
                     ii.max // 2 + 1], dtype=dt)


def values(dt: DType, n: int, family: str, rng: np.random.Generator) -> np.ndarray:
    """`n` elements of `dt` from one family."""
    t = NP[dt]
    if dt.is_float:
        fi = np.finfo(t)
        span = 4 if dt is DType.float16 else 12
        if family == "random":
            out = rng.standard_normal(n) * 10.0 ** rng.uniform(-1, 1)
        elif family == "wide":
            out = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-span, span, n)
        elif family == "small_int":
            out = rng.integers(1, 9, n) * rng.choice([-1.0, 1.0], n)
        elif family == "pos_int":
            out = rng.integers(1, 9, n).astype(float)
        elif family in ("special", "nan_last", "inf_last", "special_first"):
            out = rng.standard_normal(n) * 4
            if family == "special":
                hits = rng.random(n) < 0.15
                out = np.where(hits, rng.choice(_float_specials(t).astype(float), n), out)
            elif family == "nan_last":
                out[-1] = np.nan
            elif family == "inf_last":
                out[-1] = rng.choice([np.inf, -np.inf])
            else:
                out[0] = rng.choice(_float_specials(t).astype(float))
        elif family in ("increasing", "decreasing"):
            out = (np.arange(n) - n // 2) * (0.5 if dt is DType.float16 and n <= 2048 else 1.0)
            out = out if family == "increasing" else out[::-1].copy()
        elif family == "narrow":  # not representable in bf16 / fp16 (float32) or float32
            bits = 52 if dt is DType.float64 else 23 if dt is DType.float32 else 10
            mant = rng.integers(1, 2 ** bits, n) | 1
            out = (1.0 + mant * 2.0 ** -bits) * 2.0 ** rng.integers(-3, 4, n)
        elif family == "zeros":
            out = rng.choice([0.0, -0.0], n)
        elif family == "alternating":
            out = np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * (1 + np.arange(n) % 7)
        elif family == "extreme":
            out = rng.choice([-1.0, 1.0], n) * float(fi.max) * rng.uniform(0.25, 1.0, n)
        elif family == "equal":
            out = np.full(n, rng.standard_normal())
        elif family == "signed_zero":
            out = rng.choice([0.0, -0.0, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5], n)
        elif family == "tiny":
            out = rng.integers(0, 3, n) * rng.choice([-1.0, 1.0], n)
        elif family in ("high_band", "low_band"):
            out = float(fi.max) * rng.uniform(0.5, 1.0, n) * (1 if family == "high_band" else -1)
        elif family in ("positive", "negative"):
            out = np.abs(rng.standard_normal(n)) * 10.0 ** rng.uniform(-span, span, n)
            out = out if family == "positive" else -out
        else:
            raise ValueError(family)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(out).astype(t)
    ii = np.iinfo(t)
    lo, hi = int(ii.min), int(ii.max)
    if family in ("random", "wide", "narrow"):
        out = rng.integers(lo, hi, n, dtype=t, endpoint=True)
    elif family == "small_int":
        out = rng.integers(-8 if lo < 0 else 0, 9, n)
    elif family == "pos_int":
        out = rng.integers(1, 9, n)
    elif family in ("special", "nan_last", "inf_last", "special_first"):
        out = rng.integers(lo, hi, n, dtype=t, endpoint=True)
        specials = _int_specials(t)
        if family == "special":
            hits = rng.random(n) < 0.15
            out = np.where(hits, rng.choice(specials, n), out)
        elif family == "special_first":
            out[0] = rng.choice(specials)
        else:
            out[-1] = hi if family == "nan_last" else lo
    elif family in ("increasing", "decreasing"):
        base = np.arange(n, dtype=np.int64) - n // 2
        if hi - lo + 1 < n:  # int8: as long a run as fits, then saturate
            base = np.clip(base, lo, hi)
        out = base if family == "increasing" else base[::-1].copy()
        if lo == 0:
            out = out - out.min()
    elif family == "zeros":
        out = np.zeros(n, dtype=np.int64)
    elif family == "alternating":
        out = np.where(np.arange(n) % 2 == 0, hi, lo)
    elif family == "extreme":
        out = rng.choice(_int_specials(t), n)
    elif family == "equal":
        out = np.full(n, int(rng.integers(lo, hi, dtype=t, endpoint=True)))
    elif family == "signed_zero":
        out = rng.choice([0, 1, -1 if lo < 0 else 2], n)
    elif family == "tiny":
        out = rng.integers(0, 4, n)
    elif family == "high_band":
        out = rng.integers(hi - 15, hi, n, endpoint=True)
    elif family == "low_band":
        out = rng.integers(lo, lo + 15, n, endpoint=True)
    elif family in ("positive", "negative"):  # one side of the sign (uint32: of 2^31)
        mid = 0 if lo < 0 else 1 << 31
        out = rng.integers(mid, hi, n, endpoint=True) if family == "positive" else \
            rng.integers(lo, mid, n, endpoint=False)
    else:
        raise ValueError(family)
    return np.asarray(out).astype(t)


def _scalar(arg: Arg, variant: Variant, family: str, rng: np.random.Generator) -> np.generic:
    t = NP[arg.dtype]
    special = family in ("special", "extreme", "special_first")
    if arg.dtype.is_float:
        if arg.name in ("lo", "hi"):  # clip: usually ordered, sometimes reversed or NaN
            v = rng.standard_normal() * 2
        elif variant.template == "quantize":
            v = rng.choice([1.0, 0.5, 2.0, 100.0, 1e-3]) if not special else \
                rng.choice([1.0, -1.0, 0.0, 1e30, np.nan, np.inf])
        else:
            v = rng.standard_normal() * 3
        if special and rng.random() < 0.7:
            v = rng.choice(_float_specials(t).astype(float))
        with np.errstate(over="ignore"):
            return t(v)
    if special:
        return t(rng.choice(_int_specials(t)))
    if arg.name == "zero_point" and rng.random() < 0.5:
        return t(rng.integers(np.iinfo(t).min, np.iinfo(t).max, endpoint=True))
    return t(rng.integers(-20, 21))


def _test(variant: Variant, family: str, rng: np.random.Generator,
          spike: int | None = None, tie: int | None = None) -> Test:
    vals: list[np.ndarray | np.generic] = []
    for arg in variant.signature.args:
        if not arg.pointer:
            vals.append(_scalar(arg, variant, family, rng))
            continue
        if arg.role == "out":  # poison: the harness compares what the kernel leaves here
            vals.append(np.frombuffer(rng.bytes(arg.length * arg.dtype.size), NP[arg.dtype]))
            continue
        vals.append(values(arg.dtype, arg.length, family, rng))
    _template_corners(variant, family, vals, rng)
    if spike is not None:
        _spike(variant, vals, spike, rng, tie)
    return Test(int(rng.integers(0, 2**63)), tuple(vals))


def _template_corners(variant: Variant, family: str, vals: list, rng: np.random.Generator) -> None:
    names = [a.name for a in variant.signature.args]
    t = variant.template
    if t == "clip" and "lo" in names:
        lo, hi = names.index("lo"), names.index("hi")
        if family in ("random", "small_int", "increasing") and vals[lo] > vals[hi]:
            vals[lo], vals[hi] = vals[hi], vals[lo]  # mostly ordered bounds; others stay reversed
    elif t == "quantize" and family in ("small_int", "pos_int", "equal"):
        x = names.index("x")
        n = len(vals[x])
        dt = vals[x].dtype
        # Exact halves (roundf breaks them away from zero) and the saturation bounds.
        ties = rng.integers(-140, 141, n) + 0.5
        corner = np.array([127.5, -128.5, 127.49999, -128.49999, 126.5, -127.5, 128.0, -129.0,
                           0.5, -0.5, 1.5, -1.5])
        ties[: min(n, len(corner))] = corner[: min(n, len(corner))]
        vals[x] = rng.permutation(ties).astype(dt) if family != "equal" else ties.astype(dt)
        vals[names.index("scale")] = dt.type(1.0)
    elif t == "dequantize" and family in ("increasing", "alternating"):
        x = names.index("x")
        vals[x] = (np.arange(len(vals[x])) % 256 - 128).astype(np.int8)
    elif t == "cosine_similarity" and family == "zeros":
        vals[0] = np.zeros_like(vals[0])


def _spike(variant: Variant, vals: list, position: int, rng: np.random.Generator,
           tie: int | None) -> None:
    """The selection's extreme at exactly `position` (and again at `tie`, a later position: the
    first one wins): any skipped, repeated or misplaced element shows."""
    sign = SELECTIONS[variant.template]
    x = [a.name for a in variant.signature.args].index("x")
    arr = vals[x]
    t = arr.dtype
    if np.issubdtype(t, np.floating):
        base = rng.uniform(-100, 100, len(arr))
        base[position] = sign * 1000.0 + rng.uniform(-1, 1)
    else:
        ii = np.iinfo(t)
        lo, hi = int(ii.min) + 1, int(ii.max) - 1
        base = rng.integers(lo, hi, len(arr), endpoint=True)
        base[position] = ii.max if sign > 0 else ii.min
    if tie is not None:
        base[tie] = base[position]
    vals[x] = base.astype(t)


def tests(variant: Variant, seed: int) -> list[Test]:
    """Every oracle test of `variant`: the same for the same seed, on every machine."""
    rng = np.random.default_rng([seed, *variant.id.encode()])
    out = [_test(variant, family, rng) for family in FAMILIES]
    if variant.template in SELECTIONS:
        n = variant.params["n"]
        edge = list(range(min(n, EDGE))) + list(range(max(0, n - EDGE), n))
        extra = rng.choice(n, size=min(n, 8), replace=False).tolist()
        for position in dict.fromkeys(edge + extra):
            out.append(_test(variant, "random", rng, spike=position))
        for last in (True, False, True, False):  # ties: the first extreme wins in argmax
            first = int(rng.integers(0, n - 1))
            tie = n - 1 if last else int(rng.integers(first + 1, n))
            out.append(_test(variant, "random", rng, spike=first, tie=tie))
    # Appended later, so every test above is unchanged (a mutant judged non-equivalent stays so):
    # signed zeros against both signs of a scalar, few distinct values (ties everywhere), and
    # for selections every further position (n <= 256) or every 16th (a dropped vector block
    # of any width >= 16 elements, wherever it sits, holds one decisive position).
    out += [_test(variant, family, rng) for family in ("signed_zero", "tiny") * 4]
    if variant.template in SELECTIONS:
        n = variant.params["n"]
        done = set(edge + extra)
        phase = int(rng.integers(0, 16))
        more = range(n) if n <= 256 else range(phase, n, 16)
        for position in (p for p in more if p not in done):
            out.append(_test(variant, "random", rng, spike=position))
    # Equality in comparisons: neighbours equal in pairs, and in runs of random length, so a
    # compare dropped or off by equality shows at the start as anywhere else.
    for family, runs in (("small_int", False), ("random", True)) * 2:
        out.append(_repeated(variant, _test(variant, family, rng), runs, rng))
    # Appended later still: every buffer full of one special value (each IEEE corner, each
    # integer extreme, at every position at once); values all in the top or the bottom band of
    # the type, or all of one sign; buffers that end against an inaccessible page (a read one
    # element past the end faults); and for selections the extreme alone on its side of the sign
    # boundary (0; 2^31 for uint32) at every position of the first 64 and the last 192 (every
    # residue of a lost lane or block of up to 64 elements per iteration, and every tail).
    for value in _specials(variant.dtype):
        out.append(_filled(variant, _test(variant, "random", rng), value))
    out += [_test(variant, family, rng) for family in BANDS]
    for family in ("random", "small_int", "special", "increasing"):
        case = _test(variant, family, rng)
        out.append(Test(case.seed | FENCED, case.values))
    if variant.template in SELECTIONS:
        n = variant.params["n"]
        for position in dict.fromkeys([*range(min(n, 64)), *range(max(0, n - 192), n)]):
            out.append(_opposite(variant, _test(variant, "random", rng), position, rng))
    # Appended after the first full run on the position tests: each special value first and
    # last among ordinary values (a NaN first decides a selection), and zeros of alternating
    # sign starting with either (the first of equal zeros is the one a selection keeps).
    for value in _specials(variant.dtype):
        for where in (0, -1):
            out.append(_placed(variant, _test(variant, "random", rng), value, where))
    if variant.dtype.is_float:
        for first in (-0.0, 0.0):
            out.append(_placed(variant, _test(variant, "zeros", rng), first, None))
    # Appended after the run on verifier 0.6.3: selections get every position up to n = 512
    # (compilers unroll that far completely, so each position is its own class; the gate tests
    # every one), and signed zeros meet each other in every combination of signs, in every lane:
    # each float input (buffers and scalars) all +0 or all -0, and ordinary signed zeros
    # against every pairing of zero scalars (a `>` that became `>=` against a bound or between
    # two inputs differs only in the sign of a zero result).
    if variant.template in SELECTIONS and 256 < variant.params["n"] <= 512:
        n = variant.params["n"]
        covered = done | set(range(phase, n, 16))
        for position in (p for p in range(n) if p not in covered):
            out.append(_test(variant, "random", rng, spike=position))
    out += _zero_signs(variant, rng)
    # Appended after the run on verifier 0.6.4: selections of at most APPROACHED elements get
    # every position again, reached through a strictly monotone run (each element before the
    # extreme a new running extreme), with and without a runner-up right after it.
    out += approached_tests(variant, rng)
    return out


def _zero_signs(variant: Variant, rng: np.random.Generator) -> list[Test]:
    """Signed-zero tests: every sign combination of the float inputs, each input all one zero,
    then `signed_zero` data against every combination of zero scalars."""
    floats = [i for i, a in enumerate(variant.signature.args)
              if a.role != "out" and a.dtype.is_float]
    scalars = [i for i in floats if not variant.signature.args[i].pointer]
    if not floats:
        return []
    out = []
    for combo in range(min(1 << len(floats), 16)):
        case = _test(variant, "random", rng)
        vals = list(case.values)
        for bit, i in enumerate(floats):
            arg = variant.signature.args[i]
            z = -0.0 if combo >> bit & 1 else 0.0
            vals[i] = np.full(arg.length, z, NP[arg.dtype]) if arg.pointer else NP[arg.dtype](z)
        out.append(Test(case.seed, tuple(vals)))
    for combo in range(1 << len(scalars)) if scalars else ():
        for _ in range(2):
            case = _test(variant, "signed_zero", rng)
            vals = list(case.values)
            for bit, i in enumerate(scalars):
                vals[i] = NP[variant.signature.args[i].dtype](-0.0 if combo >> bit & 1 else 0.0)
            out.append(Test(case.seed, tuple(vals)))
    return out


def _placed(variant: Variant, test: Test, value: float, where: int | None) -> Test:
    """`value` at position `where` of every input buffer of the variant's element type; with
    `where` None, zeros of alternating sign starting with `value`."""
    vals = list(test.values)
    for i, arg in enumerate(variant.signature.args):
        if arg.pointer and arg.role != "out" and arg.dtype is variant.dtype:
            arr = np.array(vals[i], dtype=NP[arg.dtype])
            if where is None:
                sign = np.where(np.arange(arg.length) % 2 == 0, 1.0, -1.0) * np.copysign(1, value)
                arr = np.copysign(np.zeros(arg.length), sign).astype(NP[arg.dtype])
            else:
                arr[where] = value
            vals[i] = arr
    return Test(test.seed, tuple(vals))


#: Seed bit the oracle harness reads as "end every buffer at an inaccessible page".
FENCED = 1 << 63
BANDS = ("high_band", "low_band", "positive", "negative")


def _specials(dt: DType) -> np.ndarray:
    t = NP[dt]
    return _float_specials(t) if dt.is_float else _int_specials(t)


def _filled(variant: Variant, test: Test, value: np.generic) -> Test:
    """Every input buffer of the variant's element type filled with `value`."""
    vals = list(test.values)
    for i, arg in enumerate(variant.signature.args):
        if arg.pointer and arg.role != "out" and arg.dtype is variant.dtype:
            vals[i] = np.full(arg.length, value, dtype=NP[arg.dtype])
    return Test(test.seed, tuple(vals))


def _opposite(variant: Variant, test: Test, position: int, rng: np.random.Generator) -> Test:
    """The selection's extreme at `position`, alone on its side of the sign boundary, and the
    runner-up (beyond every other element, on their side) right after it."""
    sign = SELECTIONS[variant.template]
    x = [a.name for a in variant.signature.args].index("x")
    t = NP[variant.signature.args[x].dtype]
    n = variant.signature.args[x].length
    if np.issubdtype(t, np.floating):
        base = -sign * (np.abs(rng.standard_normal(n)) * 10.0 ** rng.uniform(-2, 2) + 1e-3)
        spike, runner_up = sign * (abs(rng.standard_normal()) + 1e-3), -sign * 5e-4
    else:
        ii = np.iinfo(t)
        mid = 0 if ii.min < 0 else 1 << (ii.bits - 1)
        if sign > 0:  # base in [min, mid - 1), the runner-up mid - 1, the extreme >= mid
            base = rng.integers(int(ii.min), mid - 1, n, endpoint=False)
            spike, runner_up = int(rng.integers(mid, int(ii.max), endpoint=True)), mid - 1
        else:  # base in (mid, max], the runner-up mid, the extreme < mid
            base = rng.integers(mid + 1, int(ii.max), n, endpoint=True)
            spike, runner_up = int(rng.integers(int(ii.min), mid, endpoint=False)), mid
    base = np.asarray(base, dtype=np.float64 if np.issubdtype(t, np.floating) else np.int64)
    base[position] = spike
    if position + 1 < n:
        base[position + 1] = runner_up
    vals = list(test.values)
    vals[x] = base.astype(t)
    return Test(test.seed, tuple(vals))

def _repeated(variant: Variant, test: Test, runs: bool, rng: np.random.Generator) -> Test:
    vals = list(test.values)
    for i, arg in enumerate(variant.signature.args):
        if arg.pointer and arg.role != "out" and arg.length > 1:
            n = arg.length
            if runs:
                starts = np.flatnonzero(np.r_[True, rng.random(n - 1) < 0.3])
                index = starts[np.searchsorted(starts, np.arange(n), side="right") - 1]
            else:
                index = np.arange(n) // 2 * 2
            vals[i] = np.asarray(vals[i])[index].copy()
    return Test(test.seed, tuple(vals))


_KIND = {"in": 0, "out": 1, "inout": 2}


def encode(variant: Variant, cases: list[Test]) -> bytes:
    """The harness's test file (format in oracle_harness.c)."""
    sig = variant.signature
    ret = sig.ret
    head = [b"ARMGYMO1", struct.pack("<4I", len(cases), len(sig.args),
                                     0 if ret is None else 2 if ret.is_float else 1,
                                     ret.size if ret else 0)]
    for a in sig.args:
        kind = 2 if a.pointer else 1 if a.dtype.is_float else 0
        head.append(struct.pack("<5I", kind, a.dtype.size, a.length, _KIND[a.role],
                                a.dtype.size if a.dtype.is_float else 0))
    body = []
    for case in cases:
        body.append(struct.pack("<Q", case.seed))
        for a, v in zip(sig.args, case.values, strict=True):
            if a.pointer:
                arr = np.ascontiguousarray(v, dtype=NP[a.dtype])
                assert arr.shape == (a.length,), (variant.id, a.name, arr.shape)
                body.append(arr.tobytes())
            else:
                raw = np.asarray(v, dtype=NP[a.dtype]).tobytes()
                body.append(raw + bytes(8 - len(raw)))
    return b"".join(head + body)


#: Selections up to this many elements get a second test per position, approached (below).
APPROACHED = 64


def _approached(variant: Variant, test: Test, position: int, rng: np.random.Generator,
                runner_up: bool) -> Test:
    """The selection's extreme at `position`, every element before it a new running extreme
    (a strictly monotone run of random steps toward it), those after it random on the far side
    of it, the first of them just short of it when `runner_up`: a compare chain unrolled with
    one branch per element reaches each element on the path after an update as well as on the
    path after none, and this test takes the first path to every position."""
    sign = SELECTIONS[variant.template]
    x = [a.name for a in variant.signature.args].index("x")
    t = NP[variant.signature.args[x].dtype]
    n = variant.signature.args[x].length
    if np.issubdtype(t, np.floating):  # quarters: exact in every float type at these sizes
        steps = rng.integers(1, 8, n + 1) * 0.25
        start = -float(rng.integers(40, 200)) * 0.25
        run = start + np.cumsum(steps)  # strictly increasing; run[position] is the extreme
        after = run[position] - rng.integers(1, 400, n) * 0.25
        near = run[position] - 0.25
    else:
        ii = np.iinfo(t)
        unit = 1 if ii.bits == 8 else int(rng.integers(1, 1000))
        steps = rng.integers(1, 3, n + 1) * unit
        start = int(ii.min) + int(rng.integers(0, 6)) * unit
        run = start + np.cumsum(steps).astype(np.int64)
        after = rng.integers(int(ii.min), int(run[position]), n, endpoint=False)
        near = int(run[position]) - 1
    out = np.where(np.arange(n) <= position, run[:n], after)
    if runner_up and position + 1 < n:
        out[position + 1] = near
    if sign < 0:  # mirrored: a strictly decreasing run toward the minimum
        out = -out if np.issubdtype(t, np.floating) or np.iinfo(t).min < 0 else \
            (int(np.iinfo(t).max) + int(np.iinfo(t).min)) - out
        if np.issubdtype(t, np.integer) and np.iinfo(t).min < 0:  # -x of a signed range: shift
            out = out - 1  # maps [min, max] onto [min, max] exactly (-(min) - 1 = max)
    vals = list(test.values)
    vals[x] = np.asarray(out).astype(t)
    return Test(test.seed, tuple(vals))


def approached_tests(variant: Variant, rng: np.random.Generator) -> list[Test]:
    """Two tests per position of a selection of at most APPROACHED elements (with and without a
    runner-up right after the extreme); none for other templates."""
    if variant.template not in SELECTIONS or variant.params["n"] > APPROACHED:
        return []
    return [_approached(variant, _test(variant, "random", rng), p, rng, runner_up)
            for p in range(variant.params["n"]) for runner_up in (True, False)]
