"""Gunicorn settings for the gateway: tell Prometheus when a worker process is gone."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live metrics (its counters stay in the totals)."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
