"""What the gateway's latency figures count: a request waiting for a free thread is waiting all the same."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from core.storage.observations import insert_queued
from core.storage.records import utc_now
from devstack.stack import ServiceStack
from tests.factories import new_id, observation
from tests.service_steps import scrape

# Two gateway processes of one thread each: of four submissions stuck at once, at least two wait for a thread.
SUBMISSIONS = 4
HELD_S = 1.5
OVER = "0.5"  # seconds; the bucket bound the figures are read against


def answered_over(samples: dict[str, float], family: str, labels: str) -> float:
    """Return how many observations of a histogram (of these labels) took longer than OVER seconds."""
    prefix = f"{family}_bucket{{{labels},"
    return samples.get(f'{prefix}le="+Inf"}}', 0.0) - samples.get(f'{prefix}le="{OVER}"}}', 0.0)


def test_the_wait_for_a_free_thread_counts_in_the_request_latency(stack: ServiceStack) -> None:
    ids = [new_id("held") for _ in range(SUBMISSIONS)]
    with stack.gateway_env(GATEWAY_THREADS="1"):
        before = scrape(stack)
        with stack.engine.connect() as conn, ThreadPoolExecutor(SUBMISSIONS) as pool:
            # The same ids written in a transaction left open: each submission's insert waits for it.
            for held in ids:
                insert_queued(conn=conn, observation_id=held, observation=observation(), now=utc_now())
            answers = [
                pool.submit(
                    requests.post,
                    stack.url("/predict"),
                    json={"id": observation_id, "observation": observation()},
                    timeout=30,
                )
                for observation_id in ids
            ]
            time.sleep(HELD_S)
            conn.rollback()
            assert [answer.result().status_code for answer in answers] == [202] * SUBMISSIONS
        after = scrape(stack)

    def counted_over(family: str) -> float:
        submissions = 'endpoint="/predict"'
        return answered_over(after, family, submissions) - answered_over(before, family, submissions)

    # One per process ran into the held insert; the others waited as long for the one thread of theirs.
    assert counted_over("gateway_request_seconds") == SUBMISSIONS
    assert counted_over("gateway_thread_wait_seconds") >= SUBMISSIONS - 2
