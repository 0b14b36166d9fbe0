"""What the operators' dashboard shows, read at one moment: the service's load and backlog, the model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client.metrics_core import Metric
from sqlalchemy.engine import Engine

from core.metrics_registry import own_metrics
from core.monitoring.measures import FEATURE_PSI, MonitoringReport, drift_from_snapshot
from core.monitoring.monitored_model import ServingModel, measure_serving
from core.rollout.state import Rollout
from core.settings import Settings
from core.storage.backlog import Backlog, backlog
from core.storage.monitoring import MinuteActivity, activity_per_minute, latest_snapshot, snapshot_history
from core.storage.records import utc_now

ACCEPT_TARGET_MS = 20.0
ACTIVITY_WINDOW_S = 3_600
REFRESH_S = 30


@dataclass(frozen=True)
class DashboardView:
    """Every figure of the page, read at one moment."""

    generated_at: datetime
    model_version: str
    report: MonitoringReport
    activity: list[MinuteActivity]
    # Accept latency of POST /predict since the gateway started: p50 and p99 in ms (None before any request).
    accept_p50_ms: float | None
    accept_p99_ms: float | None
    backlog: Backlog
    # Per feature, its PSI at each monitor run of the window, oldest first.
    drift_history: dict[str, list[tuple[datetime, float]]]
    # When the monitor last stored its figures (the drift drawn is from that run); None: it never ran.
    monitored_at: datetime | None = None
    # What serves, as the gateway last read it (None: never read, the database down).
    rollout: Rollout | None = None


def gather_view(
    *, engine: Engine, settings: Settings, model: ServingModel, rollout: Rollout | None = None
) -> DashboardView:
    """Read every figure of the dashboard from the database and the gateway's own latency histogram."""
    with engine.connect() as conn:
        # Drift as the monitor last stored it (what /metrics and the alerts read); the rest measured now.
        report = measure_serving(conn=conn, model=model, settings=settings, count_features=False)
        monitored_at, snapshot = latest_snapshot(conn=conn)
        if model.reference is not None:
            report = replace(report, drift=drift_from_snapshot(snapshot, model.reference))
        activity = every_minute(activity_per_minute(conn=conn, window_s=ACTIVITY_WINDOW_S), utc_now())
        state = backlog(conn=conn)
        history: dict[str, list[tuple[datetime, float]]] = {}
        for row in snapshot_history(conn=conn, figure=FEATURE_PSI, window_s=settings.monitor_window_s):
            history.setdefault(row.subject, []).append((row.taken_at, row.value))
    p50, p99 = accept_latency_ms(settings.prometheus_multiproc_dir)
    return DashboardView(
        generated_at=utc_now(),
        model_version=model.version,
        report=report,
        activity=activity,
        accept_p50_ms=p50,
        accept_p99_ms=p99,
        backlog=state,
        drift_history=history,
        monitored_at=monitored_at,
        rollout=rollout,
    )


def every_minute(activity: list[MinuteActivity], now: datetime) -> list[MinuteActivity]:
    """Return the last hour minute by minute, quiet minutes as zeros (an outage must show as one)."""
    found = {a.minute: a for a in activity}
    minutes = [
        (now - timedelta(minutes=back)).strftime("%Y-%m-%d %H:%M")
        for back in range(ACTIVITY_WINDOW_S // 60 - 1, -1, -1)
    ]
    return [found.get(m, MinuteActivity(minute=m, received=0, predicted=0)) for m in minutes]


def endpoint_buckets(families: Iterable[Metric], name: str, endpoint: str) -> dict[float, float]:
    """Return a histogram's cumulative counts for one endpoint by upper bound, summed over processes."""
    buckets: dict[float, float] = {}
    for family in families:
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("endpoint") == endpoint:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def accept_latency_ms(multiprocess_dir: Path | None) -> tuple[float | None, float | None]:
    """Estimate p50 and p99 of POST /predict from the latency histogram of every gateway process."""
    families = own_metrics(multiprocess_dir).collect()
    buckets = endpoint_buckets(families, "gateway_request_seconds", "/predict")
    return quantile_ms(buckets, 0.5), quantile_ms(buckets, 0.99)


def quantile_ms(cumulative: dict[float, float], share: float) -> float | None:
    """Return a quantile from cumulative bucket counts, interpolated within its bucket, as Prometheus does."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] == 0:
        return None
    rank = share * cumulative[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound * 1000  # beyond the last finite bucket: its bound is all that is known
            within = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return (lower_bound + (bound - lower_bound) * within) * 1000
        lower_bound, lower_count = bound, count
    return None
