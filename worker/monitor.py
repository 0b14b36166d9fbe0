"""The periodic model monitor: measure the window's drift and calls, store them as one snapshot."""

from __future__ import annotations

import logging
import time

from sqlalchemy.engine import Engine

from core.monitoring.measures import snapshot_rows
from core.monitoring.monitored_model import measure_serving, stable_model
from core.settings import Settings
from core.storage.clock import read_database_now
from core.storage.monitoring import purge_snapshots, save_snapshot

log = logging.getLogger(__name__)
SECONDS_PER_DAY = 86_400


def take_snapshot(*, engine: Engine, settings: Settings) -> int:
    """Measure the last MONITOR_WINDOW_S against the serving bundle's reference and store it; return rows.

    Snapshots older than RETENTION_DAYS go with the rows they were measured on.
    """
    model = stable_model(engine=engine, settings=settings)
    started = time.perf_counter()
    with engine.connect() as conn:
        # Stamped on the database's clock, like the receipts and labels its windows are cut from.
        taken_at = read_database_now(conn=conn)
        report = measure_serving(conn=conn, model=model, settings=settings)
    rows = snapshot_rows(report, taken_at)
    with engine.begin() as conn:
        save_snapshot(conn=conn, rows=rows)
        if settings.retention_days > 0:
            purge_snapshots(conn=conn, older_than_s=settings.retention_days * SECONDS_PER_DAY)
    drifted = sorted(d.feature for d in report.drift if d.psi is not None and d.psi > report.drift_line)
    log.info(
        "model monitored",
        extra={
            "seconds": round(time.perf_counter() - started, 3),
            "observations": max((d.observations for d in report.drift), default=0),
            "figures": len(rows),
            "drifted": drifted,
            "reference": model.reference is not None,
        },
    )
    return len(rows)
