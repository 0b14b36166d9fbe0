"""Measure where a prediction worker's memory goes (issue 11): library by library, the pipeline, a real node.

Every figure comes from a fresh process: a probe runs a piece of code, reports the modules it loaded and waits
on its stdin while this script reads its memory with psutil (so psutil itself is never counted).

    RSS  pages resident for the process, shared or not (what `ps` and most dashboards show)
    USS  pages no other process maps: what stopping the process gives back
    PSS  each page divided by the number of processes mapping it: adds up over processes to the real total

Run as `python -m bench.studies.worker_memory` against the local Postgres and Redis (db 14); two to three
minutes.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.studies.memory_probes import (
    BENCH_REDIS_DB,
    CANDIDATES,
    FORKS,
    MB,
    OBSERVATIONS_PER_RUN,
    PIPELINE_SIZE,
    SCIPY_NAMES,
    STEPS,
    Memory,
    mapping_breakdown,
    new_packages,
    run_probe,
)
from core.celery_app import create_celery_app
from core.feature_spec import SPEC_FILE, FeatureSpec, bundle_path
from core.publishing import publish_observations
from core.settings import get_settings
from core.storage.records import QueuedObservation
from devstack.backends import postgres_backend
from devstack.stack import ServiceStack, wait_until
from worker.direct_encoding import probe_observations


@dataclass
class NodeRun:
    """A real worker node (main + pool) measured idle, after predicting, and its mappings after predicting."""

    label: str
    idle: list[Memory]
    worked: list[Memory]
    mappings: list[dict[str, tuple[float, float, float]]]


def node_pids(stack: ServiceStack) -> list[int]:
    main = psutil.Process(stack.processes["worker"].pid)
    return [main.pid, *(child.pid for child in main.children(recursive=True))]


def run_node(stack: ServiceStack, label: str, env: Mapping[str, str], args: Sequence[str]) -> NodeRun:
    """Start the worker as devstack does (plus env and args), predict OBSERVATIONS_PER_RUN rows, measure."""
    command = stack.commands["worker"]
    stack.commands["worker"] = [*command, *args]
    stack.process_env["worker"] = {**stack.process_env["worker"], **env}
    try:
        stack.start("worker")
        stack.wait_for_worker()
        time.sleep(1)  # let start-up garbage settle
        idle = [Memory.of(pid) for pid in node_pids(stack)]
        spec = FeatureSpec.from_dict(
            json.loads((bundle_path(get_settings().artifacts_dir) / SPEC_FILE).read_text())
        )
        rows = probe_observations(spec)
        observations = [
            QueuedObservation(id=str(uuid.uuid4()), observation=rows[number % len(rows)])
            for number in range(OBSERVATIONS_PER_RUN)
        ]
        app = create_celery_app(stack.settings())
        try:
            publish_observations(app, observations, per_message=10)
        finally:
            app.close()
        wait_until(lambda: stack.queue_length() == 0 and stack.held_message_count() == 0, timeout=120)
        time.sleep(1)
        pids = node_pids(stack)
        return NodeRun(
            label, idle, [Memory.of(pid) for pid in pids], [mapping_breakdown(pid) for pid in pids]
        )
    finally:
        stack.stop("worker")
        stack.commands["worker"] = command
        for name in env:
            stack.process_env["worker"].pop(name)


@contextmanager
def worker_stack(work_dir: Path) -> Iterator[ServiceStack]:
    """A fresh Postgres database and a queue of its own on Redis db 14; nothing started yet."""
    backend = postgres_backend()
    backend.broker_url = backend.broker_url.rsplit("/", 1)[0] + f"/{BENCH_REDIS_DB}"
    try:
        stack = ServiceStack(backend, work_dir)
        try:
            yield stack
        finally:
            stack.close()
    finally:
        backend.close()


def mb(value: float) -> str:
    return f"{value:.1f}"


def report_steps(env: Mapping[str, str]) -> list[str]:
    lines = [
        "## 1. Step by step: one fresh interpreter per row, each importing what the rows above did, and more",
        "",
        "| step | RSS MB | Δ RSS | USS MB | PSS MB | modules | new modules, by package |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    code, previous = "", None
    for label, step in STEPS:
        code += step + "\n"
        probe = run_probe(code, env)
        delta = "" if previous is None else f"+{probe.memory.rss - previous.memory.rss:.1f}"
        added = new_packages(previous.packages if previous else {}, probe.packages)
        lines.append(
            f"| {label} | {probe.memory.cells().replace(' | ', f' | {delta} | ', 1)} "
            f"| {sum(probe.packages.values())} | {added if previous else ''} |"
        )
        previous = probe
    return lines


def report_pipeline(env: Mapping[str, str]) -> list[str]:
    result = run_probe(PIPELINE_SIZE, env).result
    fields = result["float64_fields"]
    saving = result["nodes"] * 4 * len(fields) / MB
    return [
        "## 2. The pipeline itself",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| classifier | {result['classifier']} |",
        f"| pipeline.joblib on disk | {result['file_mb']:.2f} MB |",
        f"| RSS growth of joblib.load (sklearn.ensemble already imported) | {result['load_rss_mb']:.2f} MB |",
        f"| Python + numpy allocations held after the load (tracemalloc) | {result['traced_mb']:.2f} MB |",
        f"| numpy buffers reachable from the pipeline | {result['arrays_mb']:.2f} MB |",
        f"| trees, nodes, bytes per node | {result['trees']}, {result['nodes']}, {result['node_bytes']} |",
        f"| trees' node arrays | {result['nodes_mb']:.2f} MB |",
        f"| at most saved with the float64 node fields ({', '.join(fields)}) as float32 | {saving:.2f} MB |",
    ]


def report_scipy(env: Mapping[str, str]) -> list[str]:
    names = run_probe(SCIPY_NAMES, env).result["scipy"]
    numpy_only = run_probe("import numpy", env)
    imports = f"import importlib, numpy\nfor name in {names!r}:\n    importlib.import_module(name)"
    with_scipy = run_probe(imports, env)
    return [
        "## 3. scipy's share: the scipy modules a loaded worker holds, imported on numpy alone",
        "",
        "| process | RSS MB | USS MB | PSS MB |",
        "| --- | ---: | ---: | ---: |",
        f"| numpy | {numpy_only.memory.cells()} |",
        f"| numpy + the worker's {len(names)} scipy modules | {with_scipy.memory.cells()} |",
        f"| scipy's share (RSS) | {with_scipy.memory.rss - numpy_only.memory.rss:.1f} | | |",
    ]


def report_candidates(env: Mapping[str, str]) -> list[str]:
    lines = [
        "## 4. Candidates, in one process (the worker's imports, pipeline loaded, 20 batches predicted)",
        "",
        "| variant | RSS MB | USS MB | PSS MB | loaded of pandas, scipy, sklearn | sum of probabilities |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for label, code, extra in CANDIDATES:
        probe = run_probe(code, {**env, **extra})
        loaded = ", ".join(probe.result["loaded"]) or "none"
        total = probe.result.get("sum", "")
        lines.append(f"| {label} | {probe.memory.cells()} | {loaded} | {total} |")
    lines += [
        "",
        "## 5. gc.freeze(): a forked child collects garbage and predicts 20 batches, as a pool process does",
        "",
        "| variant | parent RSS | USS | PSS | child RSS | child USS | child PSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, code in FORKS:
        probe = run_probe(code, env)
        assert probe.forked is not None
        lines.append(f"| {label} | {probe.memory.cells()} | {probe.forked.cells()} |")
    return lines


def report_nodes(stack: ServiceStack) -> list[str]:
    runs = [
        run_node(stack, "devstack's command (prefork, concurrency 1)", {}, []),
        run_node(stack, "the same, MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"}, []),
        run_node(stack, "--pool solo (one process)", {}, ["--pool", "solo"]),
    ]
    lines = [
        f"## 6. Real worker nodes as devstack starts them: idle, then after {OBSERVATIONS_PER_RUN:,} rows",
        "",
        "| node | process | idle RSS | idle USS | idle PSS | after RSS | after USS | after PSS |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        for index, (idle, worked) in enumerate(zip(run.idle, run.worked, strict=True)):
            process = "main" if index == 0 else f"pool {index}"
            lines.append(f"| {run.label} | {process} | {idle.cells()} | {worked.cells()} |")
        lines.append(
            f"| {run.label} | **node total (PSS)** | | | {mb(sum(m.pss for m in run.idle))} "
            f"| | | {mb(sum(m.pss for m in run.worked))} |"
        )
    default = runs[0]
    main, pool = default.mappings[0], default.mappings[-1]
    lines += [
        "",
        f"## 7. Where the pages are: {default.label}, after predicting (from /proc/<pid>/smaps)",
        "",
        "| mapping | main RSS | main private | pool RSS | pool private | pool PSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    zero = (0.0, 0.0, 0.0)
    for name in sorted(main.keys() | pool.keys(), key=lambda n: -main.get(n, zero)[0]):
        m, p = main.get(name, zero), pool.get(name, zero)
        if max(m[0], p[0]) >= 0.5:
            lines.append(f"| {name} | {mb(m[0])} | {mb(m[1])} | {mb(p[0])} | {mb(p[1])} | {mb(p[2])} |")
    return lines


def main() -> int:
    """Run every measurement and print the tables as Markdown, each as soon as it is measured."""
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    python = sys.version.split()[0]
    print(f"# Worker memory: `python -m bench.studies.worker_memory`, {started}, Python {python}\n")
    with tempfile.TemporaryDirectory() as work_dir, worker_stack(Path(work_dir)) as stack:
        env = {**stack.env, **stack.process_env["worker"]}
        env.pop("WORKER_METRICS_PORT")  # probes serve no metrics; only the real nodes do
        for report in (report_steps, report_pipeline, report_scipy, report_candidates):
            print("\n".join(report(env)) + "\n", flush=True)
        print("\n".join(report_nodes(stack)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
