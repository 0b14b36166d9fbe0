"""The capacity model: CPU per 1,000 observations in each process group, per worker layout, projected.

One machine cannot show 8 workers going 8x faster. It can show what scaling depends on: whether the workers'
CPU per observation stays flat as nodes are added (they do not get in each other's way), and what each
observation costs Postgres, the broker (Redis or RabbitMQ) and the gateway, so the ceiling each sets is
known. CPU is read with psutil from every process of a group (user + system seconds) before and after a run;
Postgres, Redis and RabbitMQ count every server process, so the machine should run nothing else meanwhile.

    python -m bench.capacity --broker rabbitmq     # the capacity model alone, on one broker
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import psutil

from bench.load import closed_loop
from bench.measures import upload_bulk, wait_all_predicted
from bench.plan import BENCH_ENV, FULL, SMOKE, Plan
from bench.workers import process_tree, set_workers, stop_workers, worker_names
from devstack.backends import Backend, postgres_backend, rabbitmq_backend
from devstack.stack import ServiceStack, wait_until

GROUPS = ("gateway", "worker", "postgres", "redis", "rabbitmq")
# Each group's column title in the rendered table.
TITLES = dict(zip(GROUPS, ("gateway", "workers", "Postgres", "Redis", "RabbitMQ"), strict=True))
# The brokers the model is measured on, and the servers each stack runs on (Redis carries the long-poll
# notices beside RabbitMQ: its column is shown there too).
BROKERS: dict[str, Callable[[], Backend]] = {"Redis": postgres_backend, "RabbitMQ": rabbitmq_backend}
PROJECTED_WORKER_CORES = (1, 2, 4, 8, 16)


def _group_processes(stack: ServiceStack) -> dict[str, list[psutil.Process]]:
    groups: dict[str, list[psutil.Process]] = {name: [] for name in GROUPS}
    groups["gateway"] = process_tree(stack.processes["gateway"].pid)
    groups["worker"] = [p for name in worker_names(stack) for p in process_tree(stack.processes[name].pid)]
    for process in psutil.process_iter(["name", "username"]):
        if process.info["username"] == "postgres":
            groups["postgres"].append(process)
        elif process.info["name"] == "redis-server":
            groups["redis"].append(process)
        elif process.info["username"] == "rabbitmq":
            groups["rabbitmq"].append(process)
    return groups


Reading = dict[str, dict[int, float]]  # group -> process id -> CPU seconds used so far


def cpu_seconds(stack: ServiceStack) -> Reading:
    """Return the CPU seconds (user + system) each process of each group has used so far."""
    used: Reading = {group: {} for group in GROUPS}
    for group, processes in _group_processes(stack).items():
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue  # exited meanwhile
            used[group][process.pid] = times.user + times.system
    return used


def per_thousand(before: Reading, after: Reading, observations: int) -> dict[str, float]:
    """Return each group's CPU milliseconds per 1,000 observations between two readings.

    Counted per process: one started meanwhile counts whole; one that exited meanwhile (a pooled connection's
    server process closed, say) is left out, so a figure can only be low, never negative.
    """
    return {
        group: sum(seconds - before[group].get(pid, 0.0) for pid, seconds in after[group].items())
        * 1e6
        / max(observations, 1)
        for group in GROUPS
    }


@dataclass(frozen=True)
class RunCost:
    """One measured run: what it was, its rate, each group's CPU ms per 1,000 observations, machine load."""

    label: str
    rate: float
    cost: dict[str, float]
    machine_busy: float


@dataclass(frozen=True)
class Capacity:
    """The runs the model rests on: bulk intake alone, bulk per worker layout, single submissions."""

    broker: str
    intake: RunCost
    layouts: list[RunCost]
    single: RunCost


class CpuWindow:
    """A reading of every group's CPU and of the machine's load, to close with the observations it saw."""

    def __init__(self, stack: ServiceStack) -> None:
        self._stack = stack
        self._before = cpu_seconds(stack)
        psutil.cpu_percent()  # starts the machine-wide window

    def close(self, label: str, observations: int, seconds: float) -> RunCost:
        """Return the run's rate, each group's CPU per 1,000 observations, and the machine's busy share."""
        return RunCost(
            label=label,
            rate=observations / max(seconds, 1e-3),
            cost=per_thousand(self._before, cpu_seconds(self._stack), observations),
            machine_busy=psutil.cpu_percent() / 100,
        )


def measure_capacity_on_fresh_stack(plan: Plan, broker: str) -> Capacity:
    """Measure the capacity model on a database of its own, with this broker (a key of BROKERS): the bench's
    run before leaves over a million rows behind, whose vacuum would count as the workers' Postgres cost."""
    backend = BROKERS[broker]()
    with TemporaryDirectory() as scratch:
        stack = ServiceStack(backend, Path(scratch))
        stack.env.update(BENCH_ENV)
        try:
            # The workers start with the first layout measured: the intake is measured without them.
            stack.start("gateway")
            stack.start("redrive")
            wait_until(stack.ready, timeout=60, interval=0.2)
            return measure_capacity(stack, plan, broker)
        finally:
            stack.close()
            backend.close()


def measure_capacity(stack: ServiceStack, plan: Plan, broker: str) -> Capacity:
    """Measure bulk intake alone, bulk end to end per layout (workers started idle), single submissions."""
    stop_workers(stack)
    window, started = CpuWindow(stack), time.time()
    upload_bulk(stack, plan)
    intake = window.close("bulk intake alone (workers stopped)", plan.bulk_rows, time.time() - started)
    layouts = []
    for layout in plan.capacity_layouts:
        set_workers(stack, layout)
        wait_all_predicted(stack)  # what waits (the intake's rows, the last layout's) drains uncounted
        window, started = CpuWindow(stack), time.time()
        upload_bulk(stack, plan)
        last = wait_all_predicted(stack)
        label = f"bulk end to end, workers {layout.label}"
        layouts.append(window.close(label, plan.bulk_rows, last.timestamp() - started))
    set_workers(stack, plan.capacity_layouts[0])
    window = CpuWindow(stack)
    result = closed_loop(stack.url("/predict"), concurrency=plan.concurrency, seconds=plan.load_seconds)
    last = wait_all_predicted(stack)
    single = window.close(
        "single submissions, workers 1 node of 1", len(result.ids), last.timestamp() - result.started
    )
    return Capacity(broker=broker, intake=intake, layouts=layouts, single=single)


def render_capacity(capacity: Capacity) -> str:
    """Return the measured table and its projection: worker cores -> obs/s, and the cores the others need."""
    groups = GROUPS if capacity.broker == "RabbitMQ" else GROUPS[:-1]
    broker = capacity.broker.lower()
    measured = [
        f"### Capacity model on {capacity.broker}: CPU per 1,000 observations",
        "",
        f"| run | obs/s | {' | '.join(TITLES[group] for group in groups)} | machine busy |",
        f"| --- | --- | {' | '.join('---' for _ in groups)} | --- |",
    ]
    for run in [capacity.intake, *capacity.layouts, capacity.single]:
        cells = " | ".join(f"{run.cost[group]:,.0f} ms" for group in groups)
        measured.append(f"| {run.label} | {run.rate:,.0f} | {cells} | {run.machine_busy:.0%} |")
    one = capacity.layouts[0].cost
    # The workers' side of Postgres: an end-to-end run's Postgres CPU less what the intake alone cost it.
    pg_worker = max(one["postgres"] - capacity.intake.cost["postgres"], 0.0)
    per_worker_core = 1e6 / max(one["worker"], 1e-9)
    projection = [
        "",
        f"Bulk, from the 1-node run: a worker core predicts {per_worker_core:,.0f} obs/s; 1,000 observations "
        f"cost Postgres {one['postgres']:,.0f} ms ({capacity.intake.cost['postgres']:,.0f} at intake, "
        f"{pg_worker:,.0f} for the workers' reads and writes), the gateway {one['gateway']:,.0f} ms, "
        f"{capacity.broker} {one[broker]:,.0f} ms. Rows: worker cores, the rate they give, the cores the "
        "others need then.",
        "",
        "| worker cores | bulk obs/s | Postgres cores needed | gateway cores needed |",
        "| --- | --- | --- | --- |",
    ]
    for cores in PROJECTED_WORKER_CORES:
        rate = cores * per_worker_core
        projection.append(
            f"| {cores} | {rate:,.0f} | {rate * one['postgres'] / 1e6:.1f} "
            f"| {rate * one['gateway'] / 1e6:.1f} |"
        )
    single = capacity.single.cost
    gateway_rate, worker_rate = (1e6 / max(single[group], 1e-9) for group in ("gateway", "worker"))
    projection += [
        "",
        f"Single submissions: a gateway core accepts {gateway_rate:,.0f} obs/s and a worker core predicts "
        f"{worker_rate:,.0f} (micro-batches are small at this rate); Postgres takes "
        f"{single['postgres']:,.0f} ms per 1,000, {capacity.broker} {single[broker]:,.0f} ms.",
    ]
    return "\n".join(measured + projection)


def main(argv: list[str] | None = None) -> int:
    """Measure the capacity model alone on one broker and print it."""
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--broker", choices=[b.lower() for b in BROKERS], default="redis")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it still runs")
    args = parser.parse_args(argv)
    broker = next(name for name in BROKERS if name.lower() == args.broker)
    print(render_capacity(measure_capacity_on_fresh_stack(SMOKE if args.smoke else FULL, broker)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
