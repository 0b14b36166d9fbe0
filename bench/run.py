"""Benchmark the service against the synchronous baseline and its peers on this machine (make bench; --smoke
for CI).

Everything runs on loopback against the local Postgres and Redis, in one run: ratios compare like with like.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.behind_bulk import render_behind_bulk, run_behind_bulk
from bench.capacity import BROKERS, measure_capacity, measure_capacity_on_fresh_stack, render_capacity
from bench.crowds import run_crowd, run_sustained
from bench.latency_curve import render_latency_curve, run_latency_curve
from bench.measures import (
    Bulk,
    Drain,
    raw_limit,
    run_baseline,
    run_bulk,
    run_cli_bulk,
    run_drain,
    run_light,
    run_single,
)
from bench.peers.measure import PeerFigures
from bench.peers.runner import run_peers
from bench.plan import BENCH_ENV, FULL, ONE_WORKER, SMOKE, TWO_PROCESSES, Layout
from bench.report import READING_NOTES, RESULTS_FILE, machine, render, render_peers
from bench.workers import ProcessMemory, libraries_floor_mb, worker_memory_mb
from devstack.backends import postgres_backend
from devstack.stack import ServiceStack


def main(argv: list[str] | None = None) -> int:
    """Run every measurement on a fresh stack, print the table and, with --record, write it to RESULTS.md."""
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
        stack.env.update(BENCH_ENV)
        try:
            print(f"machine: {machine()}", file=sys.stderr)
            print("baseline: course design, gunicorn 2 sync workers ...", file=sys.stderr)
            baseline = run_baseline(stack, plan, work_dir)
            # One peer at a time, before the service starts: nothing else of the bench runs beside them.
            peers = run_peers(plan, work_dir, stack.env, stack.settings())
            stack.start_all()
            print("single submissions ...", file=sys.stderr)
            single = run_single(stack, plan)
            print("light load ...", file=sys.stderr)
            light = run_light(stack, plan)
            print(
                f"{plan.long_polls} long-polls and {plan.idle_connections} idle connections held ...",
                file=sys.stderr,
            )
            crowd = run_crowd(stack, plan, max_rate=single["accept_rps"])
            print(f"sustained load, {plan.sustained_seconds:g} s ...", file=sys.stderr)
            sustained = run_sustained(stack, plan, max_rate=single["accept_rps"])
            print("accept latency against load ...", file=sys.stderr)
            curve = run_latency_curve(stack, plan, max_rate=single["accept_rps"])
            bulk: dict[Layout, float] = {}
            drains: dict[Layout, Drain] = {}
            memory: dict[Layout, list[ProcessMemory]] = {}
            # Every bulk measure of one worker while that layout runs, then each layout's drain: a layout
            # switch restarts the workers.
            for layout in plan.layouts:
                print(f"bulk, workers {layout.label} ...", file=sys.stderr)
                bulk[layout] = run_bulk(stack, plan, layout)
                memory[layout] = worker_memory_mb(stack)
                if layout == ONE_WORKER:
                    print("bulk as CSV, workers 1 node of 1 ...", file=sys.stderr)
                    bulk_csv = run_bulk(stack, plan, ONE_WORKER, "csv")
                    print(f"bulk: {plan.cli_rows:,} rows from the CLI ...", file=sys.stderr)
                    cli = run_cli_bulk(stack, plan, work_dir)
                    print(f"singles behind a {plan.behind_rows:,}-row upload ...", file=sys.stderr)
                    behind = run_behind_bulk(stack, plan, work_dir)
                print(f"queue drain, workers {layout.label} ...", file=sys.stderr)
                drains[layout] = run_drain(stack, plan, layout)
            print("raw limit ...", file=sys.stderr)
            raw = raw_limit(stack, plan)
            floor = libraries_floor_mb()
            capacities = []
            if not plan.capacity_on_fresh_stacks:
                print("capacity model on Redis, on the same stack ...", file=sys.stderr)
                capacities.append(measure_capacity(stack, plan, "Redis"))
        finally:
            stack.close()
            backend.close()
    for broker in BROKERS if plan.capacity_on_fresh_stacks else ["RabbitMQ"]:
        print(f"capacity model on {broker}, on a fresh database ...", file=sys.stderr)
        capacities.append(measure_capacity_on_fresh_stack(plan, broker))
    table = render(
        plan,
        baseline,
        single,
        light,
        crowd,
        sustained,
        Bulk(end_to_end=bulk, drain=drains, csv_end_to_end=bulk_csv, cli=cli),
        raw,
        (memory[ONE_WORKER], memory[TWO_PROCESSES]),
        floor,
        args.smoke,
    )
    ours = PeerFigures(
        system="ours (gateway + 1 worker process)",
        accept_rps=single["accept_rps"],
        accept_p50=single["p50"],
        accept_p99=single["p99"],
        e2e_rps=single["e2e_rps"],
        result_p50=light["p50"],
        result_p99=light["p99"],
        bulk_rps=bulk[ONE_WORKER],
        errors=int(single["errors"]),
        how=f"NDJSON batches of {plan.rows_per_request:,} rows, 2 in flight",
        behind_bulk=behind,
    )
    table += "\n\n" + render_latency_curve(curve, max_rate=single["accept_rps"])
    table += "\n\n" + render_peers(plan, ours, peers)
    table += "\n\n" + render_behind_bulk(plan, ours, peers)
    table += "".join("\n\n" + render_capacity(capacity) for capacity in capacities)
    print(table)
    if args.record:
        RESULTS_FILE.write_text(table + "\n\n" + READING_NOTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
