"""Monitoring as code: the alert rules pass the real promtool (`check rules`, and every case of
`test rules`), and promtool is not a rubber stamp (a broken rule and a wrong expectation fail)."""

from __future__ import annotations

import shutil
import subprocess
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
