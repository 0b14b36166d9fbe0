"""Where the service's own Prometheus metrics are read: a process's registry, or every process's files."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess


def own_metrics(multiprocess_dir: Path | None) -> CollectorRegistry:
    """Return the registry to read this service's metrics from.

    With multiprocess_dir (gunicorn's workers, a worker node's pool processes), one that adds up the files
    every process writes there; without it, this process's own registry.
    """
    if multiprocess_dir is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
    return registry
