"""The measurements: baseline, single submissions, light load, bulk, queue drain and the raw limit."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import requests
from threadpoolctl import threadpool_limits

from bench.load import closed_loop, open_loop, percentile
from bench.plan import ONE_WORKER, Layout, Plan
from bench.workers import process_tree, set_workers, stop_workers
from core.settings import PROJECT_ROOT, get_settings
from core.storage.measurement import (
    copy_into_scratch_table,
    last_prediction_if_drained,
    prediction_span,
    submit_to_result_seconds,
)
from devstack.course import COURSE_OBSERVATION
from devstack.embedded_redis import free_port
from devstack.stack import ServiceStack, wait_until
from worker.bundle import load_bundle


def wait_all_predicted(stack: ServiceStack, timeout: float = 600) -> datetime:
    """Wait until nothing is queued; return the newest predicted_at."""

    def drained() -> datetime | None:
        with stack.engine.connect() as conn:
            return last_prediction_if_drained(conn=conn)

    return wait_until(drained, timeout=timeout, interval=0.05)


def submit_to_result_ms(stack: ServiceStack, ids: list[str]) -> list[float]:
    """Return predicted_at - received_at, in ms, of each given observation already predicted."""
    with stack.engine.connect() as conn:
        seconds = submit_to_result_seconds(conn=conn, observation_ids=ids)
    return [value * 1000 for value in seconds]


def run_baseline(stack: ServiceStack, plan: Plan, work_dir: Path) -> dict[str, float]:
    """Serve the course design with gunicorn (2 sync workers) and load it like the service."""
    port = free_port()
    with (work_dir / "baseline.log").open("ab") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "bench.baseline_app:app",
            ],
            env=stack.env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/predict"

        def up() -> bool:
            if server.poll() is not None:
                raise RuntimeError(f"the baseline server exited; see {work_dir / 'baseline.log'}")
            try:
                return requests.post(url, json={}, timeout=2).status_code == 422
            except requests.RequestException:
                return False

        wait_until(up, timeout=60, interval=0.2)
        result = closed_loop(url, concurrency=plan.concurrency, seconds=plan.load_seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "rps": result.rate,
        "p50": percentile(result.latencies_ms, 0.5),
        "p99": percentile(result.latencies_ms, 0.99),
        "errors": result.errors,
    }


def run_single(stack: ServiceStack, plan: Plan) -> dict[str, float]:
    """Single submissions under closed-loop load: accept rate and latency, and end-to-end rate."""
    result = closed_loop(stack.url("/predict"), concurrency=plan.concurrency, seconds=plan.load_seconds)
    last = wait_all_predicted(stack)
    end_to_end = len(result.ids) / (last.timestamp() - result.started)
    return {
        "accept_rps": result.rate,
        "p50": percentile(result.latencies_ms, 0.5),
        "p99": percentile(result.latencies_ms, 0.99),
        "e2e_rps": end_to_end,
        "errors": result.errors,
    }


def run_light(stack: ServiceStack, plan: Plan) -> dict[str, float]:
    """A steady light rate: submit-to-result latency, stamped by the service."""
    result = open_loop(stack.url("/predict"), rate=plan.light_rate, seconds=plan.light_seconds)
    wait_all_predicted(stack)
    latencies = submit_to_result_ms(stack, result.ids)
    return {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "count": len(latencies)}


BULK_FORMATS = ("ndjson", "csv")
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv"}
CSV_COLUMNS = ["id", *COURSE_OBSERVATION]


def bulk_observation(n: int) -> dict[str, Any]:
    """Return the n-th observation of the bulk uploads (the course's example, its hour varied)."""
    return {**COURSE_OBSERVATION, "hour": n % 24}


def csv_line(observation_id: str, observation: dict[str, Any]) -> str:
    """Return one CSV row of an upload (booleans as true/false)."""
    cells = [str(v).lower() if isinstance(v, bool) else str(v) for v in observation.values()]
    return ",".join([observation_id, *cells])


def bulk_body(prefix: str, rows: range, form: str) -> str:
    """Return an upload of these rows as NDJSON lines or CSV with its header."""
    if form == "csv":
        return "\n".join(
            [",".join(CSV_COLUMNS), *(csv_line(f"{prefix}{n}", bulk_observation(n)) for n in rows)]
        )
    return "\n".join(json.dumps({"id": f"{prefix}{n}", "observation": bulk_observation(n)}) for n in rows)


def upload_bulk(stack: ServiceStack, plan: Plan, form: str = "ndjson") -> str:
    """Upload bulk_rows observations as batches (NDJSON or CSV), two at a time; return their ids' prefix."""
    prefix = f"bulk-{uuid.uuid4().hex[:8]}-"

    def upload(start: int) -> None:
        rows = range(start, min(start + plan.rows_per_request, plan.bulk_rows))
        response = requests.post(
            stack.url("/batches"),
            data=bulk_body(prefix, rows, form),
            headers={"Content-Type": CONTENT_TYPES[form]},
            timeout=600,
        )
        response.raise_for_status()

    with ThreadPoolExecutor(max_workers=2) as uploads:
        list(uploads.map(upload, range(0, plan.bulk_rows, plan.rows_per_request)))
    return prefix


def run_bulk(stack: ServiceStack, plan: Plan, layout: Layout, form: str = "ndjson") -> float:
    """Upload bulk_rows observations with the workers running; return obs/s until all predicted."""
    set_workers(stack, layout)
    started = time.time()
    upload_bulk(stack, plan, form)
    last = wait_all_predicted(stack)
    return plan.bulk_rows / (last.timestamp() - started)


@dataclass(frozen=True)
class CliBulk:
    """A large CSV sent with the `contraband submit` command: obs/s end to end, and the gateway's peak RSS."""

    rows: int
    rate: float
    gateway_peak_mb: float
    gateway_start_mb: float


@dataclass(frozen=True)
class Bulk:
    """Bulk rates in obs/s: NDJSON end to end and the drain of a filled queue per worker layout, CSV end to
    end with one worker, and a large CSV sent with the CLI."""

    end_to_end: dict[Layout, float]
    drain: dict[Layout, Drain]
    csv_end_to_end: float
    cli: CliBulk


def gateway_rss_mb(stack: ServiceStack) -> float:
    """Return the largest RSS among the gateway's processes (its server and each of its workers), in MB."""
    sizes: list[int] = []
    for process in process_tree(stack.processes["gateway"].pid):
        try:
            sizes.append(process.memory_info().rss)
        except psutil.Error:
            continue
    return max(sizes) / 2**20


def run_cli_bulk(stack: ServiceStack, plan: Plan, work_dir: Path) -> CliBulk:
    """Send cli_rows observations as one CSV file with the CLI (its default chunking), workers running;
    sample the gateway's RSS every 50 ms throughout."""
    prefix = f"cli-{uuid.uuid4().hex[:8]}-"
    upload = work_dir / "bulk-cli.csv"
    with upload.open("w") as out:
        out.write(",".join(CSV_COLUMNS) + "\n")
        for n in range(plan.cli_rows):
            out.write(csv_line(f"{prefix}{n}", bulk_observation(n)) + "\n")
    set_workers(stack, ONE_WORKER)
    start_mb = gateway_rss_mb(stack)
    peak = [start_mb]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak.append(gateway_rss_mb(stack))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.time()
    try:
        subprocess.run(
            [sys.executable, "-m", "client.cli", "submit", str(upload), "--url", stack.url(""), "--no-wait"],
            cwd=PROJECT_ROOT,
            env=stack.env,
            check=True,
            capture_output=True,
            timeout=3600,
        )
        last = wait_all_predicted(stack, timeout=3600)
    finally:
        done.set()
        sampler.join()
        upload.unlink()
    return CliBulk(
        rows=plan.cli_rows,
        rate=plan.cli_rows / (last.timestamp() - started),
        gateway_peak_mb=max(peak),
        gateway_start_mb=start_mb,
    )


@dataclass(frozen=True)
class Drain:
    """A filled queue drained by the worker: obs/s, and the machine's busy share while it drained."""

    rate: float
    cpu_busy: float


def run_drain(stack: ServiceStack, plan: Plan, layout: Layout) -> Drain:
    """Fill the queue with the workers stopped, then start them: obs/s from the first to the last prediction.

    This is the workers' own rate, the figure an operator scaling workers gets, without the gateway's intake
    sharing the two cores.
    """
    stop_workers(stack)
    prefix = upload_bulk(stack, plan)
    set_workers(stack, layout)
    psutil.cpu_percent()  # starts the window: the next call averages over it
    wait_all_predicted(stack)
    cpu_busy = psutil.cpu_percent() / 100
    with stack.engine.connect() as conn:
        span = prediction_span(conn=conn, id_prefix=prefix)
    elapsed = (span.last - span.first).total_seconds()
    return Drain(rate=span.count / max(elapsed, 1e-3), cpu_busy=cpu_busy)


def raw_limit(stack: ServiceStack, plan: Plan) -> float:
    """One prediction call over the rows (as a worker predicts: MODEL_THREADS native threads) plus a COPY of
    them into Postgres.

    Unlimited, OpenMP's busy-waiting threads made this figure swing fivefold between runs (16k to 85k obs/s)
    with whatever else shared the two cores.
    """
    settings = get_settings()
    bundle = load_bundle(settings.artifacts_dir)
    observations = [{**COURSE_OBSERVATION, "hour": n % 24} for n in range(plan.bulk_rows)]
    start = time.perf_counter()
    with threadpool_limits(limits=settings.model_threads):
        probas = bundle.predict_observations(observations)
    rows = (
        (f"raw-{n}", observation, float(proba))
        for n, (observation, proba) in enumerate(zip(observations, probas, strict=True))
    )
    with stack.engine.begin() as conn:
        copy_into_scratch_table(conn=conn, rows=rows)
    return plan.bulk_rows / (time.perf_counter() - start)
