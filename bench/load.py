"""Load loopback HTTP with an async client: closed loop (N in flight) or open loop (fixed rate)."""

from __future__ import annotations

import asyncio
import time
import uuid
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


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], result: LoadResult) -> None:
    sent = time.perf_counter()
    try:
        async with session.post(url, json=body) as response:
            await response.read()
            ok = response.status in (200, 202)
    except aiohttp.ClientError:
        ok = False
    if ok:
        result.latencies_ms.append((time.perf_counter() - sent) * 1000)
        result.ids.append(body["id"])
    else:
        result.errors += 1


async def _closed_loop(url: str, concurrency: int, seconds: float) -> LoadResult:
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))
    result = LoadResult(started=time.time())
    deadline = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)
    ) as session:

        async def user() -> None:
            while time.perf_counter() < deadline:
                await _post(session, url, observation_body(run, next(counter)), result)

        start = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - start
    return result


async def _open_loop(url: str, rate: float, seconds: float) -> LoadResult:
    run = uuid.uuid4().hex[:8]
    result = LoadResult(started=time.time())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.perf_counter()
        tasks = []
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(_post(session, url, observation_body(run, n), result)))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - start
    return result


def closed_loop(url: str, *, concurrency: int, seconds: float) -> LoadResult:
    """Keep concurrency requests in flight for seconds; return latencies and accepted ids."""
    return asyncio.run(_closed_loop(url, concurrency, seconds))


def open_loop(url: str, *, rate: float, seconds: float) -> LoadResult:
    """Send rate requests per second for seconds, whatever the answers take."""
    return asyncio.run(_open_loop(url, rate, seconds))
