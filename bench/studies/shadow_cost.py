"""What a shadow version costs the workers: queue drain without a shadow, with one, and without again.

    .venv/bin/python -m bench.studies.shadow_cost [--rows 50000]

One stack on Postgres, one worker process, its artifacts holding the committed bundle (stable) and a copy of
it with a lower threshold (the shadow). Each run fills the queue with the workers stopped, then times the
drain (bench.measures.run_drain); the ratio is against the runs without a shadow in the same process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import requests

from bench.measures import run_drain
from bench.plan import BENCH_ENV, FULL, Layout
from core.feature_spec import METADATA_FILE, current_version
from core.settings import get_settings
from devstack.backends import postgres_backend
from devstack.stack import ServiceStack

SHADOW = "2099.01.01"


def shadow_artifacts(folder: Path) -> Path:
    """Copy the committed bundle into folder (current), and beside it the shadow: the same, threshold 0.2."""
    committed = get_settings().artifacts_dir
    version = current_version(committed)
    shutil.copytree(committed / version, folder / version)
    (folder / "current").write_text(version)
    shutil.copytree(committed / version, folder / SHADOW)
    metadata = json.loads((folder / SHADOW / METADATA_FILE).read_text())
    (folder / SHADOW / METADATA_FILE).write_text(json.dumps(metadata | {"version": SHADOW, "threshold": 0.2}))
    return folder


def main() -> None:
    """Drain the same number of rows three times: no shadow, shadow, no shadow; print each rate."""
    parser = argparse.ArgumentParser(prog="python -m bench.studies.shadow_cost", description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000, help="observations per drain")
    args = parser.parse_args()
    plan = dataclasses.replace(FULL, bulk_rows=args.rows)
    with TemporaryDirectory() as tmp:
        work = Path(tmp)
        backend = postgres_backend()
        stack = ServiceStack(backend, work)
        stack.env.update(
            BENCH_ENV, ARTIFACTS_DIR=str(shadow_artifacts(work / "artifacts")), ROLLOUT_CHECK_S="1"
        )
        rates: dict[str, float] = {}
        try:
            stack.start_all()
            for run in ("no shadow", "shadow", "no shadow again"):
                if run == "shadow":
                    answer = requests.post(stack.url("/models/shadow"), json={"version": SHADOW}, timeout=30)
                    answer.raise_for_status()
                elif run == "no shadow again":
                    requests.delete(stack.url("/models/shadow"), timeout=30).raise_for_status()
                time.sleep(1.5)  # past ROLLOUT_CHECK_S: every worker process reads the change
                drain = run_drain(stack, plan, Layout(1, 1))
                rates[run] = drain.rate
                print(f"{run}: {drain.rate:,.0f} obs/s (machine CPU {drain.cpu_busy:.0%})", flush=True)
        finally:
            stack.close()
            backend.close()
    baseline = (rates["no shadow"] + rates["no shadow again"]) / 2
    print(
        f"with a shadow / without: {rates['shadow'] / baseline:.2f}x ({args.rows:,} rows, 1 worker process)"
    )


if __name__ == "__main__":
    main()
