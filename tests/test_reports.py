"""Reports from a history seeded through the store (the API's own write path: submit, claim,
finish with a verdict): the plots are real PNGs, the summary's figures are the store views'
figures and the seeded data's, and the exports hold every attempt."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from reports.__main__ import main
from store import attempts, db, keys

RUN = "seeded-run"
STEPS = 6
PER_STEP = 10
TEMPLATES = {"relu_n64_float32": "relu", "dot_n1024_float32": "dot",
             "vec_add_n1024_float32": "vec_add"}
FAILURES = ("format_error", "assemble_error", "wrong_output", "abi_violation", "timeout")


def plan() -> list[list[tuple[str, str | None, float | None]]]:
    """Per step, per attempt: (variant, error kind or None for a pass, speedup). The model gets
    better: step s passes s + 2 of 10; one infra_error in step 2."""
    steps = []
    variants = list(TEMPLATES)
    for s in range(STEPS):
        row = []
        for i in range(PER_STEP):
            variant = variants[i % len(variants)]
            if s == 2 and i == PER_STEP - 1:
                row.append((variant, "infra_error", None))
            elif i < s + 2:
                row.append((variant, None, round(0.6 + 0.25 * s + 0.1 * i, 3)))
            else:
                row.append((variant, FAILURES[(s + i) % len(FAILURES)], None))
        steps.append(row)
    return steps


def additive(kind: str | None, speedup: float | None) -> float | None:
    if kind == "infra_error":
        return None
    fmt = 0.0 if kind == "format_error" else 1.0
    syntax = 0.0 if kind in ("format_error", "assemble_error") else 1.0
    correct = 1.0 if kind is None else 0.0
    return fmt + syntax + correct + (min(max(speedup or 1.0, 1.0), 3.0) - 1.0)


def verdict(variant: str, kind: str | None, speedup: float | None) -> dict[str, Any]:
    """A verdict as the verifier writes it, in the parts the store reads."""
    passed = kind is None
    gates = [{"name": "syntax", "passed": kind not in ("format_error", "assemble_error"),
              "error_kind": kind, "message": kind or "", "details": {}}]
    if passed:
        gates.append({"name": "performance", "passed": True, "error_kind": None, "message": "",
                      "details": {"speedup": speedup, "cycles": 1000 / (speedup or 1)}})
    total = additive(kind, speedup)
    reward = None if total is None else {
        "components": {"format": 0.0 if kind == "format_error" else 1.0, "syntax": 1.0,
                       "correctness": float(passed), "speedup": speedup,
                       "speedup_withheld": False},
        "profiles": {"additive": total,
                     "binary_plus_speedup": min(max(speedup, 1), 3) - 1 if passed else 0.0}}
    return {"variant_id": variant, "seed": 7, "passed": passed, "error_kind": kind,
            "message": kind or "all gates passed", "gates": gates, "versions": {"as": "test"},
            "verifier_version": "test", "sandbox": "none", "reward": reward,
            "timings": {"syntax": 0.01}}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'farm.sqlite'}"
    db.upgrade(url)
    engine = db.make_engine(url, pool_size=1)
    sessions = db.sessions(engine)
    with sessions() as session, session.begin():
        key = keys.ensure(session, "alice", "agk_reports_test", keys.DEFAULT_SCOPES)
    for s, row in enumerate(plan()):
        items = [attempts.NewAttempt(variant_id=v, assembly=f"; step {s} attempt {i}\n",
                                     template=TEMPLATES[v], completion=True, seed=i)
                 for i, (v, _, _) in enumerate(row)]
        with sessions() as session:
            done = attempts.submit(session, key.id, items, run_id=RUN, step=s, model="m")
        for attempt_id, (variant, kind, speedup) in zip(done.attempt_ids, row, strict=True):
            with sessions() as session:
                assert attempts.claim(session, attempt_id, "worker-1")
            with sessions() as session:
                assert attempts.finish(session, attempt_id, verdict(variant, kind, speedup),
                                       "worker-1")
    engine.dispose()
    return url


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def view(url: str, sql: str) -> list[dict[str, Any]]:
    engine = db.make_engine(url, pool_size=1)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(sql), {"run_id": RUN})]
    engine.dispose()
    return rows


def test_plots_and_summary_match_the_views(seeded: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plots", RUN, "--db", seeded, "--out", str(tmp_path)]) == 0
    for name in ("learning_curve.png", "error_mix.png", "speedup_by_template.png"):
        path = tmp_path / name
        width, height = png_size(path)
        assert width >= 600 and height >= 300 and path.stat().st_size > 15_000, name

    summary = json.loads((tmp_path / "summary.json").read_text())
    steps = view(seeded, "SELECT * FROM run_step_summary WHERE run_id = :run_id ORDER BY step")
    assert [s["step"] for s in summary["steps"]] == list(range(STEPS))
    for got, want in zip(summary["steps"], steps, strict=True):
        for column in ("attempts", "done", "infra_errors", "passed", "correctness_rate",
                       "mean_reward", "best_speedup"):
            assert got[column] == pytest.approx(want[column]), (got["step"], column)

    seeded_rows = [a for row in plan() for a in row]
    rewards = [r for r in (additive(k, s) for _, k, s in seeded_rows) if r is not None]
    passed = sum(k is None for _, k, _ in seeded_rows)
    totals = summary["totals"]
    assert totals["attempts"] == STEPS * PER_STEP and totals["infra_errors"] == 1
    assert totals["scored"] == STEPS * PER_STEP - 1 and totals["passed"] == passed
    assert totals["correctness_rate"] == pytest.approx(passed / (STEPS * PER_STEP - 1))
    assert totals["mean_reward"] == pytest.approx(sum(rewards) / len(rewards))
    best = max((s, v) for v, k, s in seeded_rows if k is None)
    assert summary["best"]["speedup"] == pytest.approx(best[0])
    assert summary["best"]["variant_id"] == best[1]
    outcomes = view(seeded, "SELECT outcome, SUM(attempts) AS attempts FROM "
                            "error_kind_histogram WHERE run_id = :run_id GROUP BY outcome")
    assert {o["outcome"]: o["attempts"] for o in summary["outcomes"]} == \
        {o["outcome"]: o["attempts"] for o in outcomes}

    text_summary = (tmp_path / "summary.txt").read_text()
    assert text_summary == capsys.readouterr().out.split("wrote ")[0]
    assert f"{STEPS * PER_STEP} attempts" in text_summary and "1 infra_error" in text_summary
    assert f"best speedup {best[0]:.2f}x ({best[1]}" in text_summary


def test_export_csv_and_parquet(seeded: str, tmp_path: Path) -> None:
    csv_path, parquet_path = tmp_path / "attempts.csv", tmp_path / "attempts.parquet"
    assert main(["export", RUN, "--db", seeded, "--out", str(csv_path)]) == 0
    assert main(["export", RUN, "--db", seeded, "--out", str(parquet_path),
                 "--with-assembly"]) == 0
    with csv_path.open() as f:
        rows = {r["attempt_id"]: r for r in csv.DictReader(f)}
    table = pq.read_table(parquet_path).to_pylist()
    assert len(rows) == len(table) == STEPS * PER_STEP
    plan_of = {f"; step {s} attempt {i}\n": a for s, row in enumerate(plan())
               for i, a in enumerate(row)}
    for record in table:
        variant, kind, speedup = plan_of[record["assembly"]]
        row = rows[record["attempt_id"]]
        assert row["variant_id"] == record["variant_id"] == variant
        assert (row["error_kind"] or None) == record["error_kind"] == kind
        assert record["speedup"] == (pytest.approx(speedup) if speedup else None)
        want = additive(kind, speedup)
        assert record["reward_additive"] == (None if want is None else pytest.approx(want))
        assert json.loads(row["meta"] or "null") is None and row["run_id"] == RUN
    assert [r["step"] for r in table] == sorted(r["step"] for r in table)
    assert table[0]["created_at"].tzinfo is not None and isinstance(table[0]["passed"], bool)


def test_best_kernels_as_files(seeded: str, tmp_path: Path) -> None:
    assert main(["best", "--run", RUN, "--db", seeded, "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"{v}{ext}" for v in TEMPLATES for ext in (".s", ".verdict.json"))
    record = json.loads((tmp_path / "dot_n1024_float32.verdict.json").read_text())
    assert record["verdict"]["passed"] and record["found_by"] == "alice"
    assert (tmp_path / "dot_n1024_float32.s").read_text().startswith("; step")


def test_unknown_run_is_a_clear_error(seeded: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plots", "no-such-run", "--db", seeded, "--out", str(tmp_path)]) == 1
    assert "no attempts in run 'no-such-run'" in capsys.readouterr().err
