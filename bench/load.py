"""Load loopback HTTP with an async client: closed loop (N in flight) or open loop (fixed rate)."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from devstack.course import COURSE_OBSERVATION


@dataclass
class LoadResult:
    """What one load run saw."""

    started: float
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    errors: int = 0

    @property
    def rate(self) -> float:
        return len(self.ids) / self.elapsed if self.elapsed else 0.0


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile of values (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def observation_body(run: str, n: int) -> dict[str, Any]:
    """Return a valid request with a unique id; the hour varies so rows differ."""
    return {"id": f"{run}-{n}", "observation": {**COURSE_OBSERVATION, "hour": n % 24}}


@dataclass(frozen=True)
class RequestShape:
    """How a system takes the n-th request of a run, and which field of its answer names the result.

    The service's shape by default: the id is the one sent. A peer may want another body (a list of rows)
    and answer with an id of its own (a task id) to poll the result with.
    """

    body: Callable[[str, int], dict[str, Any]] = observation_body
    answer_id: str = ""


OURS = RequestShape()
# Awaited after each accepted request, with the session, the id to poll and the perf_counter() it was sent at.
FollowUp = Callable[[aiohttp.ClientSession, str, float], Awaitable[None]]


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    body: dict[str, Any],
    result: LoadResult,
    shape: RequestShape,
    follow_up: FollowUp | None,
) -> None:
    sent = time.perf_counter()
    answer_id = key
    try:
        async with session.post(url, json=body) as response:
            await response.read()
            ok = response.status in (200, 202)
            if ok and shape.answer_id:
                answer_id = str((await response.json(content_type=None))[shape.answer_id])
    except aiohttp.ClientError:
        ok = False
    if ok:
        result.latencies_ms.append((time.perf_counter() - sent) * 1000)
        result.ids.append(answer_id)
        if follow_up is not None:
            await follow_up(session, answer_id, sent)
    else:
        result.errors += 1


async def _closed_loop(
    url: str,
    concurrency: int,
    seconds: float,
    total: int | None,
    shape: RequestShape,
    follow_up: FollowUp | None,
) -> LoadResult:
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9 if total is None else total))
    result = LoadResult(started=time.time())
    deadline = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=300 if total is not None else 30)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)
    ) as session:

        async def user() -> None:
            while time.perf_counter() < deadline and (n := next(counter, None)) is not None:
                key = f"{run}-{n}"
                await _post(session, url, key, shape.body(run, n), result, shape, follow_up)

        start = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - start
    return result


async def _open_loop(
    url: str, rate: float, seconds: float, shape: RequestShape, follow_up: FollowUp | None
) -> LoadResult:
    run = uuid.uuid4().hex[:8]
    result = LoadResult(started=time.time())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.perf_counter()
        tasks = []
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            post = _post(session, url, f"{run}-{n}", shape.body(run, n), result, shape, follow_up)
            tasks.append(asyncio.create_task(post))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - start
    return result


async def _open_loop_while(
    url: str,
    rate: float,
    running: Callable[[], bool],
    max_seconds: float,
    shape: RequestShape,
    follow_up: FollowUp | None,
    timeout_s: float,
) -> LoadResult:
    run = uuid.uuid4().hex[:8]
    result = LoadResult(started=time.time())
    # No cap on connections: a request waiting for a free one would be timed slow for the client's sake.
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s), connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        start = time.perf_counter()
        tasks = []
        n = 0
        while running() and time.perf_counter() - start < max_seconds:
            post = _post(session, url, f"{run}-{n}", shape.body(run, n), result, shape, follow_up)
            tasks.append(asyncio.create_task(post))
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - start
    return result


def _run_frozen(load: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    """Run a load with what the bench process holds already frozen out of the garbage collector's sweeps.

    A full collection walks every object the process holds (the bench imports the service, pandas and
    scikit-learn): 83 ms in one run, during which no answer was read, and a hundred requests were timed slow
    for the client's pause, not the service's.
    """
    gc.collect()
    gc.freeze()
    try:
        return asyncio.run(load)
    finally:
        gc.unfreeze()


def closed_loop(
    url: str,
    *,
    concurrency: int,
    seconds: float = float("inf"),
    total: int | None = None,
    shape: RequestShape = OURS,
    follow_up: FollowUp | None = None,
) -> LoadResult:
    """Keep concurrency requests in flight for seconds (or until total are sent); return latencies and ids."""
    return _run_frozen(_closed_loop(url, concurrency, seconds, total, shape, follow_up))


def open_loop(
    url: str,
    *,
    rate: float,
    seconds: float,
    shape: RequestShape = OURS,
    follow_up: FollowUp | None = None,
) -> LoadResult:
    """Send rate requests per second for seconds, whatever the answers take (follow_up awaited after each)."""
    return _run_frozen(_open_loop(url, rate, seconds, shape, follow_up))


def open_loop_while(
    url: str,
    *,
    rate: float,
    running: Callable[[], bool],
    max_seconds: float,
    shape: RequestShape = OURS,
    follow_up: FollowUp | None = None,
    timeout_s: float = 30,
) -> LoadResult:
    """Send rate requests per second while running() holds (at most max_seconds), whatever the answers take;
    each request (and its follow_up) may take timeout_s."""
    return _run_frozen(_open_loop_while(url, rate, running, max_seconds, shape, follow_up, timeout_s))
