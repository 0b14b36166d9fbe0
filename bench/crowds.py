"""Patient and idle clients beside the busy ones, and a sustained load just under the maximum."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass

import aiohttp
import psutil

from bench.gateway_view import GatewayView, gateway_view, long_polls_held, read_buckets
from bench.load import closed_loop, open_loop, percentile
from bench.measures import wait_all_predicted
from bench.plan import Plan
from core.celery_app import create_celery_app
from core.publishing import publish_observations
from core.storage.observations import insert_queued
from core.storage.records import QueuedObservation, utc_now
from devstack.course import COURSE_OBSERVATION
from devstack.stack import ServiceStack, wait_until


@dataclass(frozen=True)
class Crowd:
    """POST /predict latency while long-polls and idle connections were held, and how many stayed held.

    Measured twice while held: saturating (plan.concurrency in flight, where latency is the queue a full
    machine builds) and at half the accept rate (open loop), beside the same half-rate load without the crowd.
    """

    long_polls: int
    idle: int
    p50: float
    p99: float
    errors: int
    half_rate: float
    half_p50: float
    half_p99: float
    half_errors: int
    half_p99_alone: float
    held_throughout: int


class HeldClients:
    """Idle TCP connections and long-polls on queued observations, held on an event loop of their own."""

    def __init__(self, stack: ServiceStack, ids: list[str], idle: int) -> None:
        self._stack, self._ids, self._idle = stack, ids, idle
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.answered = 0
        self.connected = 0

    def __enter__(self) -> HeldClients:
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._hold(), self._loop)
        return self

    def __exit__(self, *_: object) -> None:
        self._task.result(timeout=120)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _hold(self) -> None:
        port = self._stack.port
        sockets = [await asyncio.open_connection("127.0.0.1", port) for _ in range(self._idle)]
        self.connected = len(sockets)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as session:

            async def long_poll(observation_id: str) -> None:
                async with session.get(self._stack.url(f"/predictions/{observation_id}?wait=60")) as answer:
                    await answer.read()
                self.answered += 1

            await asyncio.gather(*(long_poll(i) for i in self._ids))
        for _, writer in sockets:
            writer.close()


def run_crowd(stack: ServiceStack, plan: Plan, max_rate: float) -> Crowd:
    """Hold long-polls and idle connections, load POST /predict meanwhile, then let the long-polls finish."""
    half_rate = max_rate / 2
    alone = open_loop(stack.url("/predict"), rate=half_rate, seconds=plan.load_seconds)
    run = uuid.uuid4().hex[:8]  # fresh ids: a crowd measured again waits on rows still queued
    held = [
        QueuedObservation(id=f"held-{run}-{n}", observation=COURSE_OBSERVATION)
        for n in range(plan.long_polls)
    ]
    with (
        stack.engine.begin() as conn
    ):  # stored and not published: they wait until this measure publishes them
        for row in held:
            insert_queued(conn=conn, observation_id=row.id, observation=row.observation, now=utc_now())
    with HeldClients(stack, [row.id for row in held], plan.idle_connections) as clients:
        wait_until(lambda: clients.connected == plan.idle_connections, timeout=60)
        # The load starts once the crowd is held, as the target says: not while its first passes are answered.
        wait_until(lambda: long_polls_held(stack) == plan.long_polls, timeout=60)
        load = closed_loop(stack.url("/predict"), concurrency=plan.concurrency, seconds=plan.load_seconds)
        half = open_loop(stack.url("/predict"), rate=half_rate, seconds=plan.load_seconds)
        held_throughout = plan.long_polls - clients.answered
        celery = create_celery_app(stack.settings())
        try:
            publish_observations(celery, held, per_message=100)
        finally:
            celery.close()
    wait_all_predicted(stack)
    return Crowd(
        long_polls=plan.long_polls,
        idle=plan.idle_connections,
        p50=percentile(load.latencies_ms, 0.5),
        p99=percentile(load.latencies_ms, 0.99),
        errors=load.errors,
        half_rate=half_rate,
        half_p50=percentile(half.latencies_ms, 0.5),
        half_p99=percentile(half.latencies_ms, 0.99),
        half_errors=half.errors,
        half_p99_alone=percentile(alone.latencies_ms, 0.99),
        held_throughout=held_throughout,
    )


@dataclass(frozen=True)
class Sustained:
    """An open-loop load at a share of the measured accept rate: what it asked, what it got, what the gateway
    counted of it and how busy the machine was meanwhile."""

    rate: float
    seconds: float
    accepted: int
    errors: int
    p99: float
    gateway: GatewayView
    machine_busy: float


def run_sustained(stack: ServiceStack, plan: Plan, max_rate: float) -> Sustained:
    """Send sustained_share of max_rate requests a second for sustained_seconds; count errors, time them."""
    rate = plan.sustained_share * max_rate
    before = read_buckets(stack)
    psutil.cpu_percent()  # starts the window: the next call averages over it
    result = open_loop(stack.url("/predict"), rate=rate, seconds=plan.sustained_seconds)
    machine_busy = psutil.cpu_percent() / 100
    after = read_buckets(stack)
    wait_all_predicted(stack)
    return Sustained(
        rate=rate,
        seconds=plan.sustained_seconds,
        accepted=len(result.ids),
        errors=result.errors,
        p99=percentile(result.latencies_ms, 0.99),
        gateway=gateway_view(before, after),
        machine_busy=machine_busy,
    )
