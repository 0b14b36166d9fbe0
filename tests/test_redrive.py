"""The redrive publishes lost rows again, behind a backlog too, and leaves alone what is only waiting."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from celery import Celery

from core.celery_app import create_celery_app
from core.storage.batches import create_batch, finish_batch, mark_batch_fed
from core.storage.bulk_rows import insert_queued_many
from core.storage.observations import claim_stale_queued, insert_queued
from core.storage.records import QueuedObservation, utc_now
from devstack.stack import ServiceStack, wait_until
from tests.database import backdate_publish_times
from tests.factories import new_id, observation, prediction_request
from tests.service_steps import poll_until_finished
from worker.redrive import republish_stale


@pytest.fixture
def celery(stack: ServiceStack) -> Iterator[Celery]:
    app = create_celery_app(stack.settings())
    try:
        yield app
    finally:
        app.close()


def test_lost_row_is_republished_behind_a_backlog_that_never_drains(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    waiting = [prediction_request() for _ in range(20)]
    for body in waiting:
        assert requests.post(stack.url("/predict"), json=body, timeout=5).status_code == 202
    lost = QueuedObservation(id=new_id("lost"), observation=observation())
    with stack.engine.begin() as conn:
        insert_queued(conn=conn, observation_id=lost.id, observation=lost.observation, now=utc_now())
        # Its message vanished a while ago, longer than REDRIVE_BACKLOG_CAP_S (6 s here).
        backdate_publish_times(conn=conn, seconds=60, observation_ids=[lost.id])
    wait_until(lambda: len(stack.queued_ids()) >= len(waiting), timeout=10)

    stack.start("redrive")  # the workers stay stopped: the backlog cannot drain
    wait_until(lambda: lost.id in stack.queued_ids(), timeout=20, interval=0.2)
    queued = stack.queued_ids()
    assert all(queued.count(body["id"]) == 1 for body in waiting)  # waiting rows are not copied


def test_rows_a_worker_holds_unacknowledged_are_not_republished(
    stopped_worker: ServiceStack, celery: Celery
) -> None:
    stack = stopped_worker
    if stack.held_message_count() is None:
        pytest.skip("only Redis keeps held messages where the redrive can count them")
    body = prediction_request()
    assert requests.post(stack.url("/predict"), json=body, timeout=5).status_code == 202
    wait_until(lambda: body["id"] in stack.queued_ids(), timeout=10)
    with stack.hold_one_message():  # taken by a consumer, not acknowledged: what a busy worker's prefetch is
        assert stack.queue_length() == 0
        # RabbitMQ's management API counts every 5 s, and lags further on a busy machine (over 15 s seen on
        # a slow one); Redis at once.
        wait_until(lambda: stack.held_message_count() == 1, timeout=45, interval=0.5)
        with stack.engine.begin() as conn:  # older than REDRIVE_AFTER_S (3 s), younger than the cap (60 s)
            backdate_publish_times(conn=conn, seconds=4, observation_ids=[body["id"]])
        settings = stack.settings().model_copy(update={"redrive_backlog_cap_s": 60})
        assert republish_stale(engine=stack.engine, celery=celery, settings=settings) == 0
    stack.start("worker")
    assert poll_until_finished(stack, body["id"])["status"] == "done"


def test_a_bulk_row_counts_as_published_when_its_batch_was_published(stack: ServiceStack) -> None:
    batch_id = new_id("batch")
    rows = [QueuedObservation(id=new_id("bulk"), observation=observation()) for _ in range(3)]
    with stack.engine.connect() as conn, conn.begin() as transaction:
        create_batch(conn=conn, batch_id=batch_id, now=utc_now())
        insert_queued_many(conn=conn, observations=rows, batch_id=batch_id, now=utc_now())
        finish_batch(conn=conn, batch_id=batch_id, items=3, accepted=3, rejected=0)
        # A long upload: its rows were stored a minute before the batch finished publishing.
        backdate_publish_times(conn=conn, seconds=60, observation_ids=[r.id for r in rows])
        mark_batch_fed(conn=conn, batch_id=batch_id)
        claimed = {o.id for o in claim_stale_queued(conn=conn, older_than_s=30, limit=10_000)}
        assert claimed.isdisjoint(r.id for r in rows)

        backdate_publish_times(conn=conn, seconds=60, batch_id=batch_id)
        claimed = {o.id for o in claim_stale_queued(conn=conn, older_than_s=30, limit=10_000)}
        assert {r.id for r in rows} <= claimed
        transaction.rollback()  # nothing of this scenario is left for the running service


def test_a_batch_travels_as_references_and_a_lost_one_comes_back_through_the_redrive(
    stopped_worker: ServiceStack,
) -> None:
    stack = stopped_worker
    items = [prediction_request() for _ in range(1_200)]
    body = "\n".join(json.dumps(item) for item in items)
    response = requests.post(
        stack.url("/batches"), data=body, headers={"Content-Type": "application/x-ndjson"}, timeout=30
    )
    assert response.status_code == 202
    batch_id = response.json()["batch_id"]
    # Three messages of 500, 500 and 200 rows, referring to the stored rows instead of carrying them.
    messages = [raw for raw in stack.waiting_bodies() if batch_id.encode() in raw]
    assert len(messages) == 3
    assert sum(len(raw) for raw in messages) < len(body) / 20
    assert set(stack.queued_ids()) >= {item["id"] for item in items}

    stack.empty_broker()  # the messages are lost; the rows are not
    stack.start("redrive")
    stack.start("worker")
    for item in (items[0], items[-1]):
        assert poll_until_finished(stack, item["id"], timeout=30)["status"] == "done"
