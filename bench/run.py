"""Benchmark the service against the synchronous baseline on this machine (make bench; --smoke for CI).

Everything runs on loopback against the local Postgres and Redis, in one run: ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import psutil
import psycopg
import requests
import sqlalchemy as sa

from bench.load import COURSE_OBSERVATION, closed_loop, open_loop, percentile
from tests.stack import ServiceStack, postgres_backend, wait_until
from worker.bundle import load_bundle
from worker.feature_spec import PIPELINE_FILE, bundle_path
from worker.settings import PROJECT_ROOT, get_settings
from worker.storage import QUEUED, predictions

RESULTS_FILE = PROJECT_ROOT / "bench" / "RESULTS.md"
READING_NOTES = """How to read it:

- One machine runs everything: the load generator, gateway, workers, Postgres and Redis share its cores, so a
  process added on one side takes CPU from the others. Figures move between runs; compare ratios within a run.
- "end to end" counts from the first request to the last prediction committed (predicted_at in Postgres).
- "queue drain": the observations are accepted with the workers stopped, then the workers start; the rate is
  from the first to the last prediction, the workers' own rate without the gateway's intake beside them.
  "machine CPU busy" is the share of all cores in use while it drained.
- Worker layouts: nodes are Celery workers (compose `--scale worker=N`), each with its pool processes.
- Memory: RSS counts pages shared with the main process (which loads the model before forking); "unique" is
  what each process alone adds. The reference row is a bare Python with the same libraries and the pipeline.
"""


@dataclass(frozen=True)
class Plan:
    """How long and how big each measurement is."""

    load_seconds: float
    light_seconds: float
    bulk_rows: int
    rows_per_request: int
    concurrency: int = 16
    light_rate: float = 20


FULL = Plan(load_seconds=15, light_seconds=10, bulk_rows=100_000, rows_per_request=10_000)
SMOKE = Plan(load_seconds=1.5, light_seconds=1.5, bulk_rows=2_000, rows_per_request=1_000)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = psutil.virtual_memory().total / 2**30
    python = platform.python_version()
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {python}, {platform.system()}"


def wait_all_predicted(stack: ServiceStack, timeout: float = 600) -> datetime:
    """Wait until nothing is queued; return the newest predicted_at."""

    def drained() -> datetime | None:
        with stack.engine.connect() as conn:
            queued = conn.execute(
                sa.select(sa.func.count()).where(predictions.c.status == QUEUED)
            ).scalar_one()
            last = conn.execute(sa.select(sa.func.max(predictions.c.predicted_at))).scalar_one()
        return last if queued == 0 and last is not None else None

    return wait_until(drained, timeout=timeout, interval=0.05)


def submit_to_result_ms(stack: ServiceStack, ids: list[str]) -> list[float]:
    with stack.engine.connect() as conn:
        rows = conn.execute(
            sa.select(predictions.c.received_at, predictions.c.predicted_at).where(predictions.c.id.in_(ids))
        ).all()
    return [(done - received).total_seconds() * 1000 for received, done in rows if done is not None]


def run_baseline(stack: ServiceStack, plan: Plan, work_dir: Path) -> dict[str, float]:
    """Serve the course design with gunicorn (2 sync workers) and load it like the service."""
    port = stack.port + 1 if stack.port < 65000 else stack.port - 1
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


def upload_bulk(stack: ServiceStack, plan: Plan) -> str:
    """Upload bulk_rows observations as NDJSON batches, two at a time; return the prefix of their ids."""
    prefix = f"bulk-{uuid.uuid4().hex[:8]}-"

    def upload(start: int) -> None:
        lines = (
            json.dumps({"id": f"{prefix}{n}", "observation": {**COURSE_OBSERVATION, "hour": n % 24}})
            for n in range(start, min(start + plan.rows_per_request, plan.bulk_rows))
        )
        response = requests.post(
            stack.url("/batches"),
            data="\n".join(lines),
            headers={"Content-Type": "application/x-ndjson"},
            timeout=600,
        )
        response.raise_for_status()

    with ThreadPoolExecutor(max_workers=2) as uploads:
        list(uploads.map(upload, range(0, plan.bulk_rows, plan.rows_per_request)))
    return prefix


def run_bulk(stack: ServiceStack, plan: Plan, layout: Layout) -> float:
    """Upload bulk_rows observations with the workers running; return obs/s until all predicted."""
    set_workers(stack, layout)
    started = time.time()
    upload_bulk(stack, plan)
    last = wait_all_predicted(stack)
    return plan.bulk_rows / (last.timestamp() - started)


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
        first, last, count = conn.execute(
            sa.select(
                sa.func.min(predictions.c.predicted_at),
                sa.func.max(predictions.c.predicted_at),
                sa.func.count(),
            ).where(predictions.c.id.startswith(prefix))
        ).one()
    elapsed: float = (last - first).total_seconds()
    return Drain(rate=int(count) / max(elapsed, 1e-3), cpu_busy=cpu_busy)


def raw_limit(stack: ServiceStack, plan: Plan) -> float:
    """One prediction call over the rows (as the worker predicts) plus a COPY of them into Postgres."""
    bundle = load_bundle(get_settings().artifacts_dir)
    observations = [{**COURSE_OBSERVATION, "hour": n % 24} for n in range(plan.bulk_rows)]
    start = time.perf_counter()
    probas = bundle.predict_observations(observations)
    dsn = stack.backend.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TEMP TABLE raw_copy (id text, observation jsonb, proba float8)")
        with conn.cursor().copy("COPY raw_copy (id, observation, proba) FROM STDIN") as copy:
            for n, (observation, proba) in enumerate(zip(observations, probas, strict=True)):
                copy.write_row((f"raw-{n}", json.dumps(observation), float(proba)))
    return plan.bulk_rows / (time.perf_counter() - start)


@dataclass(frozen=True)
class ProcessMemory:
    """Resident memory of one process, and the part of it no other process shares (USS), in MB."""

    rss: float
    unique: float


@dataclass(frozen=True)
class Bulk:
    """Bulk rates in obs/s per worker layout: end to end, and the drain of a filled queue."""

    end_to_end: dict[Layout, float]
    drain: dict[Layout, Drain]


def worker_memory_mb(stack: ServiceStack) -> list[ProcessMemory]:
    """Return the memory of the worker's main process and each pool process."""
    main = psutil.Process(stack.processes["worker"].pid)
    return [
        ProcessMemory(rss=info.rss / 2**20, unique=info.uss / 2**20)
        for info in (p.memory_full_info() for p in [main, *main.children(recursive=True)])
    ]


LIBRARIES_ONLY = """
import sys
import joblib, pandas, psutil, sklearn
joblib.load(sys.argv[1])
print(psutil.Process().memory_info().rss)
"""


def libraries_floor_mb() -> float:
    """Resident memory of a bare Python with pandas and scikit-learn imported and the pipeline loaded."""
    pipeline = bundle_path(get_settings().artifacts_dir) / PIPELINE_FILE
    out = subprocess.run(
        [sys.executable, "-c", LIBRARIES_ONLY, str(pipeline)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1]) / 2**20


@dataclass(frozen=True)
class Layout:
    """How the workers run: Celery worker nodes (what `--scale worker=N` adds), pool processes in each."""

    nodes: int
    processes: int

    @property
    def label(self) -> str:
        return f"{self.nodes} node{'s' if self.nodes > 1 else ''} of {self.processes}"


ONE_WORKER = Layout(nodes=1, processes=1)
TWO_NODES = Layout(nodes=2, processes=1)
TWO_PROCESSES = Layout(nodes=1, processes=2)
LAYOUTS = (ONE_WORKER, TWO_NODES, TWO_PROCESSES)


def worker_names(stack: ServiceStack) -> list[str]:
    return [name for name in stack.processes if name.startswith("worker")]


def stop_workers(stack: ServiceStack) -> None:
    for name in worker_names(stack):
        stack.stop(name)


def set_workers(stack: ServiceStack, layout: Layout) -> None:
    """(Re)start the workers in this layout and wait until every node answers a ping."""
    stop_workers(stack)
    first = stack.commands["worker"]
    first[first.index("--concurrency") + 1] = str(layout.processes)
    nodes = [stack.node_name]
    stack.start("worker")
    for number in range(2, layout.nodes + 1):
        command = list(first)
        nodes.append(f"{number}-{stack.node_name}")
        command[command.index("--hostname") + 1] = nodes[-1]
        stack.commands[f"worker-{number}"] = command
        stack.start(f"worker-{number}")
    stack.wait_for_worker(nodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, for CI: checks the bench still runs"
    )
    parser.add_argument("--record", action="store_true", help=f"write the table to {RESULTS_FILE.name}")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL

    backend = postgres_backend()
    with TemporaryDirectory() as scratch:
        work_dir = Path(scratch)
        stack = ServiceStack(backend, work_dir)
        stack.env.update(
            {
                "LOG_LEVEL": "WARNING",
                "REDRIVE_AFTER_S": "300",
                "MAX_BODY_BYTES": "1048576",
                "BULK_MAX_ITEMS": "1000000",
                "BULK_CHUNK_ROWS": "2000",
                "BULK_ROWS_PER_MESSAGE": "500",
            }
        )
        try:
            print(f"machine: {machine()}", file=sys.stderr)
            print("baseline: course design, gunicorn 2 sync workers ...", file=sys.stderr)
            baseline = run_baseline(stack, plan, work_dir)
            stack.start_all()
            print("single submissions ...", file=sys.stderr)
            single = run_single(stack, plan)
            print("light load ...", file=sys.stderr)
            light = run_light(stack, plan)
            bulk: dict[Layout, float] = {}
            drains: dict[Layout, Drain] = {}
            memory: dict[Layout, list[ProcessMemory]] = {}
            for layout in LAYOUTS:
                print(f"bulk, workers {layout.label} ...", file=sys.stderr)
                bulk[layout] = run_bulk(stack, plan, layout)
                memory[layout] = worker_memory_mb(stack)
                print(f"queue drain, workers {layout.label} ...", file=sys.stderr)
                drains[layout] = run_drain(stack, plan, layout)
            print("raw limit ...", file=sys.stderr)
            raw = raw_limit(stack, plan)
            floor = libraries_floor_mb()
        finally:
            stack.close()
            backend.close()
    table = render(
        plan,
        baseline,
        single,
        light,
        Bulk(end_to_end=bulk, drain=drains),
        raw,
        (memory[ONE_WORKER], memory[TWO_PROCESSES]),
        floor,
        args.smoke,
    )
    print(table)
    if args.record:
        RESULTS_FILE.write_text(table + "\n\n" + READING_NOTES)
    return 0


def render(
    plan: Plan,
    baseline: dict[str, float],
    single: dict[str, float],
    light: dict[str, float],
    bulk: Bulk,
    raw: float,
    memory: tuple[list[ProcessMemory], list[ProcessMemory]],
    floor: float,
    smoke: bool,
) -> str:
    base = baseline["rps"]
    bulk_one = bulk.end_to_end[ONE_WORKER]
    bulk_two = max(bulk.end_to_end[TWO_NODES], bulk.end_to_end[TWO_PROCESSES])
    drain_one = bulk.drain[ONE_WORKER].rate
    drain_two = max(bulk.drain[TWO_NODES].rate, bulk.drain[TWO_PROCESSES].rate)
    best_bulk = max(bulk.end_to_end.values())
    layouts = " · ".join(layout.label for layout in LAYOUTS)

    def per_layout(values: list[float], form: str = "{:,.0f}") -> str:
        return " · ".join(form.format(value) for value in values)

    worst_rss = max(m.rss for m in memory[0] + memory[1])

    def sizes(processes: list[ProcessMemory]) -> str:
        return " · ".join(f"{m.rss:.0f} ({m.unique:.0f})" for m in processes)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    rows: list[tuple[str, str, str, str]] = [
        ("baseline: course design, requests/s", f"{base:,.0f}", "1.0x", ""),
        ("baseline latency p50 / p99 (ms)", f"{baseline['p50']:.1f} / {baseline['p99']:.1f}", "", ""),
        (
            "single submissions accepted/s",
            f"{single['accept_rps']:,.0f}",
            f"{single['accept_rps'] / base:.1f}x",
            "",
        ),
        (
            "single submissions end-to-end obs/s",
            f"{single['e2e_rps']:,.0f}",
            f"{single['e2e_rps'] / base:.1f}x",
            f"≥ 5x baseline: {verdict(single['e2e_rps'] >= 5 * base)}",
        ),
        (
            "accept latency p50 / p99 (ms)",
            f"{single['p50']:.1f} / {single['p99']:.1f}",
            "",
            f"p99 ≤ 20 ms: {verdict(single['p99'] <= 20)}",
        ),
        (
            f"submit-to-result at {plan.light_rate:g}/s, p50 / p99 (ms)",
            f"{light['p50']:.1f} / {light['p99']:.1f}",
            "",
            f"p50 ≤ 25 ms: {verdict(light['p50'] <= 25)}",
        ),
        (
            f"bulk {plan.bulk_rows:,} obs end to end, workers {layouts}, obs/s",
            per_layout([bulk.end_to_end[layout] for layout in LAYOUTS]),
            per_layout([bulk.end_to_end[layout] / base for layout in LAYOUTS], "{:.0f}x"),
            f"≥ 200x baseline: {verdict(best_bulk >= 200 * base)}",
        ),
        (
            "bulk end to end: best of 2 workers / 1",
            f"{bulk_two / bulk_one:.2f}x",
            "",
            f"≥ 1.7x: {verdict(bulk_two >= 1.7 * bulk_one)}",
        ),
        (
            f"queue drain, {plan.bulk_rows:,} obs waiting, workers {layouts}, obs/s",
            per_layout([bulk.drain[layout].rate for layout in LAYOUTS]),
            per_layout([bulk.drain[layout].rate / base for layout in LAYOUTS], "{:.0f}x"),
            "",
        ),
        (
            f"queue drain: machine CPU busy, workers {layouts}",
            per_layout([bulk.drain[layout].cpu_busy for layout in LAYOUTS], "{:.0%}"),
            "",
            "",
        ),
        (
            "queue drain: best of 2 workers / 1",
            f"{drain_two / drain_one:.2f}x",
            "",
            f"≥ 1.7x: {verdict(drain_two >= 1.7 * drain_one)}",
        ),
        (
            "raw limit: one prediction call + COPY, obs/s",
            f"{raw:,.0f}",
            f"{best_bulk / raw:.0%} reached",
            f"≥ 50 %: {verdict(best_bulk >= 0.5 * raw)}",
        ),
        (
            "worker RSS (unique) per process: main · pool, 1 node of 1 / 1 node of 2 processes (MB)",
            f"{sizes(memory[0])} / {sizes(memory[1])}",
            "",
            f"≤ 150 MB: {verdict(worst_rss <= 150)}",
        ),
        (
            "for reference: Python with pandas + scikit-learn and the pipeline loaded, RSS (MB)",
            f"{floor:.0f}",
            "",
            "",
        ),
    ]
    header = [
        f"## Benchmark {'(smoke: sizes too small to mean anything)' if smoke else ''}".rstrip(),
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {machine()} · `make bench`",
        f"Postgres and Redis on this machine; load from an aiohttp client, {plan.concurrency} in flight for "
        f"{plan.load_seconds:g} s; logs at WARNING for both sides.",
        "",
        "| measure | value | vs baseline | target |",
        "| --- | --- | --- | --- |",
    ]
    return "\n".join(header + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows])


if __name__ == "__main__":
    sys.exit(main())
