"""Calibrate the cross-check band on honest compiler output, and report the model's faithfulness.

`armgym calibrate` measures clang and gcc at -O1, -O2 and -O3 for every variant (or, with
--sample, one variant per template x dtype, chosen by hash) on one fixed input, and records the
distribution of OSACA / llvm-mca and of IPC with the band derived from it in calibration.json,
together with the command that produced it. The band is the observed range widened by a margin,
so honest compiler output is never flagged while a kernel that makes the two models diverge
further than any compiler output does is.

`armgym faithfulness` prints what brief §8 asks of the cost model: vec_add float32 at n=1024,
2048, 4096 scales about 2x per doubling under the executed-blocks model while the whole-listing
figure stays flat, and clang -O0 is estimated slower than -O3 for (nearly) every variant.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ... import baselines, kernels
from ...kernels.model import Variant
from ...settings import get_settings
from . import crosscheck, mca
from .gate import PROBES, cached, measured, model_versions

OPTS = ("-O1", "-O2", "-O3")
DEFAULT_MARGIN = 0.15
# The OSACA / llvm-mca band of a block class is at most this wide (hi / lo): the observed range
# of honest code, widened by DEFAULT_MARGIN or by as much as stays within it.
MAX_WIDTH = 4.0
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


def sample(variants: Iterable[Variant]) -> list[Variant]:
    """One variant per template x dtype: the one whose id hashes lowest (stable, covering)."""
    best: dict[tuple[str, str], Variant] = {}
    for v in variants:
        key = (v.template, v.dtype.value)
        h = hashlib.sha256(v.id.encode()).hexdigest()
        if key not in best or h < hashlib.sha256(best[key].id.encode()).hexdigest():
            best[key] = v
    return sorted(best.values(), key=lambda v: v.id)


def _measure(job: tuple[str, str, str]) -> tuple[str, str, str, dict[str, Any]]:
    variant_id, compiler, opt = job
    seed, test = PROBES[0]
    m = measured(kernels.get(variant_id), compiler, opt, seed, test, get_settings())
    return variant_id, compiler, opt, m.to_json()


def measure_all(jobs: Sequence[tuple[str, str, str]], workers: int | None,
                desc: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Measure every (variant, compiler, opt) on the calibration input, with a progress bar."""
    settings = get_settings()
    for compiler in {c for _, c, _ in jobs}:  # compile every baseline first, in parallel
        opts = sorted({o for _, c, o in jobs if c == compiler})
        baselines.build([kernels.get(v) for v in sorted({v for v, _, _ in jobs})], [compiler],
                        opts, jobs=workers, progress=False, settings=settings)
    with ProcessPoolExecutor(max_workers=workers or settings.jobs) as pool:
        return list(tqdm(pool.map(_measure, jobs, chunksize=2), total=len(jobs), desc=desc,
                         unit="kernel", file=sys.stderr))


def distribution(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    out = {}
    for q in QUANTILES:
        out[f"p{round(q * 100)}"] = round(ordered[min(len(ordered) - 1,
                                                      round(q * (len(ordered) - 1)))], 4)
    out["mean"] = round(statistics.fmean(ordered), 4)
    return out


def _centred(values: Sequence[float], width: float) -> list[float] | None:
    """A band exactly `width` wide (hi / lo) around the geometric centre of the observed range,
    or None when the range itself, widened by the rounding slack, is wider than that."""
    lo, hi = min(values), max(values)
    centre = math.sqrt(lo * hi)
    band = [math.ceil(centre / math.sqrt(width) * 1e4) / 1e4,
            math.floor(centre * math.sqrt(width) * 1e4) / 1e4]
    return band if band[0] < lo and hi < band[1] else None


def _band(values: Sequence[float], margin: float) -> list[float]:
    """The observed range widened by `margin` on each side (as factors)."""
    return [math.floor(min(values) / (1 + margin) * 1e4) / 1e4,
            math.ceil(max(values) * (1 + margin) * 1e4) / 1e4]


def calibrate(variants: Sequence[Variant], margin: float, workers: int | None,
              command: str, sampled: bool, opts: Sequence[str] = OPTS) -> dict[str, Any]:
    jobs = [(v.id, c, o) for v in variants for c in baselines.COMPILERS for o in opts]
    rows = measure_all(jobs, workers, "calibrate")
    return report(rows, margin, command, "one variant per template x dtype" if sampled else "all",
                  opts)


def calibrated_variants() -> list[Variant]:
    """The variants calibration.json's population covers (the suite when it names none)."""
    data = json.loads(crosscheck.CALIBRATION.read_text())
    ids = set(data["population"].get("variant_ids", ()))
    return [v for v in kernels.suite() if not ids or v.id in ids]


def cached_rows(variants: Sequence[Variant],
                opts: Sequence[str] = OPTS) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Every calibration-input measurement already in the cache under the current model: what
    an interrupted `armgym calibrate` got through (`--from-cache`)."""
    settings = get_settings()
    seed, test = PROBES[0]
    rows = []
    for v in variants:
        for compiler in baselines.COMPILERS:
            for opt in opts:
                found = cached(v, compiler, opt, seed, test, settings)
                if found is not None:
                    rows.append((v.id, compiler, opt, found))
    return rows


def report(rows: Sequence[tuple[str, str, str, dict[str, Any]]], margin: float, command: str,
           sample: str, opts: Sequence[str]) -> dict[str, Any]:
    """Bands from measurements of honest code: per class (template / kind of work), exactly
    MAX_WIDTH wide around the class's honest range (per variant where a template's honest code
    of one kind spreads wider than that); per template (`T/*`, for a kind of work none of its
    honest code does), the same around all of its honest code, or that range widened by
    `margin` where it spreads wider."""
    ratios, ipcs = [], []
    worst: list[tuple[float, float, str]] = []
    kinds: list[tuple[str, str, str]] = []
    per_class: dict[str, tuple[list[float], list[float]]] = {}
    per_variant: dict[str, tuple[list[float], list[float]]] = {}
    for vid, comp, opt, m in rows:
        ratio = m["osaca_cycles"] / m["pipeline_cycles"]
        ipc = m["instructions"] / m["pipeline_cycles"]
        ratios.append(ratio)
        ipcs.append(ipc)
        worst.append((ratio, ipc, f"{vid} {comp} {opt}"))
        template, kind = kernels.get(vid).template, m["block_class"]
        kinds.append((vid, template, kind))
        for cls in (crosscheck.class_key(template, kind), crosscheck.class_key(template, "*")):
            found = per_class.setdefault(cls, ([], []))
            found[0].append(ratio)
            found[1].append(ipc)
        found = per_variant.setdefault(crosscheck.class_key(vid, kind), ([], []))
        found[0].append(ratio)
        found[1].append(ipc)
    band: dict[str, Any] = {"ratio": _band(ratios, margin), "ipc": _band(ipcs, margin)}
    classes: dict[str, Any] = {}
    too_wide: dict[str, float] = {}
    for cls, (r, i) in sorted(per_class.items()):
        centred = _centred(r, MAX_WIDTH)
        if cls.endswith("/*"):
            classes[cls] = {"ratio": centred or _band(r, margin), "ipc": _band(i, margin)}
            continue
        if centred is not None:
            classes[cls] = {"ratio": centred, "ipc": _band(i, margin)}
            continue
        # the template's honest code of this kind spreads too wide: a band per variant
        too_wide[cls] = round(max(r) / min(r), 3)
        template, kind = cls.split("/")
        for vcls, (vr, vi) in sorted(per_variant.items()):
            vid, vkind = vcls.split("/")
            if vkind == kind and kernels.get(vid).template == template:
                centred = _centred(vr, MAX_WIDTH)
                if centred is None:  # its two compilers' code alone spreads wider: reported
                    too_wide[vcls] = round(max(vr) / min(vr), 3)
                classes[vcls] = {"ratio": centred or _band(vr, margin),
                                 "ipc": _band(vi, margin)}
    band["classes"] = classes
    widths = {c: {k: round(b[k][1] / b[k][0], 3) for k in ("ratio", "ipc")}
              for c, b in classes.items()}
    flagged = [name for (ratio, ipc, name), (vid, template, kind) in zip(worst, kinds,
                                                                         strict=True)
               if not _inside(ratio, ipc, vid, template, kind, band)]
    by_ratio = sorted(worst)
    return {
        "command": command,
        "band": band,
        "widths": widths,
        "too_wide": too_wide,
        "classes": {c: len(r) for c, (r, _) in sorted(per_class.items())},
        "false_positives": {"count": len(flagged), "of": len(rows), "which": flagged[:20]},
        "margin": margin,
        "max_width": MAX_WIDTH,
        "input": {"seed": PROBES[0][0], "test": PROBES[0][1]},
        "population": {"variants": len({r[0] for r in rows}), "measurements": len(rows),
                       "variant_ids": sorted({r[0] for r in rows}),
                       "compilers": list(baselines.COMPILERS), "opts": list(opts),
                       "sample": sample},
        "distribution": {"ratio": distribution(ratios), "ipc": distribution(ipcs)},
        "extremes": {"lowest_ratio": [w[2] for w in by_ratio[:5]],
                     "highest_ratio": [w[2] for w in by_ratio[-5:]],
                     "lowest_ipc": [w[2] for w in sorted(worst, key=lambda w: w[1])[:5]],
                     "highest_ipc": [w[2] for w in sorted(worst, key=lambda w: w[1])[-5:]]},
        "versions": model_versions(),
        "model": {"llvm-mca": list(mca.MCA_FLAGS)},
    }


def _inside(ratio: float, ipc: float, variant: str, template: str, kind: str,
            band: dict[str, Any]) -> bool:
    """Whether the cross-check passes a measurement with these figures under `band`."""
    limits = crosscheck.parse_bands(band)
    (rlo, rhi), (ilo, ihi) = limits.of(variant, template, kind)
    return rlo <= ratio <= rhi and ilo <= ipc <= ihi


def write(report: dict[str, Any], path: Path = crosscheck.CALIBRATION) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    crosscheck.bands.cache_clear()


# --------------------------------------------------------------------------- faithfulness

SCALING_IDS = ("vec_add_n1024_float32", "vec_add_n2048_float32", "vec_add_n4096_float32")


def scaling() -> list[dict[str, Any]]:
    """Executed-blocks cycles and the whole-listing figure of clang -O3 vec_add float32."""
    settings = get_settings()
    seed, test = PROBES[0]
    rows = []
    for vid in SCALING_IDS:
        v = kernels.get(vid)
        m = measured(v, "clang", "-O3", seed, test, settings)
        listing = mca.whole_listing(baselines.get(v, "clang", "-O3", settings).assembly,
                                    settings)
        rows.append({"variant": vid, "cycles": m.cycles,
                     "whole_listing": listing["total_cycles"]})
    for prev, row in zip(rows, rows[1:], strict=False):
        row["ratio"] = round(row["cycles"] / prev["cycles"], 3)
        row["whole_listing_ratio"] = round(row["whole_listing"] / prev["whole_listing"], 3)
    return rows


def o0_vs_o3(variants: Sequence[Variant], workers: int | None) -> dict[str, Any]:
    """How many variants clang -O0 is estimated slower than clang -O3 for."""
    jobs = [(v.id, "clang", o) for v in variants for o in ("-O0", "-O3")]
    rows = measure_all(jobs, workers, "O0 vs O3")
    cycles = {(vid, opt): m["cycles"] for vid, _, opt, m in rows}
    slower = [v.id for v in variants if cycles[(v.id, "-O0")] > cycles[(v.id, "-O3")]]
    not_slower = sorted(set(v.id for v in variants) - set(slower))
    return {"variants": len(variants), "o0_slower": len(slower),
            "share": round(len(slower) / len(variants), 4), "exceptions": not_slower}


# Scalar relu over 1,024 floats on random data, with a data-dependent branch and without.
RELU_ID = "relu_n1024_float32"
RELU_BRANCHY = """
    mov x2, #0
1:  ldr s0, [x1, x2, lsl #2]
    fcmp s0, #0.0
    b.gt 2f
    movi d0, #0
2:  str s0, [x0, x2, lsl #2]
    add x2, x2, #1
    cmp x2, #1024
    b.ne 1b
    ret
"""
RELU_FCSEL = """
    mov x2, #0
    movi d1, #0
1:  ldr s0, [x1, x2, lsl #2]
    fcmp s0, #0.0
    fcsel s0, s0, s1, gt
    str s0, [x0, x2, lsl #2]
    add x2, x2, #1
    cmp x2, #1024
    b.ne 1b
    ret
"""


def kernel_text(body: str) -> str:
    return f"    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n{body}\n"


def branchy_vs_branchless(seed: int = 11) -> dict[str, Any]:
    """The branchy relu against its fcsel form on the attempt's random input: the ratio, and
    the factor the predictor accounts for (branchy total / branchy pipeline cycles)."""
    from ...verify import verify

    out: dict[str, Any] = {}
    for name, body in (("branchy", RELU_BRANCHY), ("fcsel", RELU_FCSEL)):
        v = verify(RELU_ID, kernel_text(body), seed)
        if not v.passed:
            raise RuntimeError(f"{name} relu failed: {v.error_kind}: {v.message}")
        d = next(g for g in v.gates if g.name == "performance").details
        out[name] = {"cycles": d["cycles"], **{k: d["branch_prediction"][k] for k in (
            "pipeline_cycles", "branch_cycles", "conditional", "conditional_mispredicted")}}
    b, f = out["branchy"], out["fcsel"]
    out["ratio"] = round(b["cycles"] / f["cycles"], 3)
    out["pipeline_ratio"] = round(b["pipeline_cycles"] / f["pipeline_cycles"], 3)
    out["predictor_factor"] = round(b["cycles"] / b["pipeline_cycles"], 3)
    return out
