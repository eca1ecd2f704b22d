"""Prometheus and Grafana files: ``promtool`` accepts the scrape config and the alert rules, the rules'
own unit tests pass, every dashboard query is valid PromQL, and the dashboard is well-formed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tokenbatch.json"
# Grafana's variables, as Prometheus would see them once Grafana substituted them.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$model": ".*"}


def promtool(*args: str, cwd: Path = DEPLOY / "prometheus") -> str:
    """Run promtool (Debian's prometheus package, `make tools`): CI must have it, a laptop may skip."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make tools` installs it")
        pytest.skip("promtool is not installed (`make tools`)")
    proc = subprocess.run([found, *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_promtool_accepts_the_scrape_config_and_its_rule_files() -> None:
    out = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in out and "1 rule files found" in out


def test_promtool_accepts_the_alert_rules() -> None:
    out = promtool("check", "rules", "alerts.yml")
    assert re.search(r"SUCCESS: (\d+) rules found", out)


def test_the_alert_rules_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_the_alerts_cover_what_operators_must_hear_about() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"TokenbatchWorkerDown", "TokenbatchBudgetSaturated", "TokenbatchBatchesNearDeadline",
            "TokenbatchRequestErrorRateHigh", "TokenbatchLeasesReclaimed", "TokenbatchRedisUnreachable"} <= names
    for g in rules["groups"]:
        for r in g["rules"]:
            assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"], r["alert"]


def test_every_dashboard_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    rules = []
    for i, expr in enumerate(exprs(dashboard)):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"an unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"{len(rules)} rules found" in promtool("check", "rules", "queries.yml", cwd=tmp_path)


def test_the_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "tokenbatch" and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
    # No two panels overlap on the grid.
    cells = [(x, y) for p in panels for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
             for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])]
    assert len(cells) == len(set(cells))
