"""Prometheus metrics of a worker node: what the model answered, and how big and how slow its batches were.

Predictions happen in the pool processes; with PROMETHEUS_MULTIPROC_DIR set they write their figures there and
the node's main process serves them all on WORKER_METRICS_PORT (prometheus_client's own HTTP server), the
way gunicorn's workers share the gateway's /metrics.
"""

from __future__ import annotations

import bisect
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import Counter, Histogram, start_http_server

from core.metrics_registry import own_metrics

log = logging.getLogger(__name__)

PROBA_BUCKETS = tuple(round(0.05 * step, 2) for step in range(1, 21))
MODEL_PROBA = Histogram(
    "model_proba",
    "Predicted probability that the search finds contraband",
    ["model_version"],
    buckets=PROBA_BUCKETS,
)
MODEL_PREDICTIONS = Counter(
    "model_predictions", "Predictions computed, by model version and call", ["model_version", "outcome"]
)
BATCH_SIZE = Histogram(
    "worker_batch_size",
    "Observations per predict call",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000),
)
PREDICT_SECONDS = Histogram(
    "worker_predict_seconds",
    "Time of one predict call (a whole batch)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe every value, one increment per bucket instead of one call per value.

    What Histogram.observe does value by value (a sum, and the first bucket whose bound is not below the
    value), for a batch of thousands of probabilities at the cost of a few.
    """
    bounds = histogram._upper_bounds  # the histogram's own bucket bounds, +Inf last
    per_bucket = [0] * len(bounds)
    for value in values:
        per_bucket[bisect.bisect_left(bounds, value)] += 1
    for index, count in enumerate(per_bucket):
        if count:
            histogram._buckets[index].inc(count)
    histogram._sum.inc(float(sum(values)))


def record_batch(*, model_version: str, probas: Sequence[float], positives: int, seconds: float) -> None:
    """Record one predict call: its size and time, each probability, the calls by outcome."""
    BATCH_SIZE.observe(len(probas))
    PREDICT_SECONDS.observe(seconds)
    observe_many(MODEL_PROBA.labels(model_version=model_version), probas)
    if positives:
        MODEL_PREDICTIONS.labels(model_version=model_version, outcome="positive").inc(positives)
    if len(probas) - positives:
        MODEL_PREDICTIONS.labels(model_version=model_version, outcome="negative").inc(len(probas) - positives)


def serve_worker_metrics(port: int, multiprocess_dir: Path | None) -> None:
    """Serve the node's metrics on port from a thread of the calling (main) process.

    With multiprocess_dir, it is emptied first (counters start again with the node) and the pool processes'
    files in it are added up at each scrape.
    """
    if multiprocess_dir is not None:
        shutil.rmtree(multiprocess_dir, ignore_errors=True)
        multiprocess_dir.mkdir(parents=True, exist_ok=True)
    start_http_server(port, registry=own_metrics(multiprocess_dir))
    log.info("worker metrics served", extra={"port": port})
