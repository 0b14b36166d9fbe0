"""The bench reads the gateway's own p99s of a load from its histograms, before and after."""

from __future__ import annotations

import pytest

from bench.gateway_view import LATENCY, THREAD_WAIT, gateway_view

INF = float("inf")


def test_only_what_was_counted_between_the_two_readings_makes_the_percentile() -> None:
    # Before: 1,000 fast ones. Between: 98 under 10 ms, then 2 more between 50 and 100 ms.
    before = {0.01: 1000.0, 0.05: 1000.0, 0.1: 1000.0, INF: 1000.0}
    after = {0.01: 1098.0, 0.05: 1098.0, 0.1: 1100.0, INF: 1100.0}
    view = gateway_view({LATENCY: before, THREAD_WAIT: before}, {LATENCY: after, THREAD_WAIT: before})
    assert view.latency_p99 == pytest.approx(75.0)  # the 99th of 100 sits halfway into the 50-100 ms bucket
    assert view.thread_wait_p99 is None  # nothing counted in between
