"""The gateway's own view of a load: its latency histograms read before and after, beside what the client saw.

The client's latency includes what the gateway never sees (the load generator's own event loop, the kernel's
queues); the gateway's counts from the moment a request's body is in. Read together they tell where a tail is.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import ServiceStack

LATENCY = "gateway_request_seconds"
THREAD_WAIT = "gateway_thread_wait_seconds"
SUBMIT_ENDPOINT = "/predict"

# One histogram's cumulative buckets: [(upper bound in seconds, count)], in bound order; and by name.
Cumulative = list[tuple[float, float]]
Buckets = dict[str, Cumulative]


def read_buckets(stack: ServiceStack) -> Buckets:
    """Return the cumulative buckets of the submission latency and of the thread wait, as scraped now."""
    text = requests.get(stack.url("/metrics"), timeout=30).text
    found: Buckets = {LATENCY: [], THREAD_WAIT: []}
    for family in text_string_to_metric_families(text):
        if family.name not in found:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            if family.name == LATENCY and sample.labels.get("endpoint") != SUBMIT_ENDPOINT:
                continue
            found[family.name].append((float(sample.labels["le"]), sample.value))
    return {name: sorted(buckets) for name, buckets in found.items()}


def quantile_bound_ms(before: Cumulative, after: Cumulative, share: float) -> float:
    """Return the upper bound (ms) of the bucket holding the share-quantile of what was counted in between."""
    counted_before = dict(before)
    between = [(bound, count - counted_before.get(bound, 0.0)) for bound, count in after]
    total = between[-1][1] if between else 0.0
    for bound, cumulative in between:
        if total and cumulative >= share * total:
            return bound * 1000
    return 0.0


@dataclass(frozen=True)
class GatewayView:
    """The 99th percentiles the gateway counted over a load, as bucket bounds (ms): 'at most this'."""

    latency_p99_bound: float
    thread_wait_p99_bound: float


def gateway_view(before: Buckets, after: Buckets) -> GatewayView:
    """Return the gateway's own p99s of the submissions answered between two readings."""
    return GatewayView(
        latency_p99_bound=quantile_bound_ms(before[LATENCY], after[LATENCY], 0.99),
        thread_wait_p99_bound=quantile_bound_ms(before[THREAD_WAIT], after[THREAD_WAIT], 0.99),
    )
