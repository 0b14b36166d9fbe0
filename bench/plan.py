"""How long and how big each measurement is (the full run and the CI smoke run), and the settings of
the stacks the bench measures."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """How the workers run: Celery worker nodes (what `--scale worker=N` adds), pool processes in each."""

    nodes: int
    processes: int

    @property
    def label(self) -> str:
        """Return the layout as the table names it, e.g. "2 nodes of 1"."""
        return f"{self.nodes} node{'s' if self.nodes > 1 else ''} of {self.processes}"


ONE_WORKER = Layout(nodes=1, processes=1)
TWO_NODES = Layout(nodes=2, processes=1)
TWO_PROCESSES = Layout(nodes=1, processes=2)
LAYOUTS = (ONE_WORKER, TWO_NODES, TWO_PROCESSES)


@dataclass(frozen=True)
class Plan:
    """How long and how big each measurement is."""

    load_seconds: float
    light_seconds: float
    bulk_rows: int
    rows_per_request: int
    long_polls: int
    idle_connections: int
    sustained_seconds: float
    cli_rows: int
    concurrency: int = 16
    light_rate: float = 20
    # Sustained load: this share of the accept rate measured in the same run.
    sustained_share: float = 0.8
    # Accept latency against load: open loop at each of these shares of the accept rate, curve_seconds each.
    curve_shares: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    curve_seconds: float = 10
    # Bulk for a peer that takes one request per observation: at its ~100-400 obs/s, bulk_rows would take
    # many minutes; its rate is steady well before this many.
    one_by_one_bulk_rows: int = 10_000
    # A single behind a bulk upload (issue 28): singles at light_rate from the start of a behind_rows CSV
    # upload until it has drained (at most behind_max_seconds), one worker node; then a second_rows upload
    # sent second_delay_s after another behind_rows one, against its time alone.
    behind_rows: int = 1_000_000
    second_rows: int = 10_000
    second_delay_s: float = 5
    behind_max_seconds: float = 900
    # Worker layouts: bulk end to end and queue drain in each; the capacity model's runs.
    layouts: tuple[Layout, ...] = LAYOUTS
    capacity_layouts: tuple[Layout, ...] = (Layout(1, 1), Layout(2, 1), Layout(4, 1))
    # The capacity model on a database of its own per broker (after a full run, over a million rows are left
    # whose vacuum would count as the workers' cost); the smoke reuses its stack for Redis.
    capacity_on_fresh_stacks: bool = True


FULL = Plan(
    load_seconds=15,
    light_seconds=10,
    bulk_rows=100_000,
    rows_per_request=10_000,
    long_polls=1_000,
    idle_connections=500,
    sustained_seconds=60,
    cli_rows=1_000_000,
)
# The smallest sizes at which every measure still runs and prints a figure: tests/test_bench_smoke.py runs it.
SMOKE = Plan(
    load_seconds=0.5,
    light_seconds=0.5,
    bulk_rows=500,
    rows_per_request=250,
    long_polls=10,
    idle_connections=5,
    sustained_seconds=1,
    curve_shares=(0.2, 0.5),
    curve_seconds=0.5,
    one_by_one_bulk_rows=200,
    cli_rows=500,
    behind_rows=2_000,
    second_rows=200,
    second_delay_s=0.2,
    behind_max_seconds=30,
    # One layout of two processes for the comparisons and the memory of a pool; every worker restart is ~3 s.
    layouts=(ONE_WORKER, TWO_PROCESSES),
    capacity_layouts=(ONE_WORKER,),
    capacity_on_fresh_stacks=False,
)


# The service's settings in every stack the bench starts.
BENCH_ENV = {
    "LOG_LEVEL": "WARNING",
    # The redrive stays out of the measurement: nothing republished before 300 s, backlog or not.
    "REDRIVE_AFTER_S": "300",
    "REDRIVE_BACKLOG_CAP_S": "300",
    "MAX_BODY_BYTES": "1048576",
    "MAX_WAIT_S": "60",  # long-polls held through the crowd measure
    "BULK_MAX_ITEMS": "1000000",
    "BULK_CHUNK_ROWS": "2000",
    "BULK_ROWS_PER_MESSAGE": "500",
}
