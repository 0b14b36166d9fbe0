"""The gateway's own view of a load: its latency histograms read before and after, beside what the client saw.

The client's latency includes what the gateway never sees (the load generator's own event loop, the kernel's
queues); the gateway's counts from the moment a request's body is in. Read together they tell where a tail is.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import ServiceStack
from gateway.dashboard import quantile_ms

LATENCY = "gateway_request_seconds"
THREAD_WAIT = "gateway_thread_wait_seconds"
SUBMIT_ENDPOINT = "/predict"

# One histogram's cumulative counts by upper bound (seconds), summed over the gateway's processes; by name.
Cumulative = dict[float, float]
Buckets = dict[str, Cumulative]


def read_buckets(stack: ServiceStack) -> Buckets:
    """Return the cumulative buckets of POST /predict's latency and of its thread wait, as scraped now."""
    text = requests.get(stack.url("/metrics"), timeout=30).text
    found: Buckets = {LATENCY: {}, THREAD_WAIT: {}}
    for family in text_string_to_metric_families(text):
        if family.name not in found:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("endpoint") == SUBMIT_ENDPOINT:
                bound = float(sample.labels["le"])
                found[family.name][bound] = found[family.name].get(bound, 0.0) + sample.value
    return found


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
