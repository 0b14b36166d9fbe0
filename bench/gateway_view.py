"""The gateway's own view of a load: its latency histograms read before and after, beside what the client saw.

The client's latency includes what the gateway never sees (the load generator's own event loop, the kernel's
queues); the gateway's counts from the moment a request's body is in. Read together they tell where a tail is.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import ServiceStack
from gateway.dashboard.page import endpoint_buckets, quantile_ms

LATENCY = "gateway_request_seconds"
THREAD_WAIT = "gateway_thread_wait_seconds"
LONG_POLLS_HELD = "gateway_long_polls_held"
SUBMIT_ENDPOINT = "/predict"

# One histogram's cumulative counts by upper bound (seconds), summed over the gateway's processes; by name.
Cumulative = dict[float, float]
Buckets = dict[str, Cumulative]


def _scrape(stack: ServiceStack) -> list[Metric]:
    return list(text_string_to_metric_families(requests.get(stack.url("/metrics"), timeout=30).text))


def read_buckets(stack: ServiceStack) -> Buckets:
    """Return the cumulative buckets of POST /predict's latency and of its thread wait, as scraped now."""
    families = _scrape(stack)
    return {name: endpoint_buckets(families, name, SUBMIT_ENDPOINT) for name in (LATENCY, THREAD_WAIT)}


def long_polls_held(stack: ServiceStack) -> int:
    """Return how many long-polls the gateway's processes hold on their event loops now."""
    held = (s.value for f in _scrape(stack) if f.name == LONG_POLLS_HELD for s in f.samples)
    return int(sum(held))


def counted_between(before: Cumulative, after: Cumulative) -> Cumulative:
    """Return the cumulative counts of what was observed between two readings of one histogram."""
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


@dataclass(frozen=True)
class GatewayView:
    """The 99th percentiles (ms) the gateway counted of POST /predict over a load, or None if it counted none.

    Interpolated within their buckets, as Prometheus and the dashboard do.
    """

    latency_p99: float | None
    thread_wait_p99: float | None


def gateway_view(before: Buckets, after: Buckets) -> GatewayView:
    """Return the gateway's own p99s of the submissions answered between two readings."""
    return GatewayView(
        latency_p99=quantile_ms(counted_between(before[LATENCY], after[LATENCY]), 0.99),
        thread_wait_p99=quantile_ms(counted_between(before[THREAD_WAIT], after[THREAD_WAIT]), 0.99),
    )
