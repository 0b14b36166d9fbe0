"""Retention deletes finished rows and batches past RETENTION_DAYS, never a queued row or one a batch uses."""

from __future__ import annotations

import requests

from core.storage.observations import find_prediction
from devstack.stack import ServiceStack
from tests.database import backdate_batch_creation, backdate_receipt_times
from tests.factories import observation, prediction_request
from tests.service_steps import poll_until_finished
from worker.retention import purge_expired_rows

THREE_DAYS_S = 3 * 86_400


def ids(bodies: list[dict[str, object]]) -> list[str]:
    return [str(body["id"]) for body in bodies]


def submit(stack: ServiceStack, count: int) -> list[str]:
    bodies = [prediction_request() for _ in range(count)]
    for body in bodies:
        assert requests.post(stack.url("/predict"), json=body, timeout=5).status_code == 202
    return [body["id"] for body in bodies]


def test_old_finished_rows_and_batches_go_while_queued_and_needed_rows_stay(stack: ServiceStack) -> None:
    old = submit(stack, 3)
    for observation_id in old:
        poll_until_finished(stack, observation_id)
    stack.stop("worker")  # what follows stays queued
    try:
        waiting = submit(stack, 1)
        batch_items = [prediction_request() for _ in range(3)]
        # A recent batch that replays an old observation keeps that observation alive.
        replay = {"id": old[0], "observation": observation()}
        old_batch = requests.post(
            stack.url("/batches"), json={"observations": [replay, *batch_items]}, timeout=10
        ).json()
        assert old_batch["accepted"] == 4
        with stack.engine.begin() as conn:
            backdate_receipt_times(conn=conn, seconds=THREE_DAYS_S, observation_ids=[*old, *waiting])
        settings = stack.settings().model_copy(update={"retention_days": 2, "retention_chunk_rows": 2})
        purge_expired_rows(engine=stack.engine, settings=settings)
        with stack.engine.connect() as conn:
            kept = [find_prediction(conn=conn, observation_id=i) is not None for i in old]
            assert kept == [True, False, False]  # the first: the batch points at it
            assert find_prediction(conn=conn, observation_id=waiting[0]) is not None  # queued: kept
        # The batch is recent and still queued: kept whole.
        assert requests.get(stack.url(old_batch["links"]["self"]), timeout=5).status_code == 200
    finally:
        stack.start("worker")
    for observation_id in [*waiting, *ids(batch_items)]:
        poll_until_finished(stack, observation_id)
    with stack.engine.begin() as conn:
        backdate_batch_creation(conn=conn, seconds=THREE_DAYS_S, batch_id=old_batch["batch_id"])
        backdate_receipt_times(
            conn=conn, seconds=THREE_DAYS_S, observation_ids=[i["id"] for i in batch_items]
        )
    purge_expired_rows(engine=stack.engine, settings=settings)
    assert requests.get(stack.url(old_batch["links"]["self"]), timeout=5).status_code == 404
    with stack.engine.connect() as conn:
        assert all(find_prediction(conn=conn, observation_id=i) is None for i in [old[0], *ids(batch_items)])
