"""A single behind a bulk upload (issue 28), measured from the client's side on whatever the workers do.

A big CSV goes in as one batch (one POST /batches, as an upstream system sends it) while singles arrive at
the light rate, each long-polled right after its 202, until the upload has drained. The same upload alone
gives the bulk rate to compare with; a second, smaller upload sent a few seconds after another big one was
accepted (its rows all queued) is timed against itself alone.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import requests

from bench.load import FollowUp, open_loop_while, percentile
from bench.measures import (
    CONTENT_TYPES,
    CSV_COLUMNS,
    bulk_body,
    bulk_observation,
    csv_line,
    submit_to_result_ms,
    wait_all_predicted,
)
from bench.peers.measure import POLL_INTERVAL_S, BehindBulk, PeerFigures
from bench.plan import ONE_WORKER, Plan
from bench.workers import set_workers
from core.storage.measurement import prediction_span
from devstack.stack import ServiceStack

# What a long-polling client asks for right after the 202 (the bench's MAX_WAIT_S lets it hold that long).
LONG_POLL_WAIT_S = 30


def write_upload(path: Path, prefix: str, rows: int) -> None:
    """Write rows observations as a CSV file with its header, ids prefix0 onward."""
    with path.open("w") as out:
        out.write(",".join(CSV_COLUMNS) + "\n")
        for n in range(rows):
            out.write(csv_line(f"{prefix}{n}", bulk_observation(n)) + "\n")


def post_upload(stack: ServiceStack, path: Path) -> None:
    """Send a CSV file as one batch (one POST /batches, as an upstream system sends it); return on its 202."""
    with path.open("rb") as body:
        response = requests.post(
            stack.url("/batches"), data=body, headers={"Content-Type": CONTENT_TYPES["csv"]}, timeout=3600
        )
    response.raise_for_status()


def long_polled(stack: ServiceStack, latencies_ms: list[float]) -> FollowUp:
    """Return a follow-up that long-polls the result right after the 202 and notes when it was in hand."""

    async def follow_up(session: aiohttp.ClientSession, observation_id: str, sent: float) -> None:
        url = stack.url(f"/predictions/{observation_id}")
        while True:  # a hold that reached its deadline answers "queued": the client asks again
            async with session.get(url, params={"wait": str(LONG_POLL_WAIT_S)}) as response:
                if response.status not in (200, 202):
                    raise RuntimeError(f"GET {url} answered {response.status}: {await response.text()}")
                status = (await response.json(content_type=None))["status"]
            if status != "queued":
                break
        latencies_ms.append((time.perf_counter() - sent) * 1000)

    return follow_up


def big_upload(
    stack: ServiceStack, plan: Plan, work_dir: Path, singles: bool
) -> tuple[float, list[str], list[float], int]:
    """Send behind_rows as one CSV batch (singles beside it until it drained, if asked); return its obs/s end
    to end, the singles' ids, their long-poll latencies (ms) and the singles that failed."""
    prefix = f"behind-{uuid.uuid4().hex[:8]}-"
    path = work_dir / "behind-bulk.csv"
    write_upload(path, prefix, plan.behind_rows)
    ids: list[str] = []
    long_polls: list[float] = []
    errors = 0
    try:
        started = time.time()
        if not singles:
            post_upload(stack, path)
            wait_all_predicted(stack, timeout=plan.behind_max_seconds)
        else:

            def upload() -> None:
                post_upload(stack, path)
                wait_all_predicted(stack, timeout=plan.behind_max_seconds)

            with ThreadPoolExecutor(max_workers=1) as uploader:
                drained = uploader.submit(upload)
                result = open_loop_while(
                    stack.url("/predict"),
                    rate=plan.light_rate,
                    running=lambda: not drained.done(),
                    max_seconds=plan.behind_max_seconds,
                    follow_up=long_polled(stack, long_polls),
                    timeout_s=2 * LONG_POLL_WAIT_S,
                )
                drained.result()  # the upload's failure, if any
            ids, errors = result.ids, result.errors
            wait_all_predicted(stack)
    finally:
        path.unlink(missing_ok=True)
    with stack.engine.connect() as conn:
        span = prediction_span(conn=conn, id_prefix=prefix)
    return plan.behind_rows / (span.last.timestamp() - started), ids, long_polls, errors


def second_upload_seconds(stack: ServiceStack, plan: Plan, work_dir: Path, behind: bool) -> float:
    """Time second_rows (one CSV batch) from its request to its last result: alone, or sent second_delay_s
    after another behind_rows batch was accepted (two clients' uploads, told apart by batch)."""
    prefix = f"second-{uuid.uuid4().hex[:8]}-"
    body = bulk_body(prefix, range(plan.second_rows), "csv")
    if behind:
        path = work_dir / "behind-first.csv"
        write_upload(path, f"first-{uuid.uuid4().hex[:8]}-", plan.behind_rows)
        try:
            post_upload(stack, path)
        finally:
            path.unlink(missing_ok=True)
        time.sleep(plan.second_delay_s)
    sent = time.time()
    requests.post(
        stack.url("/batches"), data=body, headers={"Content-Type": CONTENT_TYPES["csv"]}, timeout=600
    ).raise_for_status()
    wait_all_predicted(stack, timeout=plan.behind_max_seconds)
    with stack.engine.connect() as conn:
        span = prediction_span(conn=conn, id_prefix=prefix)
    return span.last.timestamp() - sent


def run_behind_bulk(stack: ServiceStack, plan: Plan, work_dir: Path) -> BehindBulk:
    """Measure singles behind a big upload, the upload's rate without and with them, and a second upload
    behind a big one, on one worker node (the workers restart only if they run in another layout)."""
    set_workers(stack, ONE_WORKER)
    alone, _, _, _ = big_upload(stack, plan, work_dir, singles=False)
    beside, ids, long_polls, errors = big_upload(stack, plan, work_dir, singles=True)
    stamped = submit_to_result_ms(stack, ids)
    return BehindBulk(
        singles=len(ids),
        behind_p50=percentile(stamped, 0.5),
        behind_p99=percentile(stamped, 0.99),
        behind_max=max(stamped, default=0.0),
        long_poll_p50=percentile(long_polls, 0.5),
        long_poll_p99=percentile(long_polls, 0.99),
        bulk_alone_rps=alone,
        bulk_beside_rps=beside,
        bulk_how=f"one CSV batch of {plan.behind_rows:,} rows (one POST /batches)",
        errors=errors,
        second_alone_s=second_upload_seconds(stack, plan, work_dir, behind=False),
        second_behind_s=second_upload_seconds(stack, plan, work_dir, behind=True),
    )


# The targets, for our row.
BEHIND_P99_TARGET_MS = 100
LONG_POLL_MARGIN_MS = 50
BULK_KEPT_SHARE = 0.9
SECOND_UPLOAD_FACTOR = 3
NOT_MEASURED = {
    "BentoML, adaptive batching, sync endpoint": "not measured: the issue compares its task endpoint, where "
    "a single waits in the same task queue as the bulk"
}


def _pair(first: float | None, second: float | None, form: str) -> str:
    if first is None or second is None:
        return "n/a"
    return f"{form.format(first)} · {form.format(second)} · {second / first:.2f}x"


def _row(row: PeerFigures) -> str:
    behind = row.behind_bulk
    if row.skipped or behind is None:
        reason = row.skipped or NOT_MEASURED.get(row.system, "not measured")
        return f"| {row.system} | {reason} | | | | | | |"
    long_poll = (
        "n/a"
        if behind.long_poll_p50 is None or behind.long_poll_p99 is None
        else f"{behind.long_poll_p50:.1f} / {behind.long_poll_p99:.1f}"
    )
    return (
        f"| {row.system} | {row.result_p50:.1f} / {row.result_p99:.1f} | "
        f"{behind.behind_p50:.1f} / {behind.behind_p99:.1f} / {behind.behind_max:.1f} | {long_poll} | "
        f"{_pair(behind.bulk_alone_rps, behind.bulk_beside_rps, '{:,.0f}')} | "
        f"{_pair(behind.second_alone_s, behind.second_behind_s, '{:.2f}')} | "
        f"{behind.singles:,} · {behind.errors} | {behind.bulk_how} |"
    )


def _targets(behind: BehindBulk) -> str:
    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    long_poll = behind.long_poll_p99
    long_poll_ok = long_poll is not None and long_poll <= behind.behind_p99 + LONG_POLL_MARGIN_MS
    alone, behind_big = behind.second_alone_s, behind.second_behind_s
    second_ok = alone is not None and behind_big is not None and behind_big <= SECOND_UPLOAD_FACTOR * alone
    return (
        f"Targets, ours: singles behind bulk p99 ≤ {BEHIND_P99_TARGET_MS} ms: "
        f"{verdict(behind.behind_p99 <= BEHIND_P99_TARGET_MS)}; long-poll client p99 within "
        f"{LONG_POLL_MARGIN_MS} ms of it: {verdict(long_poll_ok)}; bulk with singles ≥ "
        f"{BULK_KEPT_SHARE:.0%} of alone: "
        f"{verdict(behind.bulk_beside_rps >= BULK_KEPT_SHARE * behind.bulk_alone_rps)}; second upload "
        f"within {SECOND_UPLOAD_FACTOR}x its time alone: {verdict(second_ok)}."
    )


def render_behind_bulk(plan: Plan, ours: PeerFigures, peers: list[PeerFigures]) -> str:
    """Return the Markdown table of singles behind a bulk upload: ours, then each peer's, same run."""
    header = [
        "### A single behind a bulk upload",
        "",
        f"One worker node. Singles at {plan.light_rate:g}/s from the start of a bulk load until its last "
        f"result; alone: the submit-to-result run above ({plan.light_seconds:g} s, nothing else running). "
        "Ours stamped by the service (predicted_at - received_at), and as a client saw it that long-polls "
        f"(GET /predictions/<id>?wait={LONG_POLL_WAIT_S} right after the 202, again until the result is in "
        f"hand); the peers' from the client, polled every {POLL_INTERVAL_S * 1000:g} ms after the answer. "
        "Bulk obs/s from the start of its sending to its last result, alone and with the singles beside it. "
        f"Second upload: {plan.second_rows:,} rows as one CSV batch, alone and sent "
        f"{plan.second_delay_s:g} s after another {plan.behind_rows:,}-row batch was accepted (its 202: all "
        "its rows queued), from its request to its last result "
        "(API keys off: two clients' uploads, told apart by batch). n/a: the peers have no long-poll and no "
        "second upload here; the Celery template takes one request per observation, so it gets "
        f"{plan.one_by_one_bulk_rows:,} of the rows.",
        "",
        "| system | singles alone p50 / p99 (ms) | singles behind bulk p50 / p99 / max (ms) "
        "| long-poll client p50 / p99 (ms) | bulk obs/s alone · with singles · ratio "
        "| second upload s alone · behind · ratio | singles · errors | bulk sent as |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    table = "\n".join(header + [_row(row) for row in [ours, *peers]])
    return table if ours.behind_bulk is None else table + "\n\n" + _targets(ours.behind_bulk)
