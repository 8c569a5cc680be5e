"""`armgym prepare --warm`: fill the tool caches from the compiler baselines before the first
attempt, so that a cold machine does not launch llvm-objdump and llvm-mca for the code most
attempts share.

For each variant, compiler and optimisation level, the baseline's text goes through the same
functions an attempt's does, so exactly the entries an attempt looks up are written: the object
check's decoder pass (the object's words and the linked code's, decoder.Words), the
whole-listing figure (per exact text), and the measurement on the first probe input (the
cost model's per-cycle figures; at -O3 both probes, which every attempt's speedup needs). The
tools stay the authority: nothing is written that they did not compute just now.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import baselines, pipeline
from . import scratch as scratch_dirs
from .errors import InfraError
from .gates import syntax
from .gates.performance import gate, mca
from .kernels.model import Variant
from .settings import Settings

OPTS = ("-O1", "-O2", "-O3", "-Os")


@dataclass(frozen=True)
class Warmed:
    variant_id: str
    compiler: str
    opt: str
    error: str | None = None  # why this baseline warmed nothing (it decides no verdict)


def warm_one(variant: Variant, compiler: str, opt: str, settings: Settings) -> Warmed:
    """Every cache entry one baseline's text fills, as an attempt submitting it would."""
    try:
        text = baselines.get(variant, compiler, opt, settings=settings).assembly
        mca.whole_listing(text, settings)
        _decode(variant, text, settings)
        if opt == gate.BASELINE_OPT:
            gate.baseline_measurement(variant, compiler, *gate.PROBES[0], settings)
        else:
            gate.measured(variant, compiler, opt, *gate.PROBES[0], settings)
    except (InfraError, mca.UnpricedError) as exc:
        return Warmed(variant.id, compiler, opt, str(exc)[:200])
    return Warmed(variant.id, compiler, opt)


def _decode(variant: Variant, text: str, settings: Settings) -> None:
    """The object gate's decoder pass over the assembled text and its linked code."""
    scratch = scratch_dirs.make("warm")
    try:
        _, obj = syntax.assemble(text, scratch, settings)
        if obj is not None:
            pipeline.check_and_link(variant, obj, scratch, gate.PROBES[0][0], settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def warm(variants: Sequence[Variant], settings: Settings, opts: Sequence[str] = OPTS,
         jobs: int = 2, progress: Callable[[Warmed], None] | None = None) -> list[Warmed]:
    """warm_one over every (variant, compiler, opt), `jobs` at a time (the tools are
    processes, so threads keep `jobs` cores busy)."""
    work = [(v, c, o) for v in variants for c in baselines.COMPILERS for o in opts]
    out = []
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for done in pool.map(lambda w: warm_one(*w, settings), work):
            out.append(done)
            if progress:
                progress(done)
    return out
