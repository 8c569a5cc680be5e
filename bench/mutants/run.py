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
import gzip
import hashlib
import json
import random
import resource
import shutil
import time
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
    by_split: int = 0  # tests that only a partly contracted evaluation matched (oracle.py)
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
         variant_ids: Iterable[str] | None = None,
         per_template: int = 0) -> list[tuple[Variant, dict[str, int]]]:
    """The variants to mutate, each with how many mutants per compiler (`count` in all, or
    more: a template whose share is below `per_template` has its variants' quotas raised to
    reach it, so that its rate rests on that many mutants).

    Every (template, dtype) pair gets one power-of-two and one odd-shaped variant, drawn with the
    seed; `variant_ids` overrides the draw (the instrument's own test uses it). Raising a quota
    only extends the same seeded draw of each baseline, so a smaller run's mutants stay in."""
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
    slots = [(v, c) for v in chosen for c in COMPILERS]
    base, extra = divmod(max(count, len(slots)), len(slots))
    order = list(range(len(slots)))
    random.Random(f"extra:{seed}").shuffle(order)
    more = set(order[:extra])
    quota: dict[str, dict[str, int]] = {}
    for i, (v, c) in enumerate(slots):
        quota.setdefault(v.id, {})[c] = base + (i in more)
    for template in {v.template for v in chosen}:
        mine = [i for i in order if slots[i][0].template == template]  # seeded order
        short = per_template - sum(quota[slots[i][0].id][slots[i][1]] for i in mine)
        for k in range(max(0, short)):
            v, c = slots[mine[k % len(mine)]]
            quota[v.id][c] += 1
    return [(v, quota[v.id]) for v in chosen]


@dataclass
class GroupResult:
    variant: str
    mutants: list[Mutant]
    drawn: int
    not_assembling: int
    identical: int


def classify(job: tuple[str, int, dict[str, int], str]) -> GroupResult:
    """Phase 1 for one variant (runs in a worker process)."""
    variant_id, seed, quota, root = job
    variant = kernels.get(variant_id)
    workdir = oracle.workspace(f"{variant_id}-", root)
    group = oracle.Group(variant, seed, workdir, get_settings().cache_dir)
    mutants: list[Mutant] = []
    stats = {"drawn": 0, "does not assemble": 0, "same object as its baseline": 0}
    spare = 0
    for compiler in COMPILERS:
        text = baselines.get(variant, compiler, settings=get_settings()).assembly
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

        # A baseline with fewer candidates than its quota leaves the rest to the next one, so
        # that the variant, and with it the template, still gets its share.
        want = quota[compiler] + (spare if compiler != COMPILERS[0] else 0)
        got = mutate.pick(mutate.candidates(text, variant.params), rng, accept, want)
        spare = want - len(got)
    outcomes = group.run()
    shutil.rmtree(workdir, ignore_errors=True)
    refs = outcomes[: len(oracle.REFERENCES)]
    for mutant, outcome in zip(mutants, outcomes[len(oracle.REFERENCES):], strict=True):
        j = oracle.judge(refs, outcome)
        mutant.equivalent, mutant.oracle_reason = j.equivalent, j.reason
        mutant.differing, mutant.tests, mutant.by_split = j.differing, j.tests, j.by_split
    return GroupResult(variant_id, mutants, stats["drawn"], stats["does not assemble"],
                       stats["same object as its baseline"])


def gate_seed(seed: int, mutant_id: str) -> int:
    return int(hashlib.sha256(f"gate:{seed}:{mutant_id}".encode()).hexdigest()[:15], 16)


def score(job: tuple[str, str, int]) -> tuple[str, str]:
    """Phase 2 for one mutant: (verdict, message); an infra error is retried once."""
    variant_id, text, seed = job
    settings = get_settings().replace(verdict_cache=False)
    for _ in range(2):
        v = verify(variant_id, text, seed, settings=settings)
        kind = "pass" if v.passed else str(v.error_kind.value if v.error_kind else "unknown")
        if kind != INFRA:
            break
    return kind, v.message[:300]


def explain(job: tuple[str, int, list[str]]) -> list[dict[str, Any]]:
    """Phase 3 for the survivors of one variant: each one's outputs against clang's."""
    variant_id, seed, texts = job
    variant = kernels.get(variant_id)
    workdir = oracle.workspace(f"explain-{variant_id}-")
    try:
        group = oracle.Group(variant, seed, workdir, get_settings().cache_dir)
        for text in texts:
            group.try_mutant(text)
        group.link()
        ref = oracle.dump(variant, workdir, 0)
        return [oracle.deviation(variant, ref, oracle.dump(variant, workdir, i))
                for i in range(len(oracle.REFERENCES), len(oracle.REFERENCES) + len(texts))]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _recheck_one(job: tuple[str, int, list[str]]) -> list[oracle.Judgement]:
    variant_id, seed, texts = job
    variant = kernels.get(variant_id)
    workdir = oracle.workspace(f"recheck-{variant_id}-")
    try:
        group = oracle.Group(variant, seed, workdir, get_settings().cache_dir)
        for text in texts:
            if not group.try_mutant(text)[0]:
                raise RuntimeError(f"a mutant of {variant_id} no longer assembles")
        outcomes = group.run()
        refs = outcomes[: len(oracle.REFERENCES)]
        return [oracle.judge(refs, o) for o in outcomes[len(oracle.REFERENCES):]]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def recheck(data: dict[str, Any], jobs: int, progress: bool) -> int:
    """Judge the equivalent mutants of a saved phase 1 again with today's oracle tests (which
    only ever append tests, so a non-equivalent mutant stays so); returns how many flipped."""
    by_variant: dict[str, list[Mutant]] = {}
    for m in data["mutants"]:
        if m.equivalent:
            by_variant.setdefault(m.variant, []).append(m)
    work = [(vid, data["seed"], [m.text for m in ms]) for vid, ms in by_variant.items()]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        found = list(tqdm(pool.map(_recheck_one, work), total=len(work), desc="recheck",
                          unit="variant", disable=not progress))
    flipped = 0
    for ms, judgements in zip(by_variant.values(), found, strict=True):
        for m, j in zip(ms, judgements, strict=True):
            flipped += not j.equivalent
            m.equivalent, m.oracle_reason, m.differing, m.tests, m.by_split = (
                j.equivalent, j.reason, j.differing, j.tests, j.by_split)
    return flipped


def phase1(seed: int, count: int, jobs: int, templates: Iterable[str] | None,
           variant_ids: Iterable[str] | None, progress: bool,
           per_template: int = 0) -> dict[str, Any]:
    """Mutants and their oracle classes (what `--reuse` loads instead of recomputing)."""
    start = time.perf_counter()
    chosen = plan(seed, count, templates, variant_ids, per_template)
    variants = [v for v, _ in chosen]
    baselines.build(variants, COMPILERS, ("-O3",), jobs=jobs, progress=progress,
                    settings=get_settings())
    root = oracle.workspace("armgym-mutants-")
    try:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            groups = list(tqdm(pool.map(classify, [(v.id, seed, q, str(root)) for v, q in chosen]),
                               total=len(chosen), desc="oracle", unit="variant",
                               disable=not progress))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "seed": seed, "requested": count, "per_template": per_template,
        "variants": [v.id for v in variants],
        "baselines": {v.id: {c: hashlib.sha256(
            baselines.get(v, c, settings=get_settings()).assembly.encode()).hexdigest()[:16]
            for c in COMPILERS} for v in variants},
        "drawn": sum(g.drawn for g in groups),
        "not_assembling": sum(g.not_assembling for g in groups),
        "identical_objects": sum(g.identical for g in groups),
        "oracle_seconds": round(time.perf_counter() - start, 1),
        "mutants": [m for g in groups for m in g.mutants],
    }


def save_phase1(data: dict[str, Any], path: Path) -> None:
    out = {**data, "mutants": [m.to_json(with_text=True) for m in data["mutants"]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        json.dump(out, fh)


def load_phase1(path: Path) -> dict[str, Any]:
    """Phase 1 of an earlier run; refused when a baseline has changed since."""
    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    for vid, hashes in data["baselines"].items():
        for c, h in hashes.items():
            text = baselines.get(kernels.get(vid), c, settings=get_settings()).assembly
            now = hashlib.sha256(text.encode())
            if now.hexdigest()[:16] != h:
                raise SystemExit(f"{path}: the {c} baseline of {vid} has changed; rerun phase 1")
    fields = {f.name for f in dataclasses.fields(Mutant)}
    data["mutants"] = [Mutant(**{k: v for k, v in m.items() if k in fields})
                       for m in data["mutants"]]
    for m in data["mutants"]:
        m.verdict, m.message, m.deviation = "", "", {}
    return data


def execute(seed: int, count: int, jobs: int, templates: Iterable[str] | None = None,
            variant_ids: Iterable[str] | None = None, progress: bool = True,
            reuse: Path | None = None, save: Path | None = None,
            every: int = 1, recheck_equivalent: bool = False,
            verdicts_from: Path | None = None, per_template: int = 0) -> dict[str, Any]:
    """The whole run; returns the results document (see report.py). `every` scores only every
    k-th mutant (a quicker, still stratified look); `reuse` loads phase 1 from `save` of an
    earlier run; `recheck_equivalent` judges its equivalent mutants again with today's oracle;
    `verdicts_from` takes the gate's verdicts from an earlier results.json instead of scoring
    (only the mutants it holds); `per_template` raises each template's share to at least that
    many mutants (see `plan`)."""
    start = time.perf_counter()
    data = load_phase1(reuse) if reuse else phase1(seed, count, jobs, templates, variant_ids,
                                                    progress, per_template)
    if reuse and (templates or variant_ids):  # score only these of the saved mutants
        data["mutants"] = [m for m in data["mutants"] if (templates and m.template in templates)
                           or (variant_ids and m.variant in variant_ids)]
    flipped = recheck(data, jobs, progress) if reuse and recheck_equivalent else None
    if save and (not reuse or recheck_equivalent):
        save_phase1(data, save)
    seed = data["seed"]
    mutants = data["mutants"][::every]
    gate_start = time.perf_counter()
    if verdicts_from:
        earlier = {m["id"]: m for m in json.loads(verdicts_from.read_text())["mutants"]}
        mutants = [m for m in mutants if m.id in earlier]
        for m in mutants:
            m.verdict, m.message = earlier[m.id]["verdict"], earlier[m.id]["message"]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        if not verdicts_from:
            work = [(m.variant, m.text, gate_seed(seed, m.id)) for m in mutants]
            verdicts = list(tqdm(pool.map(score, work, chunksize=4), total=len(work),
                                 desc="gate", unit="mutant", disable=not progress))
            for m, (kind, message) in zip(mutants, verdicts, strict=True):
                m.verdict, m.message = kind, message
        gate_s = time.perf_counter() - gate_start
        survivors: dict[str, list[Mutant]] = {}
        for m in mutants:
            if not m.equivalent and not m.killed and m.verdict != INFRA:
                survivors.setdefault(m.variant, []).append(m)
        jobs3 = [(vid, seed, [m.text for m in ms]) for vid, ms in survivors.items()]
        details = list(tqdm(pool.map(explain, jobs3), total=len(jobs3), desc="survivors",
                            unit="variant", disable=not progress or not jobs3))
    for ms, found in zip(survivors.values(), details, strict=True):
        for m, d in zip(ms, found, strict=True):
            m.deviation = d
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {
        **{k: v for k, v in data.items() if k not in ("mutants", "baselines", "oracle_seconds")},
        "every": every, "reused_phase1": str(reuse) if reuse else None,
        "equivalent_flipped_by_recheck": flipped,
        "verdicts_from": str(verdicts_from) if verdicts_from else None,
        "seconds": {"oracle": data["oracle_seconds"] if not reuse else 0.0,
                    "gate": round(gate_s, 1), "total": round(time.perf_counter() - start, 1),
                    "cpu": round(usage.ru_utime + usage.ru_stime + own.ru_utime
                                 + own.ru_stime, 1)},
        "mutants": mutants,
    }
