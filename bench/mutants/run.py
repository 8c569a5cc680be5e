"""The instrument's three phases: make and classify mutants, score them through the gate, and
take the survivors apart.

1. Per variant (a worker process each): draw mutants of its clang and gcc baselines, keep those
   that assemble and change the object, and classify them all in one oracle run.
2. Per mutant: `toolchain.verify.verify()` with a seed of its own, verdict cache off.
3. Per surviving non-equivalent mutant: its outputs against the clang reference (tests, positions,
   ulps), so a report says what kind of wrong kernel passes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import shutil
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from toolchain import baselines, kernels
from toolchain.errors import ErrorKind
from toolchain.kernels.model import Variant
from toolchain.settings import get_settings
from toolchain.verify import verify

from . import mutate, oracle

COMPILERS = ("clang", "gcc")
#: Rejections that do not take the correctness reward away: they do not kill a mutant.
NOT_KILLING = {ErrorKind.cross_check_disagreement.value}
INFRA = ErrorKind.infra_error.value


@dataclass
class Mutant:
    id: str  # <variant>:<compiler>:<k>
    variant: str
    template: str
    dtype: str
    compiler: str
    cls: str
    line: int
    what: str
    before: str
    after: str | None
    text: str
    equivalent: bool = False
    oracle_reason: str = ""
    differing: int = 0
    tests: int = 0
    verdict: str = ""  # "pass" or the error kind
    message: str = ""
    deviation: dict[str, Any] = field(default_factory=dict)

    @property
    def killed(self) -> bool:
        return self.verdict not in ("pass", INFRA, *NOT_KILLING)

    def to_json(self, with_text: bool = False) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["killed"] = self.killed
        if not with_text:
            del out["text"]
        return out


def plan(seed: int, count: int, templates: Iterable[str] | None = None,
         variant_ids: Iterable[str] | None = None) -> tuple[list[Variant], int]:
    """The variants to mutate and how many mutants per (variant, compiler).

    Every (template, dtype) pair gets one power-of-two and one odd-shaped variant, drawn with the
    seed; `variant_ids` overrides the draw (the instrument's own test uses it)."""
    if variant_ids:
        chosen = [kernels.get(v) for v in variant_ids]
    else:
        rng = random.Random(f"plan:{seed}")
        wanted = set(templates) if templates else None
        pairs: dict[tuple[str, str], list[Variant]] = {}
        for v in kernels.suite():
            if wanted is None or v.template in wanted:
                pairs.setdefault((v.template, v.dtype.value), []).append(v)
        chosen = []
        for key in sorted(pairs):
            for odd in (False, True):
                group = [v for v in pairs[key] if kernels.odd_shaped(v) == odd]
                if group:
                    chosen.append(rng.choice(group))
    per = max(1, math.ceil(count / (2 * len(chosen))))
    return chosen, per


@dataclass
class GroupResult:
    variant: str
    workdir: str
    mutants: list[Mutant]
    drawn: int
    not_assembling: int
    identical: int
    oracle_s: float


def classify(job: tuple[str, int, int, str]) -> GroupResult:
    """Phase 1 for one variant (runs in a worker process)."""
    import time

    variant_id, seed, per, root = job
    start = time.perf_counter()
    variant = kernels.get(variant_id)
    workdir = oracle.workspace(f"{variant_id}-", root)
    group = oracle.Group(variant, seed, workdir, get_settings().cache_dir)
    mutants: list[Mutant] = []
    stats = {"drawn": 0, "does not assemble": 0, "same object as its baseline": 0}
    for compiler in COMPILERS:
        text = baselines.get(variant, compiler).assembly
        lines = text.splitlines()
        rng = random.Random(f"mutants:{seed}:{variant_id}:{compiler}")

        def accept(m: mutate.Mutation, lines: list[str] = lines,
                   compiler: str = compiler) -> bool:
            stats["drawn"] += 1
            mutated = m.apply(lines)
            ok, why = group.try_mutant(mutated)
            if not ok:
                stats[why] += 1
                return False
            mutants.append(Mutant(
                id=f"{variant_id}:{compiler}:{len(mutants)}", variant=variant_id,
                template=variant.template, dtype=variant.dtype.value, compiler=compiler,
                cls=m.cls, line=m.line + 1, what=m.what, before=lines[m.line].strip(),
                after=m.after.strip() if m.after is not None else None, text=mutated))
            return True

        mutate.pick(mutate.candidates(text, variant.params), rng, accept, per)
    outcomes = group.run()
    refs = outcomes[: len(oracle.REFERENCES)]
    for mutant, outcome in zip(mutants, outcomes[len(oracle.REFERENCES):], strict=True):
        j = oracle.judge(refs, outcome)
        mutant.equivalent, mutant.oracle_reason = j.equivalent, j.reason
        mutant.differing, mutant.tests = j.differing, j.tests
    return GroupResult(variant_id, str(workdir), mutants, stats["drawn"],
                       stats["does not assemble"], stats["same object as its baseline"],
                       time.perf_counter() - start)


def gate_seed(seed: int, mutant_id: str) -> int:
    return int(hashlib.sha256(f"gate:{seed}:{mutant_id}".encode()).hexdigest()[:15], 16)


def score(job: tuple[str, str, int]) -> tuple[str, str]:
    """Phase 2 for one mutant: (verdict, message); an infra error is retried once."""
    variant_id, text, seed = job
    settings = dataclasses.replace(get_settings(), verdict_cache=False)
    for _ in range(2):
        v = verify(variant_id, text, seed, settings=settings)
        kind = "pass" if v.passed else str(v.error_kind.value if v.error_kind else "unknown")
        if kind != INFRA:
            break
    return kind, v.message[:300]


def survivor_detail(group: GroupResult, index: int) -> dict[str, Any]:
    """Phase 3: how mutant `index` of a group (0-based among its mutants) differs from clang."""
    variant = kernels.get(group.variant)
    workdir = Path(group.workdir)
    ref = oracle.dump(variant, workdir, 0)
    mine = oracle.dump(variant, workdir, len(oracle.REFERENCES) + index)
    return oracle.deviation(variant, ref, mine)


def execute(seed: int, count: int, jobs: int, templates: Iterable[str] | None = None,
            variant_ids: Iterable[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """The whole run; returns the results document (see report.py)."""
    import time

    start = time.perf_counter()
    variants, per = plan(seed, count, templates, variant_ids)
    baselines.build(variants, COMPILERS, ("-O3",), jobs=jobs, progress=progress)
    root = oracle.workspace("armgym-mutants-")
    try:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            groups = list(tqdm(pool.map(classify, [(v.id, seed, per, root) for v in variants]),
                               total=len(variants), desc="oracle", unit="variant",
                               disable=not progress))
            phase1 = time.perf_counter() - start
            mutants = [m for g in groups for m in g.mutants]
            work = [(m.variant, m.text, gate_seed(seed, m.id)) for m in mutants]
            verdicts = list(tqdm(pool.map(score, work, chunksize=4), total=len(work),
                                 desc="gate", unit="mutant", disable=not progress))
        phase2 = time.perf_counter() - start - phase1
        for m, (kind, message) in zip(mutants, verdicts, strict=True):
            m.verdict, m.message = kind, message
        by_group = {g.variant: g for g in groups}
        survivors = [m for m in mutants if not m.equivalent and not m.killed
                     and m.verdict != INFRA]
        for m in tqdm(survivors, desc="survivors", unit="mutant",
                      disable=not progress or not survivors):
            g = by_group[m.variant]
            m.deviation = survivor_detail(g, g.mutants.index(m))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "seed": seed, "requested": count, "per_variant_compiler": per,
        "variants": [v.id for v in variants],
        "drawn": sum(g.drawn for g in groups),
        "not_assembling": sum(g.not_assembling for g in groups),
        "identical_objects": sum(g.identical for g in groups),
        "seconds": {"oracle": round(phase1, 1), "gate": round(phase2, 1),
                    "total": round(time.perf_counter() - start, 1)},
        "mutants": mutants,
    }
