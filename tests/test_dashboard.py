"""What an operator sees on GET /dashboard, drawn from a hand-built view: its figures, lines and named gaps.

The page is rendered through the route's own template and charts; a headless Chromium loads it under the
pages' Content-Security-Policy, as a browser would from the gateway.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from PIL import Image
from werkzeug.serving import make_server

from core.monitoring.measures import FeatureDrift, MonitoringReport, VersionCalls, VersionQuality
from core.monitoring.reference import DRIFT_LINE, PROBA_BINS, UNSEEN
from core.rollout.state import Rollout
from core.storage.backlog import BULK, INTERACTIVE, Backlog, LaneBacklog
from core.storage.monitoring import MinuteActivity
from gateway.dashboard.charts import LINE_COLOUR
from gateway.dashboard.page import DashboardView
from gateway.dashboard.routes import blueprint, page_html
from gateway.server.security_headers import add_security_headers
from tests.browser import screenshot

VERSION = "2026.11.28"
NOW = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)
# Two features moved well past the line; the others stayed under it.
PSI = {
    "InterventionReasonCode": 0.012,
    "SubjectRaceCode": 0.004,
    "SubjectSexCode": 0.001,
    "SubjectEthnicityCode": 0.031,
    "StatuteReason": 0.961,
    "ResidentIndicator": 0.002,
    "SearchAuthorizationCode": 0.018,
    "SubjectAge": 0.147,
    "hour": 0.534,
    "day_of_week": 0.009,
}
DRIFTED = {name for name, value in PSI.items() if value > DRIFT_LINE}
PRECISION_BAR = 0.5
SVG = "{http://www.w3.org/2000/svg}"


def bell(centre: float) -> tuple[float, ...]:
    """PROBA_BINS shares of a bump around centre (a probability)."""
    weights = [max(0.0, 1 - abs((n + 0.5) / PROBA_BINS - centre) * 4) ** 2 for n in range(PROBA_BINS)]
    return tuple(weight / sum(weights) for weight in weights)


def fabricated_report(*, with_reference: bool = True, observations: int = 1_800) -> MonitoringReport:
    drift = [
        FeatureDrift(
            feature=name,
            psi=value if observations >= 500 else None,
            observations=observations,
            labels=("a", "b", UNSEEN),
            training=(0.6, 0.4, 0.0),
            served=(0.6 - value / 2, 0.4 + value / 2, 0.0),
        )
        for name, value in PSI.items()
    ]
    quality = VersionQuality(
        model_version=VERSION,
        labelled=150,
        true_positive=30,
        false_positive=70,
        false_negative=50,
        true_negative=0,
    )
    return MonitoringReport(
        window_s=86_400,
        reference_version=VERSION if with_reference else None,
        min_observations=500,
        precision_bar=PRECISION_BAR,
        drift_line=DRIFT_LINE,
        drift=drift if with_reference else [],
        proba_psi=0.08 if with_reference and observations >= 500 else None,
        proba_training=bell(0.32) if with_reference else (),
        proba_served=bell(0.4),
        predictions=observations,
        positive_share_training=0.272 if with_reference else None,
        positive_share_range=(0.224, 0.322) if with_reference else None,
        calls=[VersionCalls(VERSION, predictions=observations, positive_share=0.41, proba_shares=bell(0.4))],
        quality=[quality],
        quality_in_window=[quality],
        shadow_calls=[],
        shadow_quality=[],
        shadow_quality_in_window=[],
    )


def fabricated_view(report: MonitoringReport) -> DashboardView:
    minutes = [NOW - timedelta(minutes=59 - n) for n in range(60)]
    runs = [NOW - timedelta(minutes=5 * (11 - n)) for n in range(12)]
    # The drifted features left training halfway through the window; the others stayed where they were.
    history = {
        name: [
            (taken, value if name in DRIFTED and n >= 6 else min(value, 0.03)) for n, taken in enumerate(runs)
        ]
        for name, value in PSI.items()
    }
    return DashboardView(
        generated_at=NOW,
        model_version=VERSION,
        report=report,
        activity=[
            MinuteActivity(minute=m.strftime("%Y-%m-%d %H:%M"), received=20 + n, predicted=18 + n)
            for n, m in enumerate(minutes)
        ],
        accept_p50_ms=4.5,
        accept_p99_ms=19.3,
        backlog=Backlog(
            lanes={
                INTERACTIVE: LaneBacklog(queued=12, oldest_queued_at=NOW - timedelta(seconds=4)),
                BULK: LaneBacklog(queued=0),
            },
            failed=1,
        ),
        drift_history=history if report.reference_version else {},
        monitored_at=runs[-1],
    )


@pytest.fixture
def page_app() -> Flask:
    """A bare app with the dashboard's blueprint and the pages' security headers: renders, serves its CSS."""
    app = Flask(__name__)
    app.register_blueprint(blueprint)
    app.after_request(add_security_headers)
    return app


def rendered(app: Flask, view: DashboardView) -> str:
    with app.app_context():
        return page_html(view)


def section(page: str, name: str) -> str:
    found = re.search(rf'<section id="{name}">(.*?)</section>', page, re.DOTALL)
    assert found, f"no section {name}"
    return found.group(1)


def chart(page: str, name: str) -> ET.Element:
    """The SVG chart of a section, parsed."""
    found = re.findall(r"<svg.*?</svg>", section(page, name), re.DOTALL)
    assert len(found) == 1, f"{len(found)} charts in section {name}"
    return ET.fromstring(found[0])


def limit_line(svg: ET.Element) -> ET.Element:
    """The chart's dashed limit line (there is one per chart)."""
    lines = [line for line in svg.iter(f"{SVG}line") if line.get("stroke-dasharray") == "6 4"]
    assert len(lines) == 1
    assert lines[0].get("stroke") == LINE_COLOUR
    return lines[0]


def texts(svg: ET.Element) -> list[str]:
    return [text.text or "" for text in svg.iter(f"{SVG}text")]


def bar_ends(svg: ET.Element) -> dict[str, float]:
    """Where each named bar ends on the x axis."""
    return {
        rect.get("data-name", ""): float(rect.get("x", 0)) + float(rect.get("width", 0))
        for rect in svg.iter(f"{SVG}rect")
        if rect.get("data-name")
    }


def test_every_feature_shows_its_psi_and_the_drifted_ones_end_past_the_line(page_app: Flask) -> None:
    drift = chart(rendered(page_app, fabricated_view(fabricated_report())), "drift")
    line = limit_line(drift)
    assert line.get("x1") == line.get("x2")  # drawn across the bars
    assert f"{DRIFT_LINE:g}" in texts(drift)
    for name, value in PSI.items():
        assert name in texts(drift)
        assert f"{value:.2f}" in texts(drift)
    past = {name for name, end in bar_ends(drift).items() if end > float(line.get("x1", 0))}
    assert past == DRIFTED
    colours = {rect.get("data-name"): rect.get("fill") for rect in drift.iter(f"{SVG}rect")}
    assert {name for name, colour in colours.items() if colour == LINE_COLOUR} == DRIFTED


def test_drift_over_time_draws_a_line_per_feature_and_the_drift_line(page_app: Flask) -> None:
    history = chart(rendered(page_app, fabricated_view(fabricated_report())), "drift-history")
    assert len(list(history.iter(f"{SVG}polyline"))) == len(PSI)
    assert set(PSI) <= set(texts(history))  # the legend
    line = limit_line(history)
    assert line.get("y1") == line.get("y2")
    assert f"drift line {DRIFT_LINE:g}" in texts(history)


def test_precision_under_its_bar_is_drawn_short_of_the_bar_and_says_what_it_rests_on(page_app: Flask) -> None:
    page = rendered(page_app, fabricated_view(fabricated_report()))
    quality = chart(page, "quality")
    line = limit_line(quality)
    assert f"bar {PRECISION_BAR:g}" in texts(quality)
    ends = bar_ends(quality)
    assert ends[f"{VERSION} precision"] < float(line.get("x1", 0))
    assert "0.30" in texts(quality) and "0.38" in texts(quality)
    table = section(page, "quality")
    assert re.search(r"<td>150</td><td>100</td>", table)  # labels, and those on positive calls
    assert 'class="bad" data-precision="0.3"' in table


def test_latency_is_drawn_against_20_ms_since_the_gateway_started(page_app: Flask) -> None:
    page = rendered(page_app, fabricated_view(fabricated_report()))
    latency = chart(page, "latency")
    limit_line(latency)
    assert {"p50", "p99", "4.50 ms", "19.30 ms", "20 ms"} <= set(texts(latency))
    assert "Since the gateway started" in section(page, "latency")


def test_service_tiles_show_the_backlog_and_failures(page_app: Flask) -> None:
    service = section(rendered(page_app, fabricated_view(fabricated_report())), "service")
    assert re.search(r'class="tile bad"><b>12</b>queued, interactive', service)
    assert re.search(r"<b>4.0 s</b>oldest, interactive", service)
    assert re.search(r'class="tile"><b>0</b>queued, bulk', service)
    assert "<b>\u2013</b>oldest, bulk" in service  # an en dash: nothing waits there
    assert re.search(r'class="tile bad"><b>1</b>failed', service)
    assert "<polyline" in service  # received and predicted per minute


def test_positive_calls_out_of_their_training_range_end_past_its_lines_in_red(page_app: Flask) -> None:
    page = rendered(page_app, fabricated_view(fabricated_report()))
    histogram, shares = chart(page, "calls"), chart(page, "positive-share")
    assert len(list(histogram.iter(f"{SVG}rect"))) >= 2 * PROBA_BINS  # training and served side by side
    bounds = sorted(
        float(line.get("x1", 0))
        for line in shares.iter(f"{SVG}line")
        if line.get("stroke-dasharray") == "6 4" and line.get("x1") == line.get("x2")
    )
    assert len(bounds) == 2
    assert bar_ends(shares)[f"{VERSION} positive share"] > bounds[1]
    assert next(shares.iter(f"{SVG}rect")).get("fill") != LINE_COLOUR  # the band is not an alarm
    assert [rect.get("fill") for rect in shares.iter(f"{SVG}rect") if rect.get("data-name")] == [LINE_COLOUR]
    assert {"22.4 %", "32.2 %", "41.0 %"} <= set(texts(shares))
    assert "held out: 27.2 %" in section(page, "positive-share")


def test_without_a_reference_the_page_says_so_instead_of_drawing_drift(page_app: Flask) -> None:
    page = rendered(page_app, fabricated_view(fabricated_report(with_reference=False)))
    assert "No reference in this bundle" in section(page, "drift")
    assert "<svg" not in section(page, "drift")
    assert "No reference in this bundle" in section(page, "calls")
    assert "no reference in this bundle to compare with" in section(page, "positive-share")
    assert "No reference in this bundle" in section(page, "drift-history")


def test_missing_figures_say_why(page_app: Flask) -> None:
    report = fabricated_report(observations=120)
    no_labels = dataclasses.replace(report, quality=[], quality_in_window=[])
    page = rendered(page_app, fabricated_view(no_labels))
    assert texts(chart(page, "drift")).count("fewer than 500 observations in the window") == len(PSI)
    assert "No labels yet" in section(page, "quality")
    assert "PSI not computed, fewer than 500 observations in the window" in section(page, "calls")
    assert "41.0 % (fewer than 500 predictions)" in texts(chart(page, "positive-share"))
    quiet = dataclasses.replace(
        fabricated_view(no_labels), accept_p50_ms=None, accept_p99_ms=None, activity=[]
    )
    page = rendered(page_app, quiet)
    assert texts(chart(page, "latency")).count("no request yet") == 2
    assert "Nothing received in the last hour" in section(page, "service")
    never_monitored = rendered(page_app, dataclasses.replace(fabricated_view(report), monitored_at=None))
    assert texts(chart(never_monitored, "drift")).count("the monitor has not run yet") == len(PSI)


def test_the_page_has_no_script_no_inline_style_and_refreshes_itself(page_app: Flask) -> None:
    for report in (fabricated_report(), fabricated_report(with_reference=False)):
        page = rendered(page_app, fabricated_view(report))
        assert "<script" not in page and "<style" not in page
        assert not re.search(r"\sstyle=", page)
        assert '<meta http-equiv="refresh" content="30">' in page
        assert '<link rel="stylesheet" href="/dashboard.css">' in page


@pytest.fixture
def served_page(page_app: Flask) -> Iterator[str]:
    """Serve the fabricated page and the real stylesheet over HTTP, under the pages' policy; yield its URL."""
    during_a_canary = Rollout(VERSION, "2026.12.01", 10, shadow_version="2026.12.05")
    html = rendered(
        page_app, dataclasses.replace(fabricated_view(fabricated_report()), rollout=during_a_canary)
    )
    page_app.add_url_rule("/fabricated", "fabricated", lambda: html)
    server = make_server("127.0.0.1", 0, page_app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/fabricated"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_a_browser_draws_the_page_styled_with_the_drift_in_red(served_page: str, tmp_path: Path) -> None:
    shot = screenshot(served_page, tmp_path / "dashboard.png", width=1400, height=1080)
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        # The stylesheet loaded under the policy: the header is dark, the page around the cards light.
        assert rgb.getpixel((5, 5)) == (0x1F, 0x29, 0x33)
        assert rgb.getpixel((5, 300)) == (0xF5, 0xF7, 0xFA)
        colours = rgb.getcolors(maxcolors=1 << 24) or []
    red = sum(count for count, colour in colours if colour == (0xC0, 0x39, 0x2B))
    # Two drifted bars, precision under its bar, and the dashed lines: thousands of red pixels.
    assert red >= 5_000, f"{red} red pixels; the screenshot is {shot}"


def test_the_header_says_what_serves_a_canary_and_a_shadow_included(page_app: Flask) -> None:
    rollout = Rollout(VERSION, "2026.12.01", 10, shadow_version="2026.12.05")
    header = rendered(page_app, dataclasses.replace(fabricated_view(fabricated_report()), rollout=rollout))
    assert serving(header) == f"model {VERSION} · canary 2026.12.01 on 10 % of ids · shadow 2026.12.05"
    assert serving(rendered(page_app, fabricated_view(fabricated_report()))) == f"model {VERSION}"


def serving(page: str) -> str:
    found = re.search(r'<span id="rollout">(.*?)</span>', page, re.DOTALL)
    assert found, "no rollout in the header"
    return " ".join(found.group(1).split())
