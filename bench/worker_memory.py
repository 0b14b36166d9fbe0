"""Measure where a prediction worker's memory goes (issue 11): library by library, the pipeline, a real node.

Every figure comes from a fresh process: a probe runs a piece of code, reports the modules it loaded and waits
on its stdin while this script reads its memory with psutil (so psutil itself is never counted).

    RSS  pages resident for the process, shared or not (what `ps` and most dashboards show)
    USS  pages no other process maps: what stopping the process gives back
    PSS  each page divided by the number of processes mapping it: adds up over processes to the real total

Run as `python -m bench.worker_memory` against the local Postgres and Redis (db 14); two to three minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from core.celery_app import create_celery_app
from core.feature_spec import SPEC_FILE, FeatureSpec, bundle_path
from core.publishing import publish_observations
from core.settings import PROJECT_ROOT, get_settings
from core.storage.records import QueuedObservation
from devstack.backends import postgres_backend
from devstack.stack import ServiceStack, wait_until
from worker.direct_encoding import probe_observations

MB = 2**20
BENCH_REDIS_DB = 14
OBSERVATIONS_PER_RUN = 2_000

# The probe: run argv[1], report modules (per top-level package) and RESULT, then wait to be measured.
# fork_then(work) forks as the prefork pool does, runs work in the child, and keeps the child until exit.
PROBE = """
import json, os, sys
RESULT = {}
def fork_then(work):
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r); os.close(hold_w)
        exec(work, globals())
        os.write(ready_w, b"x")
        os.read(hold_r, 1)  # end of file once the parent has exited
        os._exit(0)
    os.close(ready_w); os.close(hold_r)
    os.read(ready_r, 1)
    RESULT["fork_pid"] = pid
def vm_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
exec(sys.argv[1], globals())
packages = {}
for name in list(sys.modules):
    top = name.partition(".")[0]
    packages[top] = packages.get(top, 0) + 1
print(json.dumps({"packages": packages, "result": RESULT}), flush=True)
sys.stdin.readline()
"""

# What worker_init does before the pool forks (worker/tasks.py), minus the metrics server.
LOAD_AS_WORKER_INIT = """
import worker.tasks
from worker.bundle import limit_native_threads
limit_native_threads(1)
worker.tasks.process_bundle()
"""

STEPS: tuple[tuple[str, str], ...] = (
    ("bare interpreter", ""),
    ("+ numpy", "import numpy"),
    ("+ pandas", "import pandas"),
    ("+ scikit-learn (compose, pipeline, preprocessing)", "import sklearn.compose, sklearn.pipeline\n"
     "import sklearn.preprocessing"),
    ("+ celery, kombu, redis, celery_batches", "import celery, kombu, redis, celery_batches\n"
     "import celery.worker.request"),
    ("+ sqlalchemy, psycopg", "import sqlalchemy, psycopg, sqlalchemy.dialects.postgresql.psycopg"),
    ("+ our worker modules (import worker.tasks)", "import worker.tasks"),
    ("+ pipeline loaded (process_bundle())", LOAD_AS_WORKER_INIT),
)  # fmt: skip

PIPELINE_SIZE = """
import gc, tracemalloc, types, joblib, numpy as np, sklearn.ensemble
from core.feature_spec import PIPELINE_FILE, bundle_path
from core.settings import get_settings
path = bundle_path(get_settings().artifacts_dir) / PIPELINE_FILE
RESULT["file_mb"] = path.stat().st_size / 2**20
before = vm_rss_mb()
tracemalloc.start()
pipeline = joblib.load(path)
RESULT["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
tracemalloc.stop()
RESULT["load_rss_mb"] = vm_rss_mb() - before
seen, arrays, stack = set(), 0, [pipeline]
while stack:  # every numpy buffer the pipeline holds, each counted once
    obj = stack.pop()
    if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType)):
        continue
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        arrays += obj.nbytes if obj.base is None else 0
        stack += [obj.base] if obj.base is not None else list(obj.ravel()) if obj.dtype == object else []
    else:
        stack += gc.get_referents(obj)
RESULT["arrays_mb"] = arrays / 2**20
predictors = getattr(pipeline.steps[-1][1], "_predictors", [])
nodes = [p.nodes for per_iteration in predictors for p in per_iteration]
RESULT["trees"] = len(nodes)
RESULT["nodes"] = sum(len(n) for n in nodes)
RESULT["node_bytes"] = nodes[0].dtype.itemsize if nodes else 0
fields = nodes[0].dtype.fields.items() if nodes else []
RESULT["float64_fields"] = [name for name, (kind, _) in fields if kind == np.float64]
RESULT["nodes_mb"] = sum(n.nbytes for n in nodes) / 2**20
RESULT["classifier"] = type(pipeline.steps[-1][1]).__name__
"""

# The scipy modules the worker ends up with, imported on numpy alone: what scipy weighs in the worker.
SCIPY_NAMES = LOAD_AS_WORKER_INIT + 'RESULT["scipy"] = sorted(m for m in sys.modules if m[:5] == "scipy")'

# Predict a few batches of probe rows, so that what predicting touches is counted too.
PREDICT = """
from worker.direct_encoding import probe_observations
PROBES = probe_observations(worker.tasks.process_bundle().spec) * 4
for _ in range(20):
    probabilities = worker.tasks.process_bundle().predict_observations(PROBES)
RESULT["sum"] = round(float(probabilities.sum()), 9)  # the same in every variant: the same predictions
RESULT["loaded"] = [name for name in ("pandas.core", "scipy", "sklearn") if name in sys.modules]
"""

# A worker that never imports pandas. worker.bundle and core.frames get a stand-in (pandas would be imported
# where a frame is built), then `import pandas` is made to fail: scikit-learn's ColumnTransformer.transform,
# run by the classifier's own categorical preprocessor at every predict, imports pandas if it can. With the
# load-time equivalence check (it builds a frame) skipped too. It models a worker that runs without pandas.
NO_PANDAS = """
import types
def _import_pandas(name):
    import importlib
    return getattr(importlib.import_module("pandas"), name)
sys.modules["pandas"] = types.ModuleType("pandas")
sys.modules["pandas"].__getattr__ = _import_pandas
import worker.bundle, core.frames
class _NoPandas:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(name)
del sys.modules["pandas"]
sys.meta_path.insert(0, _NoPandas)
"""
SKIP_CHECK = """
import worker.bundle
from worker.direct_encoding import direct_encoder
worker.bundle._checked_direct_encoder = lambda bundle: direct_encoder(bundle.pipeline)
"""

# sklearn.callback imports rich when it is installed; here it comes with schemathesis, a dev dependency the
# Docker image (pip install .) does not install. A None in sys.modules makes the import fail as if absent.
NO_RICH = 'sys.modules["rich"] = None\n'

# The worker's other modules on numpy alone: the floor under a model served without scikit-learn (its trees
# would need a predictor of our own, or another runtime, which this does not measure).
WITHOUT_SKLEARN = """
import numpy, celery, kombu, redis, celery_batches, celery.worker.request
import sqlalchemy, psycopg, sqlalchemy.dialects.postgresql.psycopg
import core.logs, core.publishing, core.result_notices, core.storage.batches, core.storage.observations
import worker.adaptive_batches, worker.lost_batches, worker.metrics, worker.monitor, worker.redrive
import worker.retention
RESULT["loaded"] = [name for name in ("pandas.core", "scipy", "sklearn") if name in sys.modules]
"""

CANDIDATES: tuple[tuple[str, str, Mapping[str, str]], ...] = (
    ("as it is: pipeline loaded, 20 batches predicted", LOAD_AS_WORKER_INIT + PREDICT, {}),
    ("rich absent, as in the Docker image", NO_RICH + LOAD_AS_WORKER_INIT + PREDICT, {}),
    ("equivalence check skipped (pandas imported)", SKIP_CHECK + LOAD_AS_WORKER_INIT + PREDICT, {}),
    ("no pandas + check skipped", NO_PANDAS + SKIP_CHECK + LOAD_AS_WORKER_INIT + PREDICT, {}),
    (
        "no pandas + check skipped + rich absent",
        NO_RICH + NO_PANDAS + SKIP_CHECK + LOAD_AS_WORKER_INIT + PREDICT,
        {},
    ),
    ("as it is, MALLOC_ARENA_MAX=2", LOAD_AS_WORKER_INIT + PREDICT, {"MALLOC_ARENA_MAX": "2"}),
    ("no scikit-learn, scipy, pandas: the other worker modules on numpy", WITHOUT_SKLEARN, {}),
)

# A forked child that collects garbage and predicts, as a pool process does; with and without gc.freeze().
FORK_WORK = "import gc\ngc.collect()\n" + PREDICT.split("\n", 2)[2]
FORK = f"fork_then({FORK_WORK!r})"
FORKS: tuple[tuple[str, str], ...] = (
    ("fork, no gc.freeze()", LOAD_AS_WORKER_INIT + PREDICT + FORK),
    ("fork after gc.freeze()", LOAD_AS_WORKER_INIT + PREDICT + "import gc\ngc.freeze()\n" + FORK),
)


@dataclass(frozen=True)
class Memory:
    """RSS, USS and PSS of one process, in MB."""

    rss: float
    uss: float
    pss: float

    @classmethod
    def of(cls, pid: int) -> Memory:
        info = psutil.Process(pid).memory_full_info()
        return cls(rss=info.rss / MB, uss=info.uss / MB, pss=info.pss / MB)

    def cells(self) -> str:
        return f"{self.rss:.1f} | {self.uss:.1f} | {self.pss:.1f}"


@dataclass(frozen=True)
class Probe:
    """What one probe process loaded and weighed (and its forked child, if it forked one)."""

    memory: Memory
    packages: dict[str, int]
    result: dict[str, Any] = field(default_factory=dict)
    forked: Memory | None = None


def run_probe(code: str, env: Mapping[str, str]) -> Probe:
    """Run code in a fresh interpreter with the worker's environment; measure it once it has run."""
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", PROBE, code],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=dict(env), cwd=PROJECT_ROOT,
            text=True,
        )  # fmt: skip
        assert process.stdout is not None
        try:
            line = process.stdout.readline()
            if not line:
                errors.seek(0)
                raise RuntimeError(f"probe failed:\n{code}\n{errors.read()[-3000:]}")
            report = json.loads(line)
            fork_pid = report["result"].pop("fork_pid", None)
            return Probe(
                memory=Memory.of(process.pid),
                packages=report["packages"],
                result=report["result"],
                forked=Memory.of(fork_pid) if fork_pid else None,
            )
        finally:
            process.communicate("\n", timeout=60)


def new_packages(before: Mapping[str, int], after: Mapping[str, int], top: int = 4) -> str:
    """Name the packages that brought the most new modules, e.g. 'scipy +412, sklearn +160'."""
    added = {name: count - before.get(name, 0) for name, count in after.items()}
    biggest = sorted((item for item in added.items() if item[1] > 0), key=lambda item: -item[1])[:top]
    return ", ".join(f"{name} +{count}" for name, count in biggest)


def mapping_bucket(path: str) -> str:
    """Name what a mapping in /proc/<pid>/smaps belongs to: a package, the interpreter, or anonymous."""
    if not path or path == "[anon]":
        return "[anon] (Python objects, numpy buffers, malloc arenas)"
    if path.startswith("["):
        return path
    if "site-packages/" in path:
        package = path.split("site-packages/", 1)[1].split("/", 1)[0]
        return package.removesuffix(".libs").lstrip("_") + " (.so files)"
    if "python3" in path:
        return "python (libpython, stdlib .so files)"
    return "system libraries (" + Path(path).name.split(".so")[0] + ")"


def mapping_breakdown(pid: int) -> dict[str, tuple[float, float, float]]:
    """Return RSS, private (USS) and PSS in MB per bucket of the process's mappings."""
    buckets: dict[str, tuple[float, float, float]] = {}
    for mapping in psutil.Process(pid).memory_maps(grouped=True):
        name = mapping_bucket(mapping.path)
        if name.startswith("system libraries"):
            name = "system libraries (libc, libstdc++, ...)"
        rss, private, pss = buckets.get(name, (0.0, 0.0, 0.0))
        buckets[name] = (
            rss + mapping.rss / MB,
            private + (mapping.private_clean + mapping.private_dirty) / MB,
            pss + mapping.pss / MB,
        )
    return buckets


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
    print(f"# Worker memory: `python -m bench.worker_memory`, {started}, Python {sys.version.split()[0]}\n")
    with tempfile.TemporaryDirectory() as work_dir, worker_stack(Path(work_dir)) as stack:
        env = {**stack.env, **stack.process_env["worker"]}
        env.pop("WORKER_METRICS_PORT")  # probes serve no metrics; only the real nodes do
        for report in (report_steps, report_pipeline, report_scipy, report_candidates):
            print("\n".join(report(env)) + "\n", flush=True)
        print("\n".join(report_nodes(stack)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
