"""Read the provisioned Grafana dashboard: its panels, their PromQL queries and the metrics those name."""

from __future__ import annotations

import json
import re
from typing import Any

from core.settings import PROJECT_ROOT

GRAFANA_DIR = PROJECT_ROOT / "deploy" / "monitoring" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "contraband-model.json"

# Grafana's own interval variables, and a duration promtool accepts in their place.
GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b")
# What is no metric name: label matchers, range selectors, strings, grouping and matching clauses.
_NOT_NAMES = re.compile(
    r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|'[^']*'"
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
# Series a histogram is exposed as; a counter keeps its _total (prometheus_client's # TYPE line does too).
_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def dashboard() -> dict[str, Any]:
    """Return the dashboard's JSON model."""
    model: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return model


def dashboard_panels() -> list[dict[str, Any]]:
    """Return every panel that queries (rows, and the panels collapsed rows hold, included; rows left out)."""
    panels = []
    for panel in dashboard()["panels"]:
        panels.extend([panel, *panel.get("panels", [])])
    return [panel for panel in panels if panel["type"] != "row"]


def dashboard_queries() -> list[str]:
    """Return the PromQL expression of every panel target, as Grafana sends it (variables unexpanded)."""
    return [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]


def promql_for_promtool(expr: str) -> str:
    """Return expr with Grafana's interval variables replaced by a duration, so promtool can parse it."""
    return GRAFANA_INTERVALS.sub("5m", expr)


def metric_names(expr: str) -> set[str]:
    """Return the metric names expr selects, as a scrape's # TYPE lines name them.

    model_proba_bucket is the histogram model_proba; model_predictions_total stays as it is, the way
    prometheus_client exposes a counter.
    """
    bare = _NOT_NAMES.sub(" ", promql_for_promtool(expr))
    names = {name for name in _IDENTIFIER.findall(bare) if name.lower() not in _KEYWORDS}
    return {_HISTOGRAM_SUFFIX.sub("", name) for name in names}


def dashboard_metric_names() -> set[str]:
    """Return the metric names the dashboard's queries select (histograms by their own name)."""
    return {name for expr in dashboard_queries() for name in metric_names(expr)}
