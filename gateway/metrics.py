"""Prometheus metrics of the gateway, and the /metrics exposition (multiprocess-aware under gunicorn).

Besides the gateway's own counters, each scrape reads the state of the whole service (backlog, failures,
broker queue), so one scrape target is enough to alert on workers that stopped predicting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from celery import Celery
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from core.metrics_registry import own_metrics
from core.publishing import PUBLISH_ERRORS, waiting_in_lanes
from core.settings import Settings
from core.storage.backlog import backlog
from core.storage.records import utc_now

log = logging.getLogger(__name__)

REQUESTS = Counter("gateway_requests_total", "HTTP requests answered", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "gateway_request_seconds",
    "Time to answer an HTTP request, from its body read to its answer (the wait for a thread included)",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
THREAD_WAIT = Histogram(
    "gateway_thread_wait_seconds",
    "Of gateway_request_seconds, the time the request waited for a Flask thread to start on it",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
)
# Summed over the gateway's processes while they live (a dead process's count leaves with it).
LONG_POLLS_HELD = Gauge(
    "gateway_long_polls_held",
    "Long-polls held on the event loop, waiting for their result (they hold no thread)",
    multiprocess_mode="livesum",
)
OBSERVATIONS_SUBMITTED = Counter(
    "gateway_observations_submitted_total",
    "Observations submitted, alone or in batches, by outcome (accepted, replayed, conflict, rejected)",
    ["outcome"],
)
SHED_SUBMISSIONS = Counter(
    "gateway_shed_submissions_total", "Submissions refused with 503 because the backlog was over its bounds"
)
PUBLISH_FAILURES = Counter(
    "gateway_publish_failures_total", "Accepted observations whose publish failed (left for the redrive)"
)


class ServiceStateCollector(Collector):
    """Read at scrape time: the backlog and failures in the database, the messages waiting in the broker."""

    def __init__(self, *, engine: Engine, celery: Celery, settings: Settings) -> None:
        self._engine = engine
        self._celery = celery
        self._settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "service_dependency_up",
            "Whether the scrape reached the dependency (1) or not (0)",
            labels=["name"],
        )
        try:
            with self._engine.connect() as conn:
                state = backlog(conn=conn)
        except Exception:  # a scrape must answer even when the database is down
            log.warning("metrics: database unreachable", exc_info=True)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            queued = GaugeMetricFamily(
                "predictions_queued_observations",
                "Observations accepted and not yet predicted, by lane (interactive: single submissions)",
                labels=["lane"],
            )
            oldest = GaugeMetricFamily(
                "predictions_oldest_queued_age_seconds",
                "Age of the oldest observation still queued, by lane",
                labels=["lane"],
            )
            now = utc_now()
            for lane, rows in state.lanes.items():
                queued.add_metric([lane], rows.queued)
                since = rows.oldest_queued_at
                oldest.add_metric([lane], (now - since).total_seconds() if since else 0.0)
            yield queued
            yield oldest
            yield GaugeMetricFamily(
                "predictions_failed_observations",
                "Observations marked failed after bounded retries",
                value=state.failed,
            )
        try:
            lanes = waiting_in_lanes(self._celery, self._settings)
        except PUBLISH_ERRORS:
            log.warning("metrics: broker unreachable", exc_info=True)
            up.add_metric(["broker"], 0)
        else:
            up.add_metric(["broker"], 1)
            waiting = GaugeMetricFamily(
                "broker_waiting_messages",
                "Messages waiting in a lane's broker queue (interactive or bulk), not yet taken",
                labels=["lane"],
            )
            for lane, count in lanes.items():
                waiting.add_metric([lane], count)
            yield waiting
        yield up


def render_metrics(multiprocess_dir: Path | None, *service_state: Collector) -> tuple[bytes, str]:
    """Return the exposition text and its content type, merged across gunicorn workers if needed."""
    state = CollectorRegistry()
    for collector in service_state:
        state.register(collector)
    return generate_latest(own_metrics(multiprocess_dir)) + generate_latest(state), CONTENT_TYPE_LATEST
