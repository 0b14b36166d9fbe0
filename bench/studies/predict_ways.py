"""What one prediction call costs the worker, by batch size, for each way it can predict straight from dicts.

    .venv/bin/python -m bench.studies.predict_ways [--repeats 7]

One process, one OpenMP thread (as a pool process runs), the committed bundle. For each batch size it
times the pipeline on a DataFrame and every way `direct_encoders` offers (`codes`: the pipeline's codes to
its classifier; `folded`: the classifier's own codes to a copy of it without its re-encoding; `trees`: those
codes to the trees called directly), in turns, and prints CPU milliseconds per call (median of the repeats)
and each way's ratio against `codes` measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from core.frames import build_frame
from core.settings import get_settings
from worker.bundle import ModelBundle, limit_native_threads, load_bundle
from worker.direct_encoding import direct_encoders, probe_observations

BATCH_SIZES = (1, 10, 50, 500, 5_000)


def cpu_ms_per_call(call: Callable[[], object], calls: int) -> float:
    """Return the process CPU milliseconds one call takes, over calls calls."""
    started = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - started) / calls * 1000


def predict_on_frame(bundle: ModelBundle, rows: list[dict[str, Any]]) -> object:
    """Predict as a worker without direct encoding does: a DataFrame, then the whole pipeline."""
    return bundle.predict_proba(build_frame(rows, bundle.spec))


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.studies.predict_ways", description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    limit_native_threads(1)
    bundle = load_bundle(get_settings().artifacts_dir)
    ways = {way.kind: replace(bundle, encoder=way) for way in direct_encoders(bundle.pipeline)}
    probes = probe_observations(bundle.spec)
    print(f"bundle {bundle.version}, served way: {bundle.encoder.kind if bundle.encoder else 'pipeline'}")
    print(
        "| rows | pipeline ms | "
        + " | ".join(f"{kind} ms" for kind in ways)
        + " | "
        + " | ".join(f"{kind} vs codes" for kind in ways if kind != "codes")
        + " |"
    )
    print("| --- " * (2 + 2 * len(ways) - 1) + "|")
    for size in BATCH_SIZES:
        rows = (probes * (size // len(probes) + 1))[:size]
        calls = max(3, 3_000 // (size + 9))
        callables: dict[str, Callable[[], object]] = {
            "pipeline": partial(predict_on_frame, bundle, rows),
            **{kind: partial(way.predict_observations, rows) for kind, way in ways.items()},
        }
        timings: dict[str, list[float]] = {name: [] for name in callables}
        for _ in range(args.repeats):
            for name, call in callables.items():
                timings[name].append(cpu_ms_per_call(call, calls))
        median = {name: statistics.median(values) for name, values in timings.items()}
        cells = [f"{median[name]:.3f}" for name in callables]
        ratios = [f"{median['codes'] / median[kind]:.2f}x" for kind in ways if kind != "codes"]
        print(f"| {size:,} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
