"""The research dashboard's SQL, as Grafana's PostgreSQL data source would send it (the `run`
variable interpolated with :sqlstring), runs against the farm's real schema and views and gives
the same figures as the documented example queries, for a run the farm really verified."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sqlalchemy import text

from store.queries import EXAMPLES

from .conftest import FARM, Api, wait_batch
from .mix import VARIANTS, asm, honest

pytestmark = FARM
DASHBOARD = Path(__file__).resolve().parents[2] / "monitoring" / "grafana" / "dashboards"


def sqlstring(value: str) -> str:
    """Grafana's :sqlstring format: single-quoted, quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def test_research_dashboard_sql_runs_on_the_views(farm_server: Api) -> None:
    run_id = f"grafana-it's-{random.randrange(10**6)}"  # a quote to escape
    client = farm_server.client()
    for step in range(2):
        attempts = [{"variant_id": VARIANTS[0], "assembly": honest(VARIANTS[0], "gcc"),
                     "seed": random.randrange(2**62)}] * (step + 1) + \
                   [{"variant_id": VARIANTS[0], "assembly": asm("    ret"), "seed": 1}]
        res = client.post("/batches", json={"run_id": run_id, "step": step,
                                            "attempts": attempts})
        assert res.status_code == 202, res.text
        assert wait_batch(client, res.json()["batch_id"])["complete"]
    board = json.loads((DASHBOARD / "research.json").read_text())
    (variable,) = board["templating"]["list"]
    engine = farm_server.engine()
    try:
        with engine.connect() as conn:
            runs = [r[0] for r in conn.execute(text(variable["query"]))]
            assert runs[0] == run_id  # most recently started first
            curve = [dict(r._mapping) for r in conn.execute(text(EXAMPLES["run_curve"]),
                                                            {"run_id": run_id})]
            results = {}
            for panel in board["panels"]:
                (target,) = panel["targets"]
                assert target["datasource"]["uid"] == "armgym-postgres"
                sql = target["rawSql"].replace("${run:sqlstring}", sqlstring(run_id))
                results[panel["title"]] = [dict(r._mapping) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()
    assert [r["correctness_rate"] for r in results["Correctness rate per step"]] == \
        [r["correctness_rate"] for r in curve] == [0.5, 2 / 3]
    assert [r["mean_reward"] for r in results["Mean reward per step"]] == \
        [r["mean_reward"] for r in curve]
    assert [r["best_speedup"] for r in results["Best speedup per step"]] == \
        [r["best_speedup"] for r in curve]
    mix = {(r["step"], r["outcome"]): r["attempts"] for r in results["Outcomes per step"]}
    assert mix == {(0, "pass"): 1, (0, "wrong_output"): 1, (1, "pass"): 2,
                   (1, "wrong_output"): 1}
    assert [r["attempts"] for r in results["Steps of the run"]] == [2, 3]
    assert VARIANTS[0] in {r["variant_id"] for r in results["Best kernel per variant"]}
