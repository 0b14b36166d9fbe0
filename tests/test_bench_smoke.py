"""The benchmark still runs end to end (tiny sizes: its figures mean nothing here, only that it works)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from core.settings import PROJECT_ROOT


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("starts_servers")
def test_bench_smoke_mode_prints_every_measure() -> None:
    bench = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert bench.returncode == 0, bench.stderr[-2000:]
    # The BentoML peer's venv is made before the suite (`make bench-peers`), not while a test runs.
    assert "BentoML venv reused" in bench.stderr, "run `make bench-peers` (make test does) before the suite"
    for measure in (
        "baseline: course design, requests/s",
        "single submissions end-to-end obs/s",
        "submit-to-result at 20/s",
        "16 in flight (saturating), with 10 long-polls and 5 idle connections held",
        "(half the accept rate), the same crowd held",
        "sustained: 1 s at",
        "as the gateway counted them: p99 from body in to answer",
        "bulk 500 obs end to end, workers 1 node of 1 · 1 node of 2",
        "queue drain: best of 2 workers / 1",
        "obs end to end as CSV",
        "obs from the CLI (one CSV file, 1 node of 1)",
        "raw limit",
        "Capacity model on Redis: CPU per 1,000 observations",
        "Capacity model on RabbitMQ: CPU per 1,000 observations",
        "| run | obs/s | gateway | workers | Postgres | Redis | RabbitMQ | machine busy |",
        "bulk end to end, workers 1 node of 1",
        "| worker cores | bulk obs/s | Postgres cores needed | gateway cores needed |",
        "worker RSS",
        "pandas + scikit-learn and the pipeline loaded",
        "Peers, same machine, same run",
        "| ours (gateway + 1 worker process) |",
        "| Celery template (Flask + one task per request) |",
        "| BentoML, adaptive batching, sync endpoint |",
        "| BentoML, task endpoint (submit + poll), 1 worker |",
    ):
        assert measure in bench.stdout
    # A single behind a bulk upload: our row and each queued peer's carry figures; the sync endpoint says why
    # it is left out; our targets are judged.
    behind = bench.stdout.split("### A single behind a bulk upload", 1)[-1]
    assert (
        "| system | singles alone p50 / p99 (ms) | singles behind bulk p50 / p99 / max (ms) "
        "| long-poll client p50 / p99 (ms) | bulk obs/s alone · with singles · ratio "
        "| second upload s alone · behind · ratio | singles · errors | bulk sent as |"
    ) in behind, bench.stdout[-3000:]
    figures = (
        r" \| [\d.]+ / [\d.]+ \| [\d.]+ / [\d.]+ / [\d.]+ \| ({}) \| [\d,]+ · [\d,]+ · [\d.]+x \| ({}) \| "
        r"[\d,]+ · \d+ \| "
    )
    ours = figures.format(r"[\d.]+ / [\d.]+", r"[\d.]+ · [\d.]+ · [\d.]+x")
    peer = figures.format("n/a", "n/a")
    for row in (
        r"\| ours \(gateway \+ 1 worker process\)" + ours,
        r"\| Celery template \(Flask \+ one task per request\)" + peer,
        r"\| BentoML, task endpoint \(submit \+ poll\), 1 worker" + peer,
    ):
        assert re.search(row, behind), (row, behind[:3000])
    assert "| BentoML, adaptive batching, sync endpoint | not measured: " in behind
    assert re.search(r"^Targets, ours: singles behind bulk p99 ≤ 100 ms: (met|\*\*missed\*\*);", behind, re.M)
    # The gateway's own p99s of the sustained load were read from its histograms: figures, not "n/a".
    sustained = re.search(r"\| [\d,]+ · \d+ · [\d.]+; ([\d.]+|n/a) · ([\d.]+|n/a); \d+% \|", bench.stdout)
    assert sustained is not None and "n/a" not in sustained.groups(), bench.stdout[-3000:]
    # Accept latency against load: a row of figures for each share of the smoke plan (20 % and 50 %).
    curve = bench.stdout.split("### Accept latency against load", 1)[-1]
    assert "Accept p99 ≤ 20 ms held up to: " in curve
    shares = re.findall(r"^\| (\d+)% \| [\d,]+ \| [\d.]+ / [\d.]+ \| \d+ \| \d+% \| [\d.]+ \|$", curve, re.M)
    assert shares == ["20", "50"], curve[:1500]
