"""Prometheus metrics of the gateway, and the /metrics exposition (multiprocess-aware under gunicorn)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("gateway_requests_total", "HTTP requests answered", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "gateway_request_seconds",
    "Time to answer an HTTP request",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OBSERVATIONS_SUBMITTED = Counter(
    "gateway_observations_submitted_total", "Observations submitted, by outcome", ["outcome"]
)
PUBLISH_FAILURES = Counter(
    "gateway_publish_failures_total", "Accepted observations whose publish failed (left for the redrive)"
)


def render_metrics(multiprocess_dir: Path | None) -> tuple[bytes, str]:
    """Return the exposition text and its content type, merged across gunicorn workers if needed."""
    if multiprocess_dir is None:
        from prometheus_client import REGISTRY

        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
