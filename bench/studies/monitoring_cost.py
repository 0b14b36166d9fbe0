"""What one run of the model monitor costs on Postgres at 100k and 1M stored observations (a day's window).

    .venv/bin/python -m bench.studies.monitoring_cost [--sizes 100000 1000000] [--record]

A scratch database is filled with observations drawn from the training table (predicted, received within the
window), then the monitor's measure runs three times per size; the median is reported, with the database's
own time for the feature count (the one query that reads every row of the window).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from core.monitoring.measures import measure
from core.monitoring.monitored_model import serving_model
from core.settings import get_settings
from core.storage.bulk_rows import insert_queued_many
from core.storage.engine import make_engine
from core.storage.migrate import upgrade_to_head
from core.storage.monitoring import feature_value_counts
from core.storage.observations import save_predictions
from core.storage.records import PredictionResult, QueuedObservation, utc_now
from devstack.backends import postgres_backend
from training.data import build_training_table

RESULTS_FILE = Path(__file__).with_name("MONITORING_COST.md")
CHUNK = 50_000
DAY_S = 86_400


def _observations(count: int, seed: int) -> list[dict[str, Any]]:
    features, _target, _provenance = build_training_table()
    drawn = features.sample(count, replace=True, random_state=seed).to_dict("records")
    return [{str(k): v.item() if hasattr(v, "item") else v for k, v in row.items()} for row in drawn]


def _fill(engine: Any, start: int, count: int, version: str) -> None:
    rows = _observations(count, seed=start)
    draw = random.Random(start)
    for offset in range(0, count, CHUNK):
        chunk = [
            QueuedObservation(id=f"cost-{start + offset + n}", observation=row)
            for n, row in enumerate(rows[offset : offset + CHUNK])
        ]
        with engine.begin() as conn:
            insert_queued_many(conn=conn, observations=chunk, batch_id=None, now=utc_now())
            probas = [draw.betavariate(2, 4) for _ in chunk]
            results = [
                PredictionResult(id=o.id, proba=p, prediction=p >= 0.4)
                for o, p in zip(chunk, probas, strict=True)
            ]
            save_predictions(conn=conn, results=results, model_version=version, now=utc_now())


def _time_runs(engine: Any, runs: int = 3) -> tuple[float, float]:
    """Return the median seconds of a whole measure and of the feature count alone."""
    model = serving_model(get_settings())
    whole, counts = [], []
    for _ in range(runs):
        with engine.connect() as conn:
            started = time.perf_counter()
            feature_value_counts(conn=conn, window_s=DAY_S)
            counts.append(time.perf_counter() - started)
            started = time.perf_counter()
            measure(
                conn=conn,
                reference=model.reference,
                window_s=DAY_S,
                min_observations=500,
                precision_bar=model.precision_bar,
            )
            whole.append(time.perf_counter() - started)
    return statistics.median(whole), statistics.median(counts)


def main(argv: list[str] | None = None) -> int:
    """Fill a scratch database size by size and time the monitor at each; print (and record) the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.studies.monitoring_cost", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--record", action="store_true", help=f"write the table to {RESULTS_FILE.name}")
    args = parser.parse_args(argv)
    backend = postgres_backend()
    version = serving_model(get_settings()).version
    lines = [
        "| observations stored (all in the window) | monitor run, median of 3 (s) | feature counts (s) |",
        "| --- | --- | --- |",
    ]
    try:
        upgrade_to_head(backend.database_url)
        engine = make_engine(backend.database_url)
        stored = 0
        for size in sorted(args.sizes):
            print(f"filling to {size:,} ...", file=sys.stderr)
            _fill(engine, stored, size - stored, version)
            stored = size
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE predictions")
            whole, counts = _time_runs(engine)
            lines.append(f"| {size:,} | {whole:.2f} | {counts:.2f} |")
            print(lines[-1], file=sys.stderr)
        engine.dispose()
    finally:
        backend.close()
    table = "\n".join(lines)
    print(table)
    if args.record:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        RESULTS_FILE.write_text(
            f"## Model monitor cost\n\n{stamp} · Postgres 15 on this machine · "
            f"`python -m bench.studies.monitoring_cost` (run {uuid.uuid4().hex[:6]})\n\n{table}\n\n"
            "The monitor runs every MONITOR_INTERVAL_S (default 300 s) in the redrive's process, over "
            "MONITOR_WINDOW_S (default a day); its cost grows with the observations received in the window.\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
