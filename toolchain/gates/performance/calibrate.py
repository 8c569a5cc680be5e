"""Calibrate the cross-check bands on honest code, and report the model's faithfulness.

`armgym calibrate` measures clang and gcc output (every variant at the given levels, and one
variant per template x dtype, chosen by hash, at the extra levels) and the honest hand-written
kernels of honest.py on one fixed input, and records in calibration.json the bands derived from
them, with the command that produced them; every point goes to calibration-points.json (the
plot in docs/ and `--from-points` read it). Held-out honest code (odd-shaped variants, the
hand-written kernels marked held out) is judged by the bands but never shapes them: its
false-positive rate is reported beside the calibration's own.

`armgym faithfulness` prints what brief §8 asks of the cost model: vec_add float32 at n=1024,
2048, 4096 scales about 2x per doubling under the executed-blocks model while the whole-listing
figure stays flat, and clang -O0 is estimated slower than -O3 for (nearly) every variant.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from tqdm import tqdm

from ... import baselines, kernels
from ...errors import GateName
from ...kernels.model import Variant
from ...settings import Settings
from ...verdict import PerformanceDetails
from . import crosscheck, honest, mca
from .gate import PROBES, _measure_assembly, cached, measured, model_versions
from .honest import RELU_BRANCHY, RELU_FCSEL, kernel_text

DEFAULT_MARGIN = 0.15
# The OSACA / llvm-mca band of a block class is at most this wide (hi / lo): the observed range
# of honest code, widened by DEFAULT_MARGIN or by as much as stays within it.
MAX_WIDTH = 4.0
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
POINTS = crosscheck.CALIBRATION.with_name("calibration-points.json")
HAND = "hand-written"  # the `source` of a hand-written kernel's point (else the compiler)


class Point(NamedTuple):
    """One honest measurement, as the bands see it."""

    variant: str
    source: str  # the compiler, or HAND
    detail: str  # the optimisation level, or the hand-written kernel's name
    kind: str  # crosscheck.block_class of its executed work
    ratio: float  # OSACA / llvm-mca
    ipc: float

    @property
    def name(self) -> str:
        return f"{self.variant} {self.source} {self.detail}"


def point(variant: str, source: str, detail: str, m: dict[str, Any]) -> Point:
    return Point(variant, source, detail, m["block_class"],
                 *crosscheck.figures_of(m["osaca_cycles"], m["instructions"],
                                        m["pipeline_cycles"]))


def sample(variants: Iterable[Variant]) -> list[Variant]:
    """One variant per template x dtype: the one whose id hashes lowest (stable, covering)."""
    best: dict[tuple[str, str], Variant] = {}
    for v in variants:
        key = (v.template, v.dtype.value)
        h = hashlib.sha256(v.id.encode()).hexdigest()
        if key not in best or h < hashlib.sha256(best[key].id.encode()).hexdigest():
            best[key] = v
    return sorted(best.values(), key=lambda v: v.id)


Job = tuple[str, str, str]  # (variant, compiler, opt)


def jobs_for(variants: Sequence[Variant], opts: Sequence[str],
             extra_opts: Sequence[str] = ()) -> list[Job]:
    """Every variant at `opts`, and a sample of them (one per template x dtype and shape
    family, power-of-two or odd) at `extra_opts`, for both compilers."""
    picked = [v for odd in (False, True)
              for v in sample(v for v in variants if kernels.odd_shaped(v) == odd)]
    out = [(v.id, c, o) for v in variants for c in baselines.COMPILERS for o in opts]
    out += [(v.id, c, o) for v in picked for c in baselines.COMPILERS
            for o in extra_opts if o not in opts]
    return out


def _measure(job: Job, settings: Settings) -> dict[str, Any]:
    variant_id, compiler, opt = job
    seed, test = PROBES[0]
    return measured(kernels.get(variant_id), compiler, opt, seed, test, settings).to_json()


def measure_all(jobs: Sequence[Job], workers: int | None, desc: str, *,
                settings: Settings) -> list[dict[str, Any]]:
    """Measure every (variant, compiler, opt) on the calibration input, with a progress bar;
    the measurements in the jobs' order (the pool processes get the caller's settings)."""
    for compiler in {c for _, c, _ in jobs}:  # compile every baseline first, in parallel
        opts = sorted({o for _, c, o in jobs if c == compiler})
        baselines.build([kernels.get(v) for v in sorted({v for v, _, _ in jobs})], [compiler],
                        opts, jobs=workers, progress=False, settings=settings)
    with ProcessPoolExecutor(max_workers=workers or settings.jobs) as pool:
        return list(tqdm(pool.map(partial(_measure, settings=settings), jobs,
                                  chunksize=2), total=len(jobs), desc=desc,
                         unit="kernel", file=sys.stderr))


def points_of(jobs: Sequence[Job], workers: int | None, *, settings: Settings) -> list[Point]:
    """The jobs measured (or found in the cache) as points."""
    found = measure_all(jobs, workers, "calibrate", settings=settings)
    return [point(*job, m) for job, m in zip(jobs, found, strict=True)]


def cached_points(jobs: Sequence[Job], *, settings: Settings) -> list[Point]:
    """Every job's measurement already in the cache under the current model: what an
    interrupted `armgym calibrate` got through (`--from-cache`)."""
    seed, test = PROBES[0]
    out = []
    for vid, compiler, opt in jobs:
        found = cached(kernels.get(vid), compiler, opt, seed, test, settings)
        if found is not None:
            out.append(point(vid, compiler, opt, found))
    return out


def hand_written(chosen: Sequence[honest.Kernel], *, settings: Settings) -> list[Point]:
    """The hand-written kernels measured like compiler output (a few seconds each)."""
    seed, test = PROBES[0]
    return [point(k.variant, HAND, k.name, _measure_assembly(
        kernels.get(k.variant), k.text, seed, test, settings).to_json()) for k in chosen]


def distribution(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    out = {}
    for q in QUANTILES:
        out[f"p{round(q * 100)}"] = round(ordered[min(len(ordered) - 1,
                                                      round(q * (len(ordered) - 1)))], 4)
    out["mean"] = round(statistics.fmean(ordered), 4)
    return out


SLACK = 1.001  # how far inside a band its honest extremes lie, at least (as a factor)
# A class with fewer honest points than this says little about where the rest of its honest
# code lies: its band is placed near where all honest code lies instead of around its points.
FEW = 5


def _window(values: Sequence[float], width: float, centre: float) -> list[float] | None:
    """A band exactly `width` wide (hi / lo) holding the observed range: centred
    (geometrically) on that range, or for fewer than FEW values as near as the range allows to
    `centre`, the median of all honest code. None when the range is wider than the band."""
    lo, hi = min(values) / SLACK, max(values) * SLACK
    half = math.sqrt(width)
    if hi / lo >= width:
        return None
    c = min(max(centre, hi / half), lo * half) if len(values) < FEW else math.sqrt(lo * hi)
    band = [math.ceil(c / half * 1e4) / 1e4, math.floor(c * half * 1e4) / 1e4]
    return band if band[0] < min(values) and max(values) < band[1] else None


def _band(values: Sequence[float], margin: float) -> list[float]:
    """The observed range widened by `margin` on each side (as factors)."""
    return [math.floor(min(values) / (1 + margin) * 1e4) / 1e4,
            math.ceil(max(values) * (1 + margin) * 1e4) / 1e4]


def bands(points: Sequence[Point], margin: float) -> tuple[dict[str, Any], dict[str, float]]:
    """(bands, classes too wide for one band) from honest points: per class (template / kind
    of work), exactly MAX_WIDTH wide around the class's honest range (_window; per variant
    and kind where a template's honest code of one kind spreads wider than that); per template
    (`T/*`, for a kind of work none of its honest code does), the same around all of its
    honest code, or that range widened by `margin` where it spreads wider.

    Per kind rather than per template where both would fit: a template's honest code spreads
    up to 4x across kinds, so a band around all of it leaves its extremes no room, and honest
    code it never saw fell outside more often (cross-validated, `report`)."""
    per_class: dict[str, list[Point]] = {}
    per_variant: dict[str, list[Point]] = {}
    for p in points:
        template = kernels.get(p.variant).template
        for cls in (crosscheck.class_key(template, p.kind), crosscheck.class_key(template, "*")):
            per_class.setdefault(cls, []).append(p)
        per_variant.setdefault(crosscheck.class_key(p.variant, p.kind), []).append(p)
    centre = statistics.median(p.ratio for p in points)
    band: dict[str, Any] = {"ratio": _band([p.ratio for p in points], margin),
                            "ipc": _band([p.ipc for p in points], margin),
                            "centre": round(centre, 4)}
    classes: dict[str, Any] = {}
    too_wide: dict[str, float] = {}

    def add(cls: str, found: Sequence[Point], fallback: bool) -> bool:
        """Record cls's band; when its range is too wide for one, report it and record the
        widened range if `fallback`, else nothing."""
        r = [p.ratio for p in found]
        window = _window(r, MAX_WIDTH, centre)
        if window is None:
            too_wide[cls] = round(max(r) / min(r), 3)
            if not fallback:
                return False
        classes[cls] = {"ratio": window or _band(r, margin),
                        "ipc": _band([p.ipc for p in found], margin)}
        return True

    for cls, found in sorted(per_class.items()):
        if add(cls, found, cls.endswith("/*")):
            continue
        template, kind = cls.split("/")  # this kind alone spreads too wide: a band per variant
        for vcls, vfound in sorted(per_variant.items()):
            vid, vkind = vcls.split("/")
            if vkind == kind and kernels.get(vid).template == template:
                add(vcls, vfound, True)
    band["classes"] = classes
    return band, too_wide


def cross_validated(points: Sequence[Point], margin: float, folds: int = 2) -> dict[str, Any]:
    """The bands' false-positive rate on honest compiler output they did not see: the variants
    split into `folds` by hash, each fold judged by bands calibrated on the others (and every
    hand-written kernel)."""
    def fold(p: Point) -> int:
        return int(hashlib.sha256(p.variant.encode()).hexdigest(), 16) % folds

    which: list[str] = []
    by_class: dict[str, int] = {}
    judged = 0
    for k in range(folds):
        train = [p for p in points if p.source == HAND or fold(p) != k]
        test = [p for p in points if p.source != HAND and fold(p) == k]
        judged += len(test)
        found = flagged(test, bands(train, margin)[0])
        which += found
        for p in test:
            if p.name in found:
                cls = crosscheck.class_key(kernels.get(p.variant).template, p.kind)
                by_class[cls] = by_class.get(cls, 0) + 1
    return {"folds": folds, "count": len(which), "of": judged, "which": which[:20],
            "by_class": dict(sorted(by_class.items()))}


def flagged(points: Sequence[Point], band: dict[str, Any]) -> list[str]:
    """The points the cross-check would flag under `band`."""
    limits = crosscheck.parse_bands(band)
    out = []
    for p in points:
        (rlo, rhi), (ilo, ihi) = limits.of(p.variant, kernels.get(p.variant).template, p.kind)
        if not (rlo <= p.ratio <= rhi and ilo <= p.ipc <= ihi):
            out.append(p.name)
    return out


def _rate(points: Sequence[Point], band: dict[str, Any]) -> dict[str, Any]:
    found = flagged(points, band)
    return {"count": len(found), "of": len(points), "which": found[:20]}


def report(points: Sequence[Point], held_out: Sequence[Point], margin: float, command: str,
           sample: str, opts: Sequence[str]) -> dict[str, Any]:
    """The bands from `points`, their widths, and their false positives on `points` and on the
    held-out honest code."""
    band, too_wide = bands(points, margin)
    classes = band["classes"]
    widths = {c: {k: round(b[k][1] / b[k][0], 3) for k in ("ratio", "ipc")}
              for c, b in classes.items()}
    ratios, ipcs = [p.ratio for p in points], [p.ipc for p in points]
    by_ratio, by_ipc = sorted(points, key=lambda p: p.ratio), sorted(points, key=lambda p: p.ipc)
    counts: dict[str, int] = {}
    for p in points:
        template = kernels.get(p.variant).template
        for cls in (crosscheck.class_key(template, p.kind), crosscheck.class_key(template, "*")):
            counts[cls] = counts.get(cls, 0) + 1
    compiled = [p for p in points if p.source != HAND]
    return {
        "command": command,
        "band": band,
        "widths": widths,
        "too_wide": too_wide,
        "classes": dict(sorted(counts.items())),
        "false_positives": _rate(points, band),
        "cross_validated": cross_validated(points, margin),
        "held_out": {"false_positives": _rate(held_out, band),
                     "compiled": len([p for p in held_out if p.source != HAND]),
                     "hand_written": len([p for p in held_out if p.source == HAND])},
        "margin": margin,
        "max_width": MAX_WIDTH,
        "input": {"seed": PROBES[0][0], "test": PROBES[0][1]},
        "population": {"variants": len({p.variant for p in compiled}),
                       "measurements": len(compiled),
                       "hand_written": len(points) - len(compiled),
                       "variant_ids": sorted({p.variant for p in compiled}),
                       "compilers": list(baselines.COMPILERS), "opts": list(opts),
                       "by_opt": {o: len([p for p in compiled if p.detail == o])
                                  for o in sorted({p.detail for p in compiled})},
                       "sample": sample},
        "distribution": {"ratio": distribution(ratios), "ipc": distribution(ipcs)},
        "extremes": {"lowest_ratio": [p.name for p in by_ratio[:5]],
                     "highest_ratio": [p.name for p in by_ratio[-5:]],
                     "lowest_ipc": [p.name for p in by_ipc[:5]],
                     "highest_ipc": [p.name for p in by_ipc[-5:]]},
        "versions": model_versions(),
        "model": {"llvm-mca": list(mca.MCA_FLAGS)},
    }


def write(report: dict[str, Any], points: Sequence[Point], held_out: Sequence[Point],
          path: Path = crosscheck.CALIBRATION, points_path: Path = POINTS) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    columns = list(Point._fields) + ["held_out"]
    rows = [[*p, False] for p in points] + [[*p, True] for p in held_out]
    points_path.write_text("{\"columns\": " + json.dumps(columns) + ",\n \"points\": [\n" +
                           ",\n".join(json.dumps(r) for r in rows) + "\n]}\n")
    crosscheck.calibrated.cache_clear()


def read_points(path: Path = POINTS) -> tuple[list[Point], list[Point]]:
    """(calibration points, held-out points) as `write` recorded them."""
    rows = json.loads(path.read_text())["points"]
    return ([Point(*r[:-1]) for r in rows if not r[-1]],
            [Point(*r[:-1]) for r in rows if r[-1]])


def code_of(p: Point, settings: Settings) -> str:
    """The assembly a point measured: the compiler's output, or the hand-written kernel."""
    if p.source == HAND:
        return next(k.text for k in honest.KERNELS if k.name == p.detail)
    return baselines.get(kernels.get(p.variant), p.source, p.detail,
                         settings=settings).assembly


_INSTRUCTION = re.compile(r"^\s*(?:[.\w$]+:\s*)?[a-z][\w.]*(?:\s|$)", re.M)


def instructions_in(text: str) -> int:
    """How many instruction lines an assembly text has (labels, directives and comments not)."""
    return len(_INSTRUCTION.findall(text))


def remeasured(points: Sequence[Point], pattern: str | None, longer: int | None,
               workers: int | None, *, settings: Settings) -> tuple[list[Point], int]:
    """(the points, those whose code matches `pattern` or has more than `longer` instructions
    measured again under the current model; how many were). After a change to an estimate
    that only code of some form can see (a pattern matching every such form, and every call:
    library code is not in the text), the rest of the points stand as recorded, and a
    calibration costs minutes instead of hours."""
    found = re.compile(pattern, re.M) if pattern else None

    def again(p: Point) -> bool:
        code = code_of(p, settings)
        return bool(found and found.search(code)) or (
            longer is not None and instructions_in(code) > longer)

    redo = [i for i, p in enumerate(points) if again(p)]
    jobs = [(points[i].variant, points[i].source, points[i].detail) for i in redo
            if points[i].source != HAND]
    fresh = iter(points_of(jobs, workers, settings=settings) if jobs else [])
    hands = iter(hand_written([next(k for k in honest.KERNELS if k.name == points[i].detail)
                               for i in redo if points[i].source == HAND],
                              settings=settings))
    out = list(points)
    for i in redo:
        out[i] = next(hands) if points[i].source == HAND else next(fresh)
    return out, len(redo)


# --------------------------------------------------------------------------- faithfulness

SCALING_IDS = ("vec_add_n1024_float32", "vec_add_n2048_float32", "vec_add_n4096_float32")


def scaling(settings: Settings) -> list[dict[str, Any]]:
    """Executed-blocks cycles and the whole-listing figure of clang -O3 vec_add float32."""
    seed, test = PROBES[0]
    rows = []
    for vid in SCALING_IDS:
        v = kernels.get(vid)
        m = measured(v, "clang", "-O3", seed, test, settings)
        listing = mca.whole_listing(baselines.get(v, "clang", "-O3", settings=settings).assembly,
                                    settings)
        rows.append({"variant": vid, "cycles": m.cycles,
                     "whole_listing": listing["total_cycles"]})
    for prev, row in zip(rows, rows[1:], strict=False):
        row["ratio"] = round(row["cycles"] / prev["cycles"], 3)
        row["whole_listing_ratio"] = round(row["whole_listing"] / prev["whole_listing"], 3)
    return rows


def o0_vs_o3(variants: Sequence[Variant], workers: int | None, *,
             settings: Settings) -> dict[str, Any]:
    """How many variants clang -O0 is estimated slower than clang -O3 for."""
    jobs = [(v.id, "clang", o) for v in variants for o in ("-O0", "-O3")]
    found = measure_all(jobs, workers, "O0 vs O3", settings=settings)
    cycles = {(vid, opt): m["cycles"] for (vid, _, opt), m in zip(jobs, found, strict=True)}
    slower = [v.id for v in variants if cycles[(v.id, "-O0")] > cycles[(v.id, "-O3")]]
    not_slower = sorted(set(v.id for v in variants) - set(slower))
    return {"variants": len(variants), "o0_slower": len(slower),
            "share": round(len(slower) / len(variants), 4), "exceptions": not_slower}


# Scalar relu over 1,024 floats on random data, with a data-dependent branch and without
# (honest.RELU_BRANCHY, honest.RELU_FCSEL).
RELU_ID = "relu_n1024_float32"


def branchy_vs_branchless(settings: Settings, seed: int = 11) -> dict[str, Any]:
    """The branchy relu against its fcsel form on the attempt's random input: the ratio, and
    the factor the predictor accounts for (branchy total / branchy pipeline cycles)."""
    from ...verify import verify

    out: dict[str, Any] = {}
    for name, body in (("branchy", RELU_BRANCHY), ("fcsel", RELU_FCSEL)):
        v = verify(RELU_ID, kernel_text(body), seed, settings=settings)
        if not v.passed:
            raise RuntimeError(f"{name} relu failed: {v.error_kind}: {v.message}")
        perf = v.gate(GateName.performance)
        assert perf is not None and isinstance(perf.details, PerformanceDetails)
        d, branches = perf.details, perf.details.branch_prediction or {}
        out[name] = {"cycles": d.cycles, **{k: branches[k] for k in (
            "pipeline_cycles", "branch_cycles", "conditional", "conditional_mispredicted")}}
    b, f = out["branchy"], out["fcsel"]
    out["ratio"] = round(b["cycles"] / f["cycles"], 3)
    out["pipeline_ratio"] = round(b["pipeline_cycles"] / f["pipeline_cycles"], 3)
    out["predictor_factor"] = round(b["cycles"] / b["pipeline_cycles"], 3)
    return out
