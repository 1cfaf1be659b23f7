"""deploy/prometheus/alerts.yml and deploy/dashboards/inferstream.json: valid, and every metric
they query is one the worker exposes (workers/telemetry/metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from workers.cost import BUDGET_USD_PER_EVENT
from workers.telemetry.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
METRIC = re.compile(r"\binferstream_[a-z0-9_]+")


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    return Metrics(CollectorRegistry()).sample_names()


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "dashboards/inferstream.json").read_text())  # type: ignore[no-any-return]


def exprs(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_alert_rules_are_well_formed(rules: list[dict[str, Any]]) -> None:
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_alert_rules_cover_the_issue(rules: list[dict[str, Any]]) -> None:
    by_name = {r["alert"]: r["expr"] for r in rules}
    assert "deriv(inferstream_consumer_lag" in by_name["InferstreamConsumerLagGrowing"]
    assert "inferstream_dead_letters_total" in by_name["InferstreamDeadLetterRateHigh"]
    assert "inferstream_triton_errors_total" in by_name["InferstreamTritonErrorRateHigh"]
    assert "histogram_quantile(0.99" in by_name["InferstreamLatencyP99OverBudget"]
    assert 'device="gpu"' in by_name["InferstreamGpuRouteLost"]
    cost = by_name["InferstreamCostPerEventOverBudget"]
    assert "inferstream_event_cost_usd_sum" in cost and cost.strip().endswith(
        f"> {BUDGET_USD_PER_EVENT}"
    )


def test_every_metric_queried_is_exposed(
    rules: list[dict[str, Any]], dashboard: dict[str, Any], exposed: set[str]
) -> None:
    used = {m for r in rules for m in METRIC.findall(r["expr"])}
    used |= {m for e in exprs(dashboard) for m in METRIC.findall(e)}
    assert used and used <= exposed, sorted(used - exposed)


def test_dashboard_shows_every_metric(dashboard: dict[str, Any], exposed: set[str]) -> None:
    used = {m for e in exprs(dashboard) for m in METRIC.findall(e)}
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exposed}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families <= shown, sorted(families - shown)


def test_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["refId"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
