"""The store: migrations up and down and in agreement with the models, on PostgreSQL and SQLite;
the documented example queries (docs/store.md) run on both; verdict columns tolerate fields the
verifier adds."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from store import admin, attempts, db, extract, keys
from store.models import Base
from store.queries import EXAMPLES
from toolchain.settings import get_settings
from toolchain.verify import verify

from .conftest import FARM, TAG, database_url
from .mix import VARIANTS, asm, honest

STORE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "store.md"
TABLES = {"api_keys", "assemblies", "attempts", "batches", "batch_items", "gate_results"}
VIEWS = {"run_step_summary", "variant_best", "error_kind_histogram"}

pytestmark = FARM


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite'}"
        return
    url = database_url(f"armgym_test_{TAG}_{request.node.name[-12:-1].replace('-', '_')}")
    admin.drop(url)
    admin.create(url)
    yield url
    admin.drop(url)


def diff(engine: Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_migrations_upgrade_downgrade_and_match_the_models(empty_db: str) -> None:
    engine = db.make_engine(empty_db, pool_size=1)
    db.upgrade(empty_db)
    names = inspect(engine)
    assert set(names.get_table_names()) >= TABLES
    assert set(names.get_view_names()) >= VIEWS
    assert diff(engine) == []  # what `alembic check` reports: models and migrations agree
    db.downgrade(empty_db)
    engine.dispose()
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert not inspect(engine).get_view_names()
    db.upgrade(empty_db)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


@pytest.fixture
def history(empty_db: str) -> Iterator[Engine]:
    """A small real history: two steps of a run, verdicts from the real verifier."""
    db.upgrade(empty_db)
    engine = db.make_engine(empty_db, pool_size=2)
    sessions = db.sessions(engine)
    with sessions() as session, session.begin():
        key = keys.ensure(session, "alice", "agk_history", keys.DEFAULT_SCOPES)
    good, bad = honest(VARIANTS[0], "gcc"), asm("    ret")
    items = [attempts.NewAttempt(VARIANTS[0], text, template="relu", step=step,
                                 idempotency_key=f"h{i}", seed=i)
             for i, (text, step) in enumerate([(good, 0), (bad, 0), (good, 1), (bad, 1),
                                               (bad, 1)])]
    with sessions() as session:
        done = attempts.submit(session, key.id, items, run_id="run-a", model="m")
    for attempt_id, item in zip(done.attempt_ids, items, strict=True):
        verdict = verify(item.variant_id, item.assembly, 5, settings=get_settings()).to_json()
        with sessions() as session:
            assert attempts.claim(session, attempt_id, "test") is not None
        with sessions() as session:
            assert attempts.finish(session, attempt_id, verdict, "test")
        with sessions() as session:  # a second delivery stores nothing
            assert attempts.claim(session, attempt_id, "test") is None
            assert not attempts.finish(session, attempt_id, verdict, "test")
    yield engine
    engine.dispose()


def run(engine: Engine, name: str, **params: object) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(EXAMPLES[name]), params)]


def test_example_queries(history: Engine) -> None:
    curve = run(history, "run_curve", run_id="run-a")
    assert [(r["step"], r["attempts"]) for r in curve] == [(0, 2), (1, 3)]
    assert curve[0]["correctness_rate"] == pytest.approx(1 / 2)
    assert curve[1]["correctness_rate"] == pytest.approx(1 / 3)
    errors = {r["outcome"]: int(r["attempts"]) for r in run(history, "run_errors",
                                                             run_id="run-a")}
    assert errors == {"wrong_output": 3, "pass": 2}
    best = run(history, "best_kernel", variant_id=VARIANTS[0])
    assert len(best) == 1 and best[0]["found_by"] == "alice" and best[0]["step"] == 0
    assert "kernel" in best[0]["assembly"]
    gates = run(history, "gate_failures")
    assert gates[0]["gate"] == "correctness" and gates[0]["failures"] == 3
    templates = run(history, "template_pass_rate")
    assert templates[0]["template"] == "relu" and templates[0]["pass_rate"] == pytest.approx(0.4)
    assert run(history, "unsolved_variants", run_id="run-a") == []
    runs = {r["run_id"]: r for r in run(history, "runs")}
    assert runs["run-a"]["steps"] == 2 and int(runs["run-a"]["attempts"]) == 5
    mix = run(history, "run_error_mix", run_id="run-a")
    assert [(r["step"], r["outcome"]) for r in mix] == sorted((r["step"], r["outcome"])
                                                              for r in mix)
    assert sum(int(r["attempts"]) for r in mix) == 5
    assert {r["outcome"] for r in mix} == {"pass", "wrong_output"}
    kernels = {r["variant_id"]: r for r in run(history, "best_kernels")}
    assert kernels[VARIANTS[0]]["found_by"] == "alice"
    assert kernels[VARIANTS[0]]["speedup"] == best[0]["speedup"]


def test_docs_document_the_example_queries() -> None:
    """docs/store.md shows each example query exactly as the tests run it."""
    page = STORE_PAGE.read_text()
    for name, sql in EXAMPLES.items():
        assert sql.strip() in page, f"docs/store.md lacks the example query {name!r}"
    section = re.search(r"^## Store and example queries$", page, re.M)
    assert section, "docs/store.md lacks the section 'Store and example queries'"


def test_stored_verdicts_load_from_the_database(empty_db: str) -> None:
    """Verdicts stored by verifier 0.6.3 (before the verdict had a model; and one without a
    reward object, as before the reward profiles) go into each backend as a worker stores them
    and come back through the API's read as the typed Verdict, unchanged (the old one gains a
    null reward), with the same columns."""
    from api.schemas import AttemptOut
    from store import reads
    from toolchain.verdict import Verdict

    cases = json.loads((Path(__file__).parents[1] / "data" / "stored_verdicts.json").read_text())
    old = {k: v for k, v in cases[0]["verdict"].items() if k != "reward"}
    docs = [c["verdict"] for c in cases] + [old]
    db.upgrade(empty_db)
    engine = db.make_engine(empty_db, pool_size=1)
    sessions = db.sessions(engine)
    with sessions() as session, session.begin():
        key = keys.ensure(session, "alice", "agk_stored", keys.DEFAULT_SCOPES)
    items = [attempts.NewAttempt(d["variant_id"], f"; stored {i}", seed=d["seed"],
                                 idempotency_key=f"s{i}") for i, d in enumerate(docs)]
    with sessions() as session:
        done = attempts.submit(session, key.id, items)
    for attempt_id, doc in zip(done.attempt_ids, docs, strict=True):
        with sessions() as session:
            assert attempts.claim(session, attempt_id, "test") is not None
        with sessions() as session:
            assert attempts.finish(session, attempt_id, doc, "test")
        with sessions() as session:
            row = reads.attempt(session, attempt_id)
        assert row is not None and row["verdict"] == doc
        verdict = Verdict.from_json(row["verdict"])
        assert verdict.to_json() == {"reward": None, **doc} and row["passed"] == verdict.passed
        assert row["reward"] == extract.columns(doc)["reward"]
        assert AttemptOut.model_validate(row).model_dump(mode="json")["verdict"] == \
            verdict.to_json()
    engine.dispose()


def test_jsonable_makes_any_figure_storable() -> None:
    weird = extract.jsonable({"x": float("nan"), "y": [float("-inf")], "z": "a\x00b"})
    assert weird == {"x": "nan", "y": ["-inf"], "z": "a\ufffdb"}


def _together(run: Callable[[str], None]) -> None:
    """`run("a")` and `run("b")` in two threads at once (they meet at a barrier of two)."""
    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_one_of_two_concurrent_claimers_and_one_of_two_finishers_wins(empty_db: str) -> None:
    """claim() is one conditional UPDATE returning the job and the attempt's text, finish()
    one conditional UPDATE before its gate rows: of two workers claiming a queued attempt at
    once (a message delivered twice, neither a redelivery), the second waits for the first's
    row lock (PostgreSQL) and then sees its live lease; of two finishing it at once, the
    second finds it done. So the verdict and its gate rows are stored exactly once, without
    deleting gate rows first (none exist before the attempt is done)."""
    db.upgrade(empty_db)
    engine = db.make_engine(empty_db, pool_size=2)
    sessions = db.sessions(engine)
    with sessions() as session, session.begin():
        key = keys.ensure(session, "alice", "agk_race", keys.DEFAULT_SCOPES)
    text_in = asm("    ret")
    with sessions() as session:
        done = attempts.submit(session, key.id, [attempts.NewAttempt(VARIANTS[0], text_in,
                                                                     seed=3)])
    attempt_id = done.attempt_ids[0]
    claimed: list[attempts.Job | None] = []
    barrier = threading.Barrier(2)

    def claimer(name: str) -> None:  # a message delivered twice, both copies taken at once
        barrier.wait()
        with sessions() as session:
            claimed.append(attempts.claim(session, attempt_id, name, takeover=False))

    _together(claimer)
    jobs = [j for j in claimed if j is not None]
    assert len(claimed) == 2 and len(jobs) == 1  # the second sees the first's live lease
    job = jobs[0]
    assert job.assembly == text_in and job.tries == 1
    typed = verify(VARIANTS[0], text_in, 3, settings=get_settings())
    verdict = typed.to_json()
    results: list[bool] = []

    def finisher(name: str) -> None:  # a worker's typed verdict, or its JSON
        barrier.wait()
        with sessions() as session:
            results.append(attempts.finish(session, attempt_id,
                                           typed if name == "a" else verdict, name))

    _together(finisher)
    assert sorted(results) == [False, True]
    with engine.connect() as conn:
        gates = conn.execute(text("SELECT count(*) FROM gate_results WHERE attempt_id = :a"),
                             {"a": attempt_id}).scalar()
        status = conn.execute(text("SELECT status FROM attempts WHERE id = :a"),
                              {"a": attempt_id}).scalar()
    assert gates == len(verdict["gates"]) and status == "done"
    with sessions() as session:  # done: nothing to claim, nothing to store
        assert attempts.claim(session, attempt_id, "c") is None
        assert not attempts.finish(session, attempt_id, verdict, "c")
    engine.dispose()


def test_a_baseline_measurement_is_stored_once_whatever_the_table_holds(
        empty_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """record_measured is one upsert: a missing row is built with its figure, a built one gets
    it, a measured one keeps its first; and a row this process stored is not written again."""
    from sqlalchemy import select

    from store import baselines
    from store.models import BaselineRow
    from toolchain import kernels

    db.upgrade(empty_db)
    engine = db.make_engine(empty_db, pool_size=2)
    sessions, settings = db.sessions(engine), get_settings()
    variant = kernels.get(VARIANTS[0])
    monkeypatch.setattr(baselines, "_measured", set())
    with sessions() as session:
        built = baselines.get_or_build(session, variant, "clang", settings)
        assert built.measured_at is None
        assert baselines.record_measured(session, variant, "gcc", 100.0, False, settings)
        assert baselines.record_measured(session, variant, "clang", 7.0, True, settings)
        assert not baselines.record_measured(session, variant, "gcc", 5.0, False, settings)
    monkeypatch.setattr(baselines, "_measured", set())  # another process: the table decides
    with sessions() as session:
        assert not baselines.record_measured(session, variant, "gcc", 5.0, False, settings)
        found = {r.compiler: r for r in session.scalars(select(BaselineRow))}
    assert (found["gcc"].cycles, found["gcc"].data_dependent) == (100.0, False)
    assert (found["clang"].cycles, found["clang"].data_dependent) == (None, True)
    assert found["clang"].built_at == built.built_at and found["clang"].assembly == built.assembly
    assert found["gcc"].assembly and found["gcc"].measured_at is not None
    engine.dispose()
