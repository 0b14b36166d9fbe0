"""Gunicorn settings for the gateway: event-loop workers, and telling Prometheus when one is gone."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess

# Each worker process serves the ASGI gateway on an event loop (gateway/server/protocol.py).
worker_class = "gateway.server.protocol.GatewayWorker"


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live metrics (its counters stay in the totals)."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
