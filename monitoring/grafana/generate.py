"""The farm's Grafana dashboards as code (grafana-foundation-sdk), written as JSON beside this file.

  .venv/bin/python monitoring/grafana/generate.py          rewrite dashboards/*.json
  .venv/bin/python monitoring/grafana/generate.py --check  exit 1 when a checked-in file is stale

`farm`: throughput, queue depth, latency percentiles, error-kind mix, infra_error share and
worker count, from Prometheus (the API as job armgym-api, the workers as armgym-worker, Flower as
armgym-flower). `research`: per run and step the correctness rate, mean reward and best speedup,
the outcome mix and the best kernels, from the SQL views through Grafana's PostgreSQL data
source. The data sources are the provisioned ones (provisioning/datasources/), by uid.
tests/test_monitoring.py regenerates both and checks every PromQL expression with promtool and
every SQL query against a real PostgreSQL holding the farm's schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries, trend
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="armgym-prometheus")
POSTGRES = model.DataSourceRef(type_val="grafana-postgresql-datasource", uid="armgym-postgres")
WORKERS = 'job="armgym-worker"'
API = 'job="armgym-api"'


class SqlQuery(cogvariants.Dataquery):
    """A raw SQL target of Grafana's PostgreSQL data source (the SDK has no builder for it)."""

    def __init__(self, ref_id: str, sql: str, fmt: str = "table") -> None:
        self.ref_id, self.sql, self.fmt = ref_id, sql.strip(), fmt

    def to_json(self) -> dict[str, Any]:
        return {"refId": self.ref_id, "datasource": POSTGRES.to_json(), "editorMode": "code",
                "format": self.fmt, "rawQuery": True, "rawSql": self.sql}


class Sql(Builder[SqlQuery]):
    def __init__(self, ref_id: str, sql: str, fmt: str = "table") -> None:
        self.query = SqlQuery(ref_id, sql, fmt)

    def build(self) -> SqlQuery:
        return self.query


def promql(ref: str, expr: str, legend: str) -> prom.Dataquery:
    return prom.Dataquery().ref_id(ref).expr(expr).legend_format(legend).range()


def place(builder: Any, x: int, y: int, w: int = 12, h: int = 8) -> Any:
    return builder.grid_pos(model.GridPos(h=h, w=w, x=x, y=y))


def farm() -> model.Dashboard:
    rate = "[$__rate_interval]"
    verdicts = f"armgym_verdicts_total{{{WORKERS}}}"
    panels = [
        place(timeseries.Panel().title("Throughput").unit("reqps")
              .description("Verdicts stored per second (workers) and attempts submitted per "
                           "second (API)")
              .with_target(promql("A", f"sum(rate({verdicts}{rate}))", "verdicts/s"))
              .with_target(promql("B", f"sum(rate(armgym_attempts_submitted_total{{{API}}}{rate}))",
                                  "submitted/s")), 0, 0),
        place(timeseries.Panel().title("Queue depth").unit("short")
              .description("Messages waiting in the broker, and attempts queued or running")
              .with_target(promql("A", f"max(armgym_broker_queue_depth{{{API}}})", "broker"))
              .with_target(promql("B", f"max(armgym_outstanding_attempts{{{API}}})",
                                  "outstanding")), 12, 0),
        place(timeseries.Panel().title("Verification latency percentiles").unit("s")
              .description("Wall time of one verification, every gate, cache hits included")
              .with_target(promql("A", "histogram_quantile(0.5, sum by (le) (rate("
                                  f"armgym_verification_duration_seconds_bucket{{{WORKERS}}}"
                                  f"{rate})))", "p50"))
              .with_target(promql("B", "histogram_quantile(0.9, sum by (le) (rate("
                                  f"armgym_verification_duration_seconds_bucket{{{WORKERS}}}"
                                  f"{rate})))", "p90"))
              .with_target(promql("C", "histogram_quantile(0.99, sum by (le) (rate("
                                  f"armgym_verification_duration_seconds_bucket{{{WORKERS}}}"
                                  f"{rate})))", "p99")), 0, 8),
        place(timeseries.Panel().title("API latency p99 by route").unit("s")
              .description("Long polls (?wait=) included: the buckets reach 600 s")
              .with_target(promql("A", "histogram_quantile(0.99, sum by (le, route) (rate("
                                  f"armgym_http_request_duration_seconds_bucket{{{API}}}"
                                  f"{rate})))", "{{route}}")), 12, 8),
        place(timeseries.Panel().title("Error-kind mix").unit("reqps")
              .description("Verdicts per second by error kind (none = passed), stacked")
              .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
              .fill_opacity(60)
              .with_target(promql("A", f"sum by (error_kind) (rate({verdicts}{rate}))",
                                  "{{error_kind}}")), 0, 16),
        place(stat.Panel().title("infra_error share").unit("percentunit").decimals(2)
              .description("Share of verdicts that are infra_error over 10 minutes (the farm "
                           "failed, not the model); alert ArmgymInfraErrorShareHigh at 5%")
              .with_target(promql("A", "sum(rate(armgym_verdicts_total{"
                                  f"{WORKERS},error_kind=\"infra_error\"}}[10m])) / "
                                  f"sum(rate({verdicts}[10m]))", "infra_error share")),
              12, 16, 6),
        place(stat.Panel().title("Workers").unit("short")
              .description("Worker endpoints up (Prometheus) and workers online (Flower)")
              .with_target(promql("A", f"count(up{{{WORKERS}}} == 1)", "up"))
              .with_target(promql("B", 'sum(flower_worker_online{job="armgym-flower"})',
                                  "online (Flower)")), 18, 16, 6),
        place(timeseries.Panel().title("Gate duration p90").unit("s")
              .description("Per gate, the 90th percentile of its wall time")
              .with_target(promql("A", "histogram_quantile(0.9, sum by (le, gate) (rate("
                                  f"armgym_gate_duration_seconds_bucket{{{WORKERS}}}{rate})))",
                                  "{{gate}}")), 0, 24, 24),
    ]
    board = (dash.Dashboard("ARM-Gym farm").uid("armgym-farm").tags(["armgym"])
             .refresh("30s").time("now-6h", "now").editable()
             .description("Throughput, queue, latency and errors of the verification farm"))
    for number, panel in enumerate(panels, 1):
        board = board.with_panel(panel.id(number).datasource(PROMETHEUS))
    return board.build()


RUN = "${run:sqlstring}"  # the `run` variable, quoted and escaped for SQL by Grafana


def research() -> model.Dashboard:
    def curve(column: str) -> str:
        return f"SELECT step, {column} FROM run_step_summary WHERE run_id = {RUN} ORDER BY step"

    panels = [
        place(trend.Panel().title("Correctness rate per step").unit("percentunit").min(0)
              .x_field("step").with_target(Sql("A", curve("correctness_rate"))),
              0, 0, 8),
        place(trend.Panel().title("Mean reward per step").x_field("step")
              .with_target(Sql("A", curve("mean_reward"))), 8, 0, 8),
        place(trend.Panel().title("Best speedup per step").x_field("step")
              .with_target(Sql("A", curve("best_speedup"))), 16, 0, 8),
        place(barchart.Panel().title("Outcomes per step").x_field("step")
              .stacking(common.StackingMode.NORMAL)
              .description("Attempts per outcome (pass or error kind) at each step")
              .with_target(Sql("A", "SELECT step, outcome, attempts FROM error_kind_histogram "
                                    f"WHERE run_id = {RUN} ORDER BY step, outcome"))
              .with_transformation(model.DataTransformerConfig(
                  id_val="groupingToMatrix",
                  options={"columnField": "outcome", "rowField": "step",
                           "valueField": "attempts", "emptyValue": "zero"})), 0, 8, 24),
        place(table.Panel().title("Steps of the run")
              .with_target(Sql("A", "SELECT step, attempts, done, infra_errors, passed, "
                                    "correctness_rate, mean_reward, best_speedup FROM "
                                    f"run_step_summary WHERE run_id = {RUN} ORDER BY step")),
              0, 16, 12, 10),
        place(table.Panel().title("Best kernel per variant")
              .with_target(Sql("A", "SELECT variant_id, speedup, cycles, reward, found_by, "
                                    "run_id, step, found_at FROM variant_best "
                                    "ORDER BY speedup DESC NULLS LAST, variant_id")),
              12, 16, 12, 10),
    ]
    run_variable = (dash.QueryVariable("run").label("run").datasource(POSTGRES)
                    .query("SELECT run_id FROM run_step_summary WHERE run_id IS NOT NULL "
                           "GROUP BY run_id ORDER BY MIN(first_submitted_at) DESC")
                    .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD))
    board = (dash.Dashboard("ARM-Gym research").uid("armgym-research").tags(["armgym"])
             .time("now-30d", "now").editable().with_variable(run_variable)
             .description("Learning curves of a run from the farm's SQL views"))
    for number, panel in enumerate(panels, 1):
        board = board.with_panel(panel.id(number).datasource(POSTGRES))
    return board.build()


DASHBOARDS = {"farm": farm, "research": research}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    OUT.mkdir(exist_ok=True)
    stale = []
    for name in DASHBOARDS:
        path, text = OUT / f"{name}.json", render(name)
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python monitoring/grafana/generate.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
