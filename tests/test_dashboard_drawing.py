"""What the dashboard draws: latency quantiles from histogram buckets, escaped names, bars red past a line."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import pytest

from core.storage.monitoring import MinuteActivity
from gateway.dashboard.charts import Series, bars_against_line, line_chart
from gateway.dashboard.page import every_minute, quantile_ms

INF = math.inf


def test_latency_quantiles_interpolate_within_a_bucket_as_prometheus_does() -> None:
    # 100 requests: 50 under 5 ms, 40 more under 10 ms, the last 10 under 20 ms.
    buckets = {0.005: 50.0, 0.01: 90.0, 0.02: 100.0, INF: 100.0}
    assert quantile_ms(buckets, 0.5) == 5.0
    assert quantile_ms(buckets, 0.7) == 7.5
    assert quantile_ms(buckets, 0.99) == pytest.approx(19.0)


def test_latency_beyond_the_last_bucket_is_its_bound_and_no_request_is_none() -> None:
    assert quantile_ms({0.005: 0.0, 5.0: 1.0, INF: 2.0}, 0.99) == 5000.0
    assert quantile_ms({0.005: 0.0, INF: 0.0}, 0.5) is None
    assert quantile_ms({}, 0.5) is None


def test_bars_past_their_line_are_red_and_the_others_are_not() -> None:
    svg = bars_against_line(
        [("hour", 0.9), ("SubjectAge", 0.05), ("StatuteReason", None)],
        line_at=0.2,
        line_label="0.2",
        missing="fewer than 500 observations",
    )
    fills = dict(re.findall(r'fill="(#[0-9A-F]{6})" data-name="([^"]+)"', svg))
    assert {name: fill for fill, name in fills.items()} == {"hour": "#C0392B", "SubjectAge": "#0072B2"}
    assert "fewer than 500 observations" in svg


def test_precision_under_its_bar_is_red_and_recall_is_not_judged() -> None:
    svg = bars_against_line(
        [("v1 precision", 0.3), ("v1 recall", 0.3)],
        line_at=0.5,
        line_label="bar 0.5",
        missing="no labels yet",
        bad_below=True,
        judged={"v1 precision"},
    )
    assert 'fill="#C0392B" data-name="v1 precision"' in svg
    assert 'fill="#0072B2" data-name="v1 recall"' in svg


def test_every_name_drawn_is_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    drawn = bars_against_line([(hostile, 0.1)], line_at=0.2, line_label=hostile, missing=hostile)
    drawn += line_chart([Series(hostile, [1.0, 2.0])], [hostile, hostile])
    assert "<script" not in drawn
    assert "&lt;script&gt;" in drawn


def test_quiet_minutes_are_drawn_as_zeros() -> None:
    now = datetime(2026, 11, 29, 12, 30, 20, tzinfo=UTC)
    busy = [MinuteActivity(minute="2026-11-29 12:00", received=5, predicted=4)]
    hour = every_minute(busy, now)
    assert len(hour) == 60
    assert hour[0].minute == "2026-11-29 11:31" and hour[-1].minute == "2026-11-29 12:30"
    assert [a.received for a in hour if a.received] == [5]
    assert sum(a.received for a in hour) == 5
