"""deploy/: Prometheus alert rules and their unit tests, Alertmanager and Grafana configs.

The promtool/amtool checks skip where those binaries are missing (Debian packages
``prometheus`` and ``prometheus-alertmanager``), unless REQUIRE_PROMTOOLS=1 (set by
scripts/test, hence CI) makes that a failure. The checks that every query names a metric
the service exports (``metrics.EXPORTED``) are pure Python and always run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import Histogram

from shopify_app.observability import metrics
from shopify_app.observability.metrics import EXPORTED
from tests.support.tools import tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "bazico-sales.json"


METRIC_NAME = re.compile(r"\bbazico_[a-z0-9_]+")
HISTOGRAMS = {
    described.name
    for collector in vars(metrics).values()
    if isinstance(collector, Histogram)
    for described in collector.describe()
}


# --- helpers -------------------------------------------------------------------------------


def run(*args: str | Path, cwd: Path = ROOT) -> None:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    output = f"$ {' '.join(map(str, args))}\n{result.stdout}{result.stderr}"
    assert result.returncode == 0, output


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule
    ]


def family(series_name: str) -> str:
    """The metric family of a series: ``x_bucket``, ``x_count``, ``x_sum`` and ``x_created`` of
    histogram ``x`` are ``x``; ``y_created`` of counter ``y_total`` is ``y_total``."""
    for suffix in ("_bucket", "_count", "_sum", "_created"):
        base = series_name.removesuffix(suffix)
        if base != series_name and base in HISTOGRAMS:
            return base
    base = series_name.removesuffix("_created")
    if base != series_name and f"{base}_total" in EXPORTED:
        return f"{base}_total"
    return series_name


def unknown_metrics(expr: str) -> set[str]:
    return {name for name in METRIC_NAME.findall(expr) if family(name) not in EXPORTED}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels (collapsed rows keep theirs) included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in all_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


# --- promtool / amtool ---------------------------------------------------------------------


def test_alert_rules_are_valid() -> None:
    run(tool("promtool"), "check", "rules", ALERTS)


def test_alert_rules_unit_tests_pass() -> None:
    run(tool("promtool"), "test", "rules", ALERTS_TEST)


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    # The config names its bearer-token file relative to itself and promtool checks that it
    # exists: check a copy with a stand-in token next to it (and the rules it loads).
    promtool = tool("promtool")
    run(promtool, "check", "config", "--syntax-only", PROMETHEUS_CONFIG)
    for path in (PROMETHEUS_CONFIG, ALERTS):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "bazico_metrics_token").write_text("stand-in-token", encoding="utf-8")
    run(promtool, "check", "config", tmp_path / PROMETHEUS_CONFIG.name)


def test_alertmanager_config_is_valid() -> None:
    run(tool("amtool"), "check-config", ALERTMANAGER_CONFIG)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each dashboard query as a recording rule (Grafana's $__ variables
    replaced by durations)."""
    promtool = tool("promtool")
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "1m").replace("$__range", "1h"),
        }
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8"
    )
    run(promtool, "check", "rules", path)


# --- pure Python ---------------------------------------------------------------------------


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert names, "alerts.yml has no alert"
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            expected = check.get("exp_alerts")
            if expected:
                fires.add(check["alertname"])
            elif expected == []:
                quiet.add(check["alertname"])
    assert names - fires == set(), "alerts with no test where they fire"
    assert names - quiet == set(), "alerts with no test where they do not fire (exp_alerts: [])"
    assert (fires | quiet) - names == set(), "tests of alerts that alerts.yml does not define"


def test_alerts_have_severity_for_and_annotations() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["annotations"].get("summary"), name
        assert rule["annotations"].get("description"), name


def test_alerts_name_only_exported_metrics() -> None:
    required = {
        "OutboxBacklogTooOld",
        "OutboxDeadJobs",
        "BlingFailing",
        "BlingDailyLimitReached",
        "Oversold",
        "StorefrontHoldsUnlisted",
        "WebhookUnauthorizedSpike",
        "HighErrorRate",
        "HighLatencyP99",
    }
    rules = alert_rules()
    assert required <= {rule["alert"] for rule in rules}
    for rule in rules:
        assert unknown_metrics(rule["expr"]) == set(), rule["alert"]


def test_metric_name_check_catches_unknown_names() -> None:
    assert "bazico_http_request_duration_seconds" in HISTOGRAMS
    assert HISTOGRAMS <= EXPORTED
    assert unknown_metrics("rate(bazico_http_request_duration_seconds_bucket[5m])") == set()
    assert unknown_metrics("bazico_reservations_created") == set()
    assert unknown_metrics("bazico_http_request_duration_seconds_created") == set()
    assert unknown_metrics("bazico_reservations_total_count") == {"bazico_reservations_total_count"}
    assert unknown_metrics("rate(bazico_reservation_total[5m])") == {"bazico_reservation_total"}
    assert unknown_metrics("bazico_stock_available_count") == {"bazico_stock_available_count"}


def test_dashboard_panels_query_exported_metrics() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in all_panels(board["panels"]) if p.get("type") != "row"]
    assert panels
    for panel in panels:
        title = panel.get("title")
        assert title, f"panel {panel.get('id')} has no title"
        assert panel.get("type") in ("timeseries", "stat", "table"), title
        assert panel["datasource"]["uid"] == "${datasource}", title
        targets = panel.get("targets", [])
        assert targets, f"panel {title!r} has no target"
        for target in targets:
            expr = target.get("expr", "")
            assert METRIC_NAME.search(expr), f"panel {title!r} queries no bazico_ metric"
            assert unknown_metrics(expr) == set(), f"panel {title!r}: {expr}"


def test_dashboard_has_the_sales_event_views() -> None:
    exprs = dashboard_exprs()

    def has(pattern: str) -> bool:
        return any(re.search(pattern, expr) for expr in exprs)

    assert has(r"\bbazico_reservations_total\b")
    assert has(r"\bbazico_stock_available\b")
    assert has(r'bazico_http_request_duration_seconds_bucket\{[^}]*route="/webhooks/shopify"')
    assert has(r"\bbazico_outbox_jobs\b") or has(r"\bbazico_outbox_oldest_pending_age_seconds")
    assert has(r"\bbazico_bling_requests_total\b")
    assert has(r"\bbazico_oversold_units_total\b")
    assert has(r'status=~"5\.\."')
