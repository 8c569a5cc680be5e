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
        refs = outcomes[:3]
        for i, ref in enumerate(refs):
            out[f"{variant_id} reference {i}"] = oracle.judge(refs, ref)
        for name, outcome in zip(mutants, outcomes[3:], strict=True):
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
