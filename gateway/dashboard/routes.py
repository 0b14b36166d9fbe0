"""GET /dashboard: one page an operator reads at a glance, drawn on the server (inline SVG, no script)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Response, render_template
from markupsafe import Markup

from core.api_keys import ADMIN
from core.monitoring.reference import PROBA_BINS
from gateway.context import gateway_context
from gateway.dashboard.charts import (
    Series,
    bars_against_line,
    line_chart,
    paired_histogram,
    positive_share_chart,
)
from gateway.dashboard.page import ACCEPT_TARGET_MS, REFRESH_S, DashboardView, gather_view
from gateway.declared_routes import ApiBlueprint

blueprint = ApiBlueprint("dashboard", __name__, template_folder="templates")

# A file of its own: the page's policy allows no inline style.
STYLESHEET = (Path(__file__).parent / "static" / "dashboard.css").read_text()


@blueprint.declare("GET", "/dashboard", scope=ADMIN, documented=False, browser_page=True)
def dashboard_page() -> Response:
    """Return the dashboard, refreshed by the browser every REFRESH_S seconds."""
    context = gateway_context()
    view = gather_view(
        engine=context.engine,
        settings=context.settings,
        model=context.monitored_model(),
        rollout=context.rollout.last_reading(),  # None: the page says what it can
    )
    return Response(page_html(view), content_type="text/html; charset=utf-8")


def page_html(view: DashboardView) -> str:
    """Render the page of one view (within an app context)."""
    return render_template(
        "dashboard.html",
        view=view,
        charts=charts_of(view),
        refresh_s=REFRESH_S,
        accept_target_ms=ACCEPT_TARGET_MS,
    )


@blueprint.declare("GET", "/dashboard.css", scope=ADMIN, documented=False, browser_page=True)
def dashboard_stylesheet() -> Response:
    """Return the dashboard's stylesheet (a file of its own: the page's policy allows no inline style)."""
    return Response(STYLESHEET, content_type="text/css; charset=utf-8")


def charts_of(view: DashboardView) -> dict[str, Markup]:
    """Return the page's charts as SVG markup."""
    report = view.report
    minutes = [a.minute[-5:] for a in view.activity]
    charts: dict[str, Any] = {
        "activity": line_chart(
            [
                Series("received", [float(a.received) for a in view.activity]),
                Series("predicted", [float(a.predicted) for a in view.activity]),
            ],
            minutes,
            height=150,
        ),
        "drift": bars_against_line(
            [(d.feature, d.psi) for d in report.drift],
            line_at=report.drift_line,
            line_label=f"{report.drift_line:g}",
            missing=(
                f"fewer than {report.min_observations} observations in the window"
                if view.monitored_at is not None
                else "the monitor has not run yet"
            ),
        ),
        "probabilities": paired_histogram(
            [f"{n / PROBA_BINS:g}\N{EN DASH}{(n + 1) / PROBA_BINS:g}" for n in range(PROBA_BINS)],
            report.proba_training or [0.0] * PROBA_BINS,
            report.proba_served,
            height=140,
        ),
    }
    charts["positive_share"] = positive_share_chart(
        report.calls,
        report.positive_share_range,
        min_predictions=report.min_observations,
        judged_version=report.reference_version,
    )
    runs = sorted({taken for history in view.drift_history.values() for taken, _ in history})
    if runs:
        by_feature = {feature: dict(history) for feature, history in view.drift_history.items()}
        charts["drift_history"] = line_chart(
            [Series(feature, [by_feature[feature].get(t) for t in runs]) for feature in sorted(by_feature)],
            [t.strftime("%H:%M") for t in runs],
            line_at=report.drift_line,
            line_label=f"drift line {report.drift_line:g}",
            height=170,
        )
    if report.quality:
        charts["quality"] = bars_against_line(
            [
                (f"{q.model_version} {name}", value)
                for q in report.quality
                for name, value in (("precision", q.precision), ("recall", q.recall))
            ],
            line_at=report.precision_bar,
            line_label=f"bar {report.precision_bar:g}",
            missing="no labels yet",
            bad_below=True,
            judged={f"{q.model_version} precision" for q in report.quality},
        )
    latency = [(name, value) for name, value in (("p50", view.accept_p50_ms), ("p99", view.accept_p99_ms))]
    charts["latency"] = bars_against_line(
        latency,
        line_at=ACCEPT_TARGET_MS,
        line_label=f"{ACCEPT_TARGET_MS:g} ms",
        missing="no request yet",
        unit=" ms",
    )
    return charts
