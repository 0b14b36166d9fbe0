"""The probes bench/studies/worker_memory.py measures: code run in fresh interpreters, what each weighs (RSS,
USS, PSS), the packages it loaded, and where a process's mapped memory comes from."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from core.settings import PROJECT_ROOT

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
BUNDLE = worker.tasks.process_shelf().get(worker.tasks.default_version())
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
    ("+ pipeline loaded (the settings' version, on the shelf)", LOAD_AS_WORKER_INIT),
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
PROBES = probe_observations(BUNDLE.spec) * 4
for _ in range(20):
    probabilities = BUNDLE.predict_observations(PROBES)
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
from worker.direct_encoding import direct_encoders
worker.bundle._checked_direct_encoder = lambda bundle: direct_encoders(bundle.pipeline)[0]
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
