"""The bench's table: the machine it ran on, the rows and targets, and how to read them."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.crowds import Crowd, Sustained
from bench.latency_curve import ACCEPT_P99_TARGET_MS
from bench.measures import Bulk
from bench.peers.measure import POLL_INTERVAL_S, PeerFigures
from bench.plan import ONE_WORKER, Plan
from bench.workers import ProcessMemory
from core.settings import PROJECT_ROOT

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


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def machine() -> str:
    """Describe this machine: cores and CPU model, memory, Python version, operating system."""
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


def render(
    plan: Plan,
    baseline: dict[str, float],
    single: dict[str, float],
    light: dict[str, float],
    crowd: Crowd,
    sustained: Sustained,
    bulk: Bulk,
    raw: float,
    memory: tuple[list[ProcessMemory], list[ProcessMemory]],
    floor: float,
    smoke: bool,
) -> str:
    """Return the Markdown table of every measure, its ratio to the baseline and its target."""
    base = baseline["rps"]
    bulk_one = bulk.end_to_end[ONE_WORKER]
    # The layouts of two worker processes, as two nodes or as one node of two.
    twos = [layout for layout in plan.layouts if layout.nodes * layout.processes == 2]
    bulk_two = max(bulk.end_to_end[layout] for layout in twos)
    drain_one = bulk.drain[ONE_WORKER].rate
    drain_two = max(bulk.drain[layout].rate for layout in twos)
    best_bulk = max(bulk.end_to_end.values())
    layouts = " · ".join(layout.label for layout in plan.layouts)

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
            f"p99 ≤ {ACCEPT_P99_TARGET_MS:g} ms: {verdict(single['p99'] <= ACCEPT_P99_TARGET_MS)}",
        ),
        (
            f"submit-to-result at {plan.light_rate:g}/s, p50 / p99 (ms)",
            f"{light['p50']:.1f} / {light['p99']:.1f}",
            "",
            f"p50 ≤ 15 ms: {verdict(light['p50'] <= 15)}",
        ),
        (
            f"POST /predict p50 / p99 (ms), {plan.concurrency} in flight (saturating), with "
            f"{crowd.long_polls:,} long-polls and {crowd.idle:,} idle connections held "
            f"({crowd.held_throughout:,} long-polls still held at its end; errors {crowd.errors})",
            f"{crowd.p50:.1f} / {crowd.p99:.1f}",
            "",
            f"p99 ≤ 50 ms: {verdict(crowd.p99 <= 50 and crowd.errors == 0)}",
        ),
        (
            f"POST /predict p50 / p99 (ms) at {crowd.half_rate:,.0f}/s (half the accept rate), the same "
            f"crowd held (errors {crowd.half_errors}); p99 at that rate with no crowd: "
            f"{crowd.half_p99_alone:.1f}",
            f"{crowd.half_p50:.1f} / {crowd.half_p99:.1f}",
            "",
            f"p99 ≤ 50 ms: {verdict(crowd.half_p99 <= 50 and crowd.half_errors == 0)}",
        ),
        (
            f"sustained: {sustained.seconds:g} s at {sustained.rate:,.0f}/s (80 % of the accept rate): "
            "accepted · errors · accept p99 (ms); as the gateway counted them: p99 from body in to answer · "
            "p99 of the wait for a thread (ms); machine CPU busy",
            f"{sustained.accepted:,} · {sustained.errors} · {sustained.p99:.1f}; "
            f"{_ms(sustained.gateway.latency_p99)} · {_ms(sustained.gateway.thread_wait_p99)}; "
            f"{sustained.machine_busy:.0%}",
            "",
            f"no errors, p99 ≤ {ACCEPT_P99_TARGET_MS:g} ms: "
            f"{verdict(sustained.errors == 0 and sustained.p99 <= ACCEPT_P99_TARGET_MS)}",
        ),
        (
            f"bulk {plan.bulk_rows:,} obs end to end, workers {layouts}, obs/s",
            per_layout([bulk.end_to_end[layout] for layout in plan.layouts]),
            per_layout([bulk.end_to_end[layout] / base for layout in plan.layouts], "{:.0f}x"),
            f"≥ 250x baseline and ≥ 50 % of the raw limit: "
            f"{verdict(best_bulk >= 250 * base and best_bulk >= 0.5 * raw)}",
        ),
        (
            f"bulk {plan.bulk_rows:,} obs end to end as CSV, workers 1 node of 1, obs/s",
            f"{bulk.csv_end_to_end:,.0f}",
            f"{bulk.csv_end_to_end / base:.0f}x",
            f"≥ 250x baseline and ≥ 50 % of the raw limit: "
            f"{verdict(bulk.csv_end_to_end >= 250 * base and bulk.csv_end_to_end >= 0.5 * raw)}",
        ),
        (
            f"bulk {bulk.cli.rows:,} obs from the CLI (one CSV file, 1 node of 1): obs/s end to end · "
            f"rate against the {plan.bulk_rows:,} NDJSON run · gateway peak RSS per process (MB; "
            f"{bulk.cli.gateway_start_mb:.0f} before)",
            f"{bulk.cli.rate:,.0f} · {bulk.cli.rate / bulk_one:.2f}x · {bulk.cli.gateway_peak_mb:.0f}",
            f"{bulk.cli.rate / base:.0f}x",
            f"within 1.5x of the {plan.bulk_rows:,} rate: {verdict(bulk.cli.rate * 1.5 >= bulk_one)}",
        ),
        (
            "bulk end to end: best of 2 workers / 1",
            f"{bulk_two / bulk_one:.2f}x",
            "",
            f"≥ 1.7x: {verdict(bulk_two >= 1.7 * bulk_one)}",
        ),
        (
            f"queue drain, {plan.bulk_rows:,} obs waiting, workers {layouts}, obs/s",
            per_layout([bulk.drain[layout].rate for layout in plan.layouts]),
            per_layout([bulk.drain[layout].rate / base for layout in plan.layouts], "{:.0f}x"),
            "",
        ),
        (
            f"queue drain: machine CPU busy, workers {layouts}",
            per_layout([bulk.drain[layout].cpu_busy for layout in plan.layouts], "{:.0%}"),
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
            f"≥ 50 % (best bulk run): {verdict(best_bulk >= 0.5 * raw)}",
        ),
        (
            "worker RSS (unique) per process: main · pool, 1 node of 1 / 1 node of 2 processes (MB)",
            f"{sizes(memory[0])} / {sizes(memory[1])}",
            "",
            f"≤ 150 MB: {verdict(worst_rss <= 150)} (where each MB goes: bench/studies/WORKER_MEMORY.md)",
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


def render_peers(plan: Plan, ours: PeerFigures, peers: list[PeerFigures]) -> str:
    """Return the Markdown table of our figures beside each peer's, measured in the same run."""
    header = [
        "### Peers, same machine, same run",
        "",
        f"Same bundle, one system running at a time. Single: {plan.concurrency} in flight for "
        f"{plan.load_seconds:g} s; end to end until every result was available. Submit-to-result at "
        f"{plan.light_rate:g}/s for {plan.light_seconds:g} s: ours stamped by the service (predicted_at - "
        f"received_at); the peers' from the client, polled every {POLL_INTERVAL_S * 1000:g} ms after the "
        "answer (a sync endpoint's: its response time). "
        f"Bulk: {plan.bulk_rows:,} observations sent as a user of each system would.",
        "",
        "| system | single accepted/s | accept p50 / p99 (ms) | end-to-end obs/s "
        "| submit-to-result p50 / p99 (ms) | bulk obs/s | bulk sent as | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = []
    for row in [ours, *peers]:
        if row.skipped:
            rows.append(f"| {row.system} | {row.skipped} | | | | | | |")
            continue
        rows.append(
            f"| {row.system} | {row.accept_rps:,.0f} | {row.accept_p50:.1f} / {row.accept_p99:.1f} | "
            f"{row.e2e_rps:,.0f} | {row.result_p50:.1f} / {row.result_p99:.1f} | {row.bulk_rps:,.0f} | "
            f"{row.how} | {row.errors} |"
        )
    return "\n".join(header + rows)
