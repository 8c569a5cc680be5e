"""The mutation instrument itself (bench/mutants): its operators, its oracle and one small run,
all with the real assembler, linker and emulator.

The oracle decides what counts as a wrong kernel in the instrument's figures, so each of its
rules is shown to fire on a hand-made mutant of a real baseline: an unwritten register, a
dropped element, a clobbered callee-saved register, a write past a buffer or into a const
input, a kernel that never returns or runs off its end, and, on the other side, edits that
keep the function (operands of a commutative add swapped; a dot product without contraction).
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not an installed package

from bench.mutants import inputs, mutate, oracle, report, run  # noqa: E402
from toolchain import baselines, kernels  # noqa: E402
from toolchain.errors import ErrorKind  # noqa: E402
from toolchain.settings import get_settings  # noqa: E402

SUM = "sum_reduce_n17_int32"


def _clang(variant_id: str) -> str:
    return baselines.get(kernels.get(variant_id), "clang", settings=get_settings()).assembly


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_operators_are_deterministic_and_cover_every_class() -> None:
    v = kernels.get("argmax_n100_int32")
    pools = [mutate.candidates(baselines.get(v, c, settings=get_settings()).assembly, v.params)
             for c in ("clang", "gcc")]
    classes = {m.cls for pool in pools for m in pool}
    assert classes == set(mutate.CLASSES)
    for pool in pools:
        first = mutate.pick(pool, random.Random(7), lambda m: True, 12)
        again = mutate.pick(pool, random.Random(7), lambda m: True, 12)
        assert first == again and len(first) == 12
        assert len({m.cls for m in first}) >= 5  # classes taken in turn
    # gcc spells branches and immediates its own way: both are mutated.
    gcc = {m.what for m in pools[1]}
    assert any(w.startswith(("bne ->", "bgt ->", "bge ->", "blt ->", "ble ->")) for w in gcc)


def test_oracle_tests_make_every_edge_position_decisive() -> None:
    v = kernels.get("argmax_n1023_float32")
    cases = inputs.tests(v, 3)
    spikes = {int(c.values[0].argmax()) for c in cases}
    assert set(range(24)) | set(range(1023 - 24, 1023)) <= spikes
    assert any(set(range(r, 1023, 16)) <= spikes for r in range(16))  # every 16-block shows
    small = kernels.get("min_reduce_n128_uint32")
    assert {int(c.values[0].argmin()) for c in inputs.tests(small, 3)} == set(range(128))
    assert len(cases) >= 57 + 48
    # the extreme alone on its side of zero at every position of the last 192: every residue of
    # a lost lane of up to 64 elements per iteration; buffers fenced by an inaccessible page
    alone = {int(c.values[0].argmax()) for c in cases
             if np.count_nonzero(np.asarray(c.values[0]) > 0) == 1}
    assert set(range(1023 - 192, 1023)) | set(range(64)) <= alone
    assert sum(c.seed & inputs.FENCED != 0 for c in cases) == 4
    assert any(np.all(np.isnan(c.values[0])) for c in cases)  # each special value everywhere
    assert inputs.encode(v, cases) == inputs.encode(v, inputs.tests(v, 3))


@pytest.fixture(scope="module")
def judged() -> Iterator[dict[str, oracle.Judgement]]:
    """One oracle run over hand-made mutants of two real baselines."""
    out: dict[str, oracle.Judgement] = {}
    dirs: list[Path] = []
    base = _clang(SUM)
    ret, add = "\tret\n.Lfunc_end0", "\tadd\tw0, w9, w8"
    sum_mutants = {
        "swapped operands": _edit(base, "add\tv1.4s, v3.4s, v1.4s", "add\tv1.4s, v1.4s, v3.4s"),
        "last element dropped": _edit(base, "add\tw0, w9, w8", "mov\tw0, w9"),
        "unwritten register": _edit(base, "add\tw0, w9, w8", "add\tw0, w9, w10"),
        "x19 clobbered": _edit(base, ret, "\tmov\tx19, xzr\n" + ret),
        "write before the start": _edit(base, add, "\tstur\tw9, [x0, #-4]\n" + add),
        "write past the end": _edit(base, add, "\tstr\tw9, [x0, #68]\n" + add),
        "const input written": _edit(base, add, "\tstr\tw9, [x0, #4]\n" + add),
        "read past the end": _edit(base, add, "\tldr\tw10, [x0, #68]\n" + add),
        "never returns": _edit(base, ret, "1:\tb\t1b\n.Lfunc_end0"),
        "runs off its end": _edit(base, ret, ".Lfunc_end0"),
    }  # fmt: skip
    dot = _clang("dot_n17_float32")
    unfused = "\n".join(
        _unfuse(line) if line.strip().startswith("fmadd") else line for line in dot.splitlines()
    )
    for variant_id, mutants in ((SUM, sum_mutants), ("dot_n17_float32", {"unfused": unfused})):
        workdir = oracle.workspace(f"test-{variant_id}-")
        dirs.append(workdir)
        group = oracle.Group(kernels.get(variant_id), 5, workdir, get_settings().cache_dir)
        for name, text in mutants.items():
            assert group.try_mutant(text) == (True, ""), name
        outcomes = group.run()
        refs = outcomes[: len(oracle.REFERENCES)]
        for i, ref in enumerate(refs):
            out[f"{variant_id} reference {i}"] = oracle.judge(refs, ref)
        for name, outcome in zip(mutants, outcomes[len(refs):], strict=True):
            out[name] = oracle.judge(refs, outcome)
    yield out
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


def _unfuse(line: str) -> str:
    """fmadd d, a, b, c -> fmul s31, a, b; fadd d, s31, c: the C's own rounding, uncontracted."""
    d, a, b, c = (x.strip() for x in line.split(None, 1)[1].split(","))
    return f"\tfmul\ts31, {a}, {b}\n\tfadd\t{d}, {c}, s31"


def test_the_references_agree_and_equivalent_edits_are_equivalent(judged: dict) -> None:
    for name, j in judged.items():
        if "reference" in name:
            assert j.equivalent, (name, j)
    assert judged["swapped operands"].equivalent
    assert judged["unfused"].equivalent  # uncontracted is the C at -O0: a legal evaluation


@pytest.mark.parametrize(("name", "reason"), [
    ("last element dropped", "outputs differ"),
    ("unwritten register", "outputs differ"),
    ("x19 clobbered", "x19-x29 not restored"),
    ("write before the start", "guard zone written"),
    ("write past the end", "guard zone written"),  # the first test; fenced ones would fault
    ("const input written", "const input changed"),
    ("read past the end", "dies by signal"),
    ("never returns", "runs past its time budget"),
    ("runs off its end", "dies by signal"),
])  # fmt: skip
def test_each_oracle_rule_rejects_its_mutant(judged: dict, name: str, reason: str) -> None:
    j = judged[name]
    assert not j.equivalent and reason in j.reason, j


def test_an_unwritten_register_differs_on_the_first_test(judged: dict) -> None:
    """The entry registers are random per test, so reading x10 is wrong at once; the run stops
    at that first difference (every test after it is marked not run)."""
    j = judged["unwritten register"]
    assert j.differing == 1 and j.tests >= 57 and "test 0 of" in j.reason, j


def test_a_small_run_end_to_end(tmp_path: Path) -> None:
    """Phase 1-3 and the report on a handful of mutants: real oracle, real verify()."""
    result = run.execute(11, 4, 1, variant_ids=[SUM], progress=False)
    mutants = result["mutants"]
    assert len(mutants) == 4 and {m.compiler for m in mutants} == {"clang", "gcc"}
    kinds = {"pass", *(k.value for k in ErrorKind)}
    assert all(m.verdict in kinds and m.tests >= 57 for m in mutants)
    doc = report.document(result)
    report.write(doc, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    s = saved["summary"]
    assert s["mutants"] == 4 == s["equivalent"] + s["non_equivalent"] + s["infra_errors"]
    assert s["killed"] == sum(m["killed"] for m in saved["mutants"] if not m["equivalent"])
    assert (tmp_path / "kill_rate.png").stat().st_size > 10_000
    assert "targets" in report.table(doc)
    again = run.execute(11, 4, 1, variant_ids=[SUM], progress=False)["mutants"]
    assert [(m.id, m.what, m.equivalent) for m in again] == \
        [(m.id, m.what, m.equivalent) for m in mutants]


def _oracle(variant_id: str, texts: list[str]) -> tuple[oracle.Group, list[oracle.Outcome]]:
    """One oracle run of `texts` (mutants of `variant_id`) with the run's seed, 2026."""
    workdir = oracle.workspace(f"test-{variant_id}-")
    try:
        group = oracle.Group(kernels.get(variant_id), 2026, workdir, get_settings().cache_dir)
        for text in texts:
            assert group.try_mutant(text) == (True, "")
        outcomes = group.run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return group, outcomes


def _delete(text: str, line: str, nth: int) -> str:
    lines = text.splitlines()
    del lines[[i for i, x in enumerate(lines) if x.strip() == line][nth]]
    return "\n".join(lines) + "\n"


def test_an_approached_extreme_decides_gccs_compare_chain() -> None:
    """gcc compiles argmax at n = 17 into a chain of compares with a branch per element and a
    second chain for the path after an update. Deleting `bmi .L49` on that path (after x[14]
    became the maximum) skips x[15]: it returns 16 when x[14] < x[15] > x[16] > x[14]. Only a
    run of new maxima reaches that path, so the mutant matches every test before the oracle's
    own approached tests and differs on one of them (the 0.6.4 run judged it equivalent)."""
    v = kernels.get("argmax_n17_float32")
    gcc = baselines.get(v, "gcc", settings=get_settings()).assembly
    group, outcomes = _oracle(v.id, [_delete(gcc, "bmi\t.L49", 1)])
    refs, mutant = outcomes[: len(oracle.REFERENCES)], outcomes[-1]
    j = oracle.judge(refs, mutant)
    approached = len(inputs.approached_tests(v, np.random.default_rng(0)))
    first = next(t for t, f in enumerate(mutant.flags) if f & oracle.NOT_RUN) - 1
    assert approached == 2 * 17 and not j.equivalent and "outputs differ" in j.reason, j
    assert first >= len(group.cases) - approached, first
    # each approached test: a strictly increasing run up to the maximum, nothing above it after
    for case in inputs.approached_tests(v, np.random.default_rng(1)):
        x = np.asarray(case.values[0])
        p = int(x.argmax())
        assert np.all(np.diff(x[: p + 1]) > 0) and np.all(x[p + 1:] < x[p])


@pytest.mark.parametrize(("variant_id", "line", "new", "by_split"), [
    ("dot_n1000_float64", "mov\tw9, #1000", "\tmov\tw9, #999", True),  # SVE to 992, fmadd after
    ("l2_norm_sq_n100_float64", "b.lo\t.LBB0_2", "\tb.hs\t.LBB0_2", False),  # all by fmadd
    ("layernorm_n1023_float32", "b.lo\t.LBB0_14", "\tb.hs\t.LBB0_14", True),  # variance tail
])  # fmt: skip
def test_partly_contracted_evaluations_are_equivalent(variant_id: str, line: str, new: str,
                                                      by_split: bool) -> None:
    """The 0.6.4 run's three contraction survivors are legal evaluations of the C (the same
    terms in the same order, some multiply-adds fused): one of the split references (or the
    fully contracted C) matches each bit for bit on every test."""
    lines = _clang(variant_id).splitlines()
    i = next(k for k, x in enumerate(lines) if x.strip().startswith(line))
    lines[i] = new
    _, outcomes = _oracle(variant_id, ["\n".join(lines) + "\n"])
    j = oracle.judge(outcomes[: len(oracle.REFERENCES)], outcomes[-1])
    assert j.equivalent and (j.by_split > 0) == by_split, j


def test_the_split_family_is_bounded_and_strict() -> None:
    """A split far from both ends of the loop (clang's dot at n = 1000 with its SVE loop ending
    at 488, the scalar fmadd loop doing the rest) is outside the family: non-equivalent; and so
    is a family member (the SVE loop ending at 992) whose scalar terms are read as floats."""
    base = _clang("dot_n1000_float64")
    middle = base.replace("mov\tw9, #1000", "mov\tw9, #488")
    lines = base.replace("mov\tw9, #1000", "mov\tw9, #999").splitlines()
    k = next(i for i, x in enumerate(lines) if x.strip().startswith("fmadd"))
    lines[k:k + 1] = ["\tfcvt\ts1, d1", "\tfcvt\td1, s1", lines[k]]  # the scalar tail's terms
    narrowed = "\n".join(lines) + "\n"
    _, outcomes = _oracle("dot_n1000_float64", [middle, narrowed])
    refs = outcomes[: len(oracle.REFERENCES)]
    for outcome in outcomes[len(refs):]:
        j = oracle.judge(refs, outcome)
        assert not j.equivalent and "outputs differ" in j.reason, j


def test_split_source_switches_only_loops_with_a_multiply_add() -> None:
    src, loops = oracle.split_source(kernels.get("layernorm_n1023_float32").c_source)
    assert loops == 2 and src.count("FP_CONTRACT ON") == 2 and "oracle_fused(1, i)" in src
    assert oracle.split_source(kernels.get("max_reduce_n17_float32").c_source)[1] == 0


def test_per_template_raises_every_template_and_keeps_the_draw() -> None:
    """--per-template K: every template gets at least K mutants' quota, --mutants stays a lower
    bound, the variants are the same and no quota falls (each baseline's seeded draw is only
    extended, so the mutants of the smaller run are the first of the larger one's)."""
    base = run.plan(2026, 3000)
    raised = run.plan(2026, 3000, per_template=120)
    assert [v.id for v, _ in base] == [v.id for v, _ in raised]
    per: dict[str, int] = {}
    for (v, q), (_, r) in zip(base, raised, strict=True):
        assert all(r[c] >= q[c] for c in run.COMPILERS)
        per[v.template] = per.get(v.template, 0) + sum(r.values())
    assert min(per.values()) >= 120 and sum(per.values()) >= 3000
    assert run.plan(2026, 3000, per_template=120) == raised  # reproducible from the seed


def _scored(verdict: str, k: int) -> run.Mutant:
    return run.Mutant(id=f"v:clang:{k}", variant="v", template="t", dtype="int32",
                      compiler="clang", cls="register", line=1, what="", before="", after="",
                      text="", equivalent=False, verdict=verdict)


def test_one_mutant_the_gate_could_not_judge_withholds_the_verdict() -> None:
    """Every judged mutant killed, but one infra error (a tool missing, say): not a score."""
    killed = [_scored("wrong_output", k) for k in range(200)]
    assert report.summary({"mutants": killed})["targets_met"]
    s = report.summary({"mutants": [*killed, _scored(run.INFRA, 200)]})
    assert s["kill_rate"] == 1.0 and s["infra_errors"] == 1 and not s["targets_met"]
