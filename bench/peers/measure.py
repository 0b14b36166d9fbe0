"""Measure one peer as the service is measured: single submissions, light load, results polled, bulk.

Results are polled from the client: every POLL_INTERVAL_S after the answer to the submission, until the
result is in hand. A synchronous endpoint's result is its answer, so its latency is the response time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from bench.load import FollowUp, RequestShape, closed_loop, open_loop, percentile
from bench.plan import Plan

POLL_INTERVAL_S = 0.005
# How long one result may take after its submission was answered; a queue of results gets this much more
# per result in it, at the slowest peer's rate (a result not there by then is lost: the run fails).
RESULT_TIMEOUT_S = 60.0
SLOWEST_RATE = 20.0
# Results checked at once when verifying that every result of a run is there.
CHECKERS = 8
# Checks once whether the result with this id is in hand (True) or not yet (False); raises TaskFailed when the
# peer says it never will be.
Poll = Callable[[aiohttp.ClientSession, str], Awaitable[bool]]


class TaskFailed(Exception):
    """The peer settled a submission as failed: its client gets an error, never a result."""


@dataclass(frozen=True)
class Settled:
    """When every result of a run was in hand or refused, and the ids the peer refused (its errors)."""

    end: float
    failed: list[str]


@dataclass(frozen=True)
class PeerEndpoint:
    """Where and how to submit to a peer, poll its results, and send it bulk."""

    label: str
    submit_url: str
    shape: RequestShape
    poll: Poll | None  # None: synchronous, the answer is the result
    bulk_shape: RequestShape
    bulk_rows: int
    bulk_requests: int
    bulk_concurrency: int
    bulk_how: str


@dataclass(frozen=True)
class BehindBulk:
    """Singles at the light rate while a bulk load drains through one system, in ms and obs/s; None: not
    measured for this system (the table says why)."""

    singles: int
    behind_p50: float
    behind_p99: float
    behind_max: float
    bulk_alone_rps: float
    bulk_beside_rps: float
    bulk_how: str
    errors: int
    long_poll_p50: float | None = None
    long_poll_p99: float | None = None
    second_alone_s: float | None = None
    second_behind_s: float | None = None


@dataclass(frozen=True)
class PeerFigures:
    """One row of the peers table: rates in obs/s, latencies in ms; skipped says why a peer did not run."""

    system: str
    accept_rps: float = 0.0
    accept_p50: float = 0.0
    accept_p99: float = 0.0
    e2e_rps: float = 0.0
    result_p50: float = 0.0
    result_p99: float = 0.0
    bulk_rps: float = 0.0
    errors: int = 0
    how: str = ""
    skipped: str = ""
    behind_bulk: BehindBulk | None = None


async def _settled(session: aiohttp.ClientSession, poll: Poll, task_id: str, failed: list[str]) -> bool:
    """Return whether the result is in hand or refused (a refusal is noted in failed)."""
    try:
        return await poll(session, task_id)
    except (aiohttp.ClientError, TimeoutError):
        return False  # a poll that failed or outlasted the client's timeout is tried again, as a client would
    except TaskFailed:
        failed.append(task_id)
        return True


async def _wait_one(
    session: aiohttp.ClientSession, poll: Poll, task_id: str, deadline: float, failed: list[str]
) -> None:
    while not await _settled(session, poll, task_id, failed):
        if time.monotonic() > deadline:
            raise TimeoutError(f"result {task_id} not available in time: lost?")
        await asyncio.sleep(POLL_INTERVAL_S)


async def _wait_all(poll: Poll, ids: list[str], tail: int, timeout_s: float | None) -> Settled:
    """Wait for the last submitted results one by one, then check all the others; return when all were in
    (or refused), and which were refused."""
    failed: list[str] = []
    allowed = RESULT_TIMEOUT_S + len(ids) / SLOWEST_RATE if timeout_s is None else timeout_s
    deadline = time.monotonic() + allowed
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for task_id in ids[-tail:]:
            await _wait_one(session, poll, task_id, deadline, failed)
        end = time.time()
        # The queue is worked in order, so the others are normally done already: then the end stands.
        pending = iter(ids[:-tail])
        latest = [end]

        async def checker() -> None:
            for task_id in pending:
                if not await _settled(session, poll, task_id, failed):
                    await _wait_one(session, poll, task_id, deadline, failed)
                    latest.append(time.time())

        await asyncio.gather(*(checker() for _ in range(CHECKERS)))
    return Settled(end=max(latest), failed=failed)


def wait_all_results(poll: Poll, ids: list[str], tail: int = 16, timeout_s: float | None = None) -> Settled:
    """Return the time.time() by which every result of ids was available or refused (polled from the client),
    and the refused ids; a result may take timeout_s (None: RESULT_TIMEOUT_S and more for each result before
    it)."""
    return asyncio.run(_wait_all(poll, ids, tail, timeout_s)) if ids else Settled(end=time.time(), failed=[])


def waiting_for_results(
    poll: Poll, latencies_ms: list[float], failed: list[str], timeout_s: float = RESULT_TIMEOUT_S
) -> FollowUp:
    """Return a follow-up that polls the result right after its submission and notes submit-to-result (a
    refused one in failed instead)."""

    async def follow_up(session: aiohttp.ClientSession, task_id: str, sent: float) -> None:
        await _wait_one(session, poll, task_id, time.monotonic() + timeout_s, failed)
        if task_id not in failed:  # other follow-ups note their refusals meanwhile: not a count, the id
            latencies_ms.append((time.perf_counter() - sent) * 1000)

    return follow_up


def warm_up(peer: PeerEndpoint, plan: Plan) -> None:
    """Send a few requests and wait for their results: models loaded, pools forked, batchers trained."""
    result = closed_loop(
        peer.submit_url, concurrency=plan.concurrency, total=4 * plan.concurrency, shape=peer.shape
    )
    if peer.poll is not None and (failed := wait_all_results(peer.poll, result.ids).failed):
        raise RuntimeError(f"{peer.label}: {len(failed)} warm-up submissions failed")
    if not result.ids:
        raise RuntimeError(f"{peer.label}: every warm-up request failed")


def measure_peer(peer: PeerEndpoint, plan: Plan) -> PeerFigures:
    """Measure a started, warmed-up peer: single submissions, submit-to-result at the light rate, bulk."""
    single = closed_loop(
        peer.submit_url, concurrency=plan.concurrency, seconds=plan.load_seconds, shape=peer.shape
    )
    refused: list[str] = []
    if peer.poll is None:
        e2e = single.rate
    else:
        settled = wait_all_results(peer.poll, single.ids)
        refused += settled.failed
        e2e = (len(single.ids) - len(settled.failed)) / (settled.end - single.started)

    latencies: list[float] = []
    follow_up = None if peer.poll is None else waiting_for_results(peer.poll, latencies, refused)
    light = open_loop(
        peer.submit_url,
        rate=plan.light_rate,
        seconds=plan.light_seconds,
        shape=peer.shape,
        follow_up=follow_up,
    )
    if peer.poll is None:
        latencies = light.latencies_ms

    started = time.time()
    bulk = closed_loop(
        peer.submit_url, concurrency=peer.bulk_concurrency, total=peer.bulk_requests, shape=peer.bulk_shape
    )
    bulk_settled = Settled(time.time(), []) if peer.poll is None else wait_all_results(peer.poll, bulk.ids)
    refused += bulk_settled.failed
    done = len(bulk.ids) - len(bulk_settled.failed)
    return PeerFigures(
        system=peer.label,
        accept_rps=single.rate,
        accept_p50=percentile(single.latencies_ms, 0.5),
        accept_p99=percentile(single.latencies_ms, 0.99),
        e2e_rps=e2e,
        result_p50=percentile(latencies, 0.5),
        result_p99=percentile(latencies, 0.99),
        bulk_rps=peer.bulk_rows * done / peer.bulk_requests / (bulk_settled.end - started),
        # Requests answered with an error, and submissions the peer settled as failed.
        errors=single.errors + light.errors + bulk.errors + len(refused),
        how=peer.bulk_how,
    )
