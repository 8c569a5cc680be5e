"""Monitoring as code: the alert rules pass the real promtool (`check rules`, and every case of
`test rules`), and promtool is not a rubber stamp (a broken rule and a wrong expectation fail);
the Grafana dashboards are the generator's output, their PromQL passes promtool, their data
sources are the provisioned ones (their SQL runs against PostgreSQL: tests/farm/test_grafana.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "monitoring"
REQUIRED_ALERTS = {"ArmgymInfraErrorShareHigh", "ArmgymQueueGrowing", "ArmgymNoVerdicts",
                   "ArmgymApiDown"}


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed (Debian package prometheus; ./scripts/setup.sh)")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def alerts() -> dict[str, dict]:
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


def test_alert_rules_pass_promtool_check() -> None:
    out = promtool("check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(alerts()) >= REQUIRED_ALERTS


def test_every_alert_has_promtool_test_cases_and_they_pass() -> None:
    out = promtool("test", "rules", "alerts.test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    cases = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]
    tested = [c["alertname"] for t in cases for c in t.get("alert_rule_test", [])]
    firing = {c["alertname"] for t in cases for c in t.get("alert_rule_test", [])
              if c.get("exp_alerts")}
    silent = {c["alertname"] for t in cases for c in t.get("alert_rule_test", [])
              if not c.get("exp_alerts")}
    assert set(tested) == set(alerts())
    assert firing >= REQUIRED_ALERTS and silent >= REQUIRED_ALERTS  # fires, and holds back


def test_promtool_catches_a_broken_rule_and_a_wrong_expectation(tmp_path: Path) -> None:
    rules = (MONITORING / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(rules.replace("> 0.05", "> > 0.05", 1))
    assert promtool("check", "rules", "alerts.yml", cwd=tmp_path).returncode != 0
    # the right rules, a test that expects the infra_error alert to stay silent when it fires
    (tmp_path / "alerts.yml").write_text(rules)
    cases = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())
    cases["tests"][0]["alert_rule_test"][-1]["exp_alerts"] = []
    (tmp_path / "alerts.test.yml").write_text(yaml.safe_dump(cases))
    out = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert out.returncode != 0 and "ArmgymInfraErrorShareHigh" in out.stdout + out.stderr


# --------------------------------------------------------------------------- Grafana

GRAFANA = MONITORING / "grafana"


def dashboard(name: str) -> dict:
    return json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text())


def test_checked_in_dashboards_are_what_the_generator_writes() -> None:
    out = subprocess.run([sys.executable, str(GRAFANA / "generate.py"), "--check"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr


def test_farm_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    """Every PromQL target, with Grafana's $__rate_interval filled in, as a recording rule."""
    board = dashboard("farm")
    titles = {p["title"] for p in board["panels"]}
    assert {"Throughput", "Queue depth", "Verification latency percentiles", "Error-kind mix",
            "infra_error share", "Workers"} <= titles
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert all(p["datasource"]["uid"] == "armgym-prometheus" for p in board["panels"])
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"armgym:panel_{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)]}]}
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(rules))
    out = promtool("check", "rules", "panels.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    metrics = " ".join(exprs)
    for name in ("armgym_verdicts_total", "armgym_broker_queue_depth",
                 "armgym_verification_duration_seconds_bucket", "up", "flower_worker_online",
                 "armgym_http_request_duration_seconds_bucket"):
        assert name in metrics, name


def test_provisioning_names_the_dashboards_data_sources() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "armgym.yml")
                             .read_text())["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    for name in ("farm", "research"):
        board = dashboard(name)
        used = {p["datasource"]["uid"] for p in board["panels"]}
        used |= {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]
                 if "datasource" in t}
        for uid in used:
            assert uid in by_uid, (name, uid)
            kinds = {p["datasource"]["type"] for p in board["panels"]}
            assert by_uid[uid]["type"] in kinds
    assert by_uid["armgym-postgres"]["type"] == "grafana-postgresql-datasource"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    mounts = compose["grafana"]["volumes"]
    assert "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "armgym.yml")
                              .read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    prometheus = compose["prometheus"]
    assert "./monitoring/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    out = promtool("check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_docs_list_every_grafana_panel() -> None:
    readme = (REPO / "docs" / "monitoring.md").read_text()
    for name in ("farm", "research"):
        for panel in dashboard(name)["panels"]:
            assert f"**{panel['title']}**" in readme, (name, panel["title"])
