"""Patient, idle and slow clients cost the gateway no thread: everyone else is still answered at once."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import requests

from core.celery_app import create_celery_app
from core.publishing import publish_observations
from core.storage.observations import insert_queued
from core.storage.records import QueuedObservation, utc_now
from devstack.stack import ServiceStack, wait_until
from tests.factories import new_id, observation, prediction_request
from tests.service_steps import scrape

# Two gateway processes of GATEWAY_THREADS (8) threads: more waiting clients than that held threads before.
CROWD = 60


def answer_seconds(stack: ServiceStack) -> float:
    """Time a health check and a submission, the slower of the two."""
    started = time.monotonic()
    assert requests.get(stack.url("/health"), timeout=30).status_code == 200
    assert requests.post(stack.url("/predict"), json=prediction_request(), timeout=30).status_code == 202
    return time.monotonic() - started


@contextmanager
def open_connections(
    stack: ServiceStack, count: int, first_bytes: bytes = b""
) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack_of_sockets:
        connections = []
        for _ in range(count):
            connection = stack_of_sockets.enter_context(socket.create_connection(("127.0.0.1", stack.port)))
            if first_bytes:
                connection.sendall(first_bytes)
            connections.append(connection)
        yield connections


def test_idle_connections_do_not_stall_anyone(stack: ServiceStack) -> None:
    with open_connections(stack, CROWD):
        time.sleep(0.5)
        assert answer_seconds(stack) < 1


def test_clients_sending_their_headers_slowly_do_not_stall_anyone(stack: ServiceStack) -> None:
    with open_connections(stack, CROWD, b"GET /health HTTP/1.1\r\nHo") as connections:
        time.sleep(0.5)
        assert answer_seconds(stack) < 1
        for connection in connections:
            connection.sendall(b"s")  # still sending, one byte at a time


def test_a_batch_whose_body_has_not_arrived_blocks_no_other_write(stack: ServiceStack) -> None:
    head = (
        b"POST /batches HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-ndjson\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with open_connections(stack, 3, head + b'{"id": "slow-upl'):
        time.sleep(0.5)
        assert answer_seconds(stack) < 1


def test_long_polls_wait_without_holding_threads_and_answer_when_done(stack: ServiceStack) -> None:
    stack.stop("redrive")  # the rows below stay queued until this test publishes them
    try:
        rows = [QueuedObservation(id=new_id("long-poll"), observation=observation()) for _ in range(CROWD)]
        with stack.engine.begin() as conn:
            for row in rows:
                insert_queued(conn=conn, observation_id=row.id, observation=row.observation, now=utc_now())

        def long_poll(observation_id: str) -> tuple[float, str]:
            answer = requests.get(stack.url(f"/predictions/{observation_id}"), params={"wait": 5}, timeout=30)
            return time.monotonic(), answer.json()["status"]

        with ThreadPoolExecutor(max_workers=CROWD) as pool:
            polls = [pool.submit(long_poll, row.id) for row in rows]
            # Every long-poll is in and held on the event loop; the operators' gauge counts them all.
            wait_until(lambda: scrape(stack).get("gateway_long_polls_held") == CROWD, timeout=10)
            assert not any(poll.done() for poll in polls)
            assert answer_seconds(stack) < 1
            published = time.monotonic()
            celery = create_celery_app(stack.settings())
            try:
                publish_observations(celery, rows, per_message=10)
            finally:
                celery.close()
            results = [poll.result() for poll in polls]
        assert all(status == "done" for _, status in results)
        # Answered on the workers' notice, well before the deadline (4 s after publishing).
        assert max(answered for answered, _ in results) - published < 2
        assert scrape(stack).get("gateway_long_polls_held") == 0
    finally:
        stack.start("redrive")
