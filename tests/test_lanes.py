"""Two lanes: a single client never waits behind someone's bulk upload, nor does the redrive put it there."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests

from core.result_notices import BATCHES, notices_channel
from core.storage.batches import create_batch, finish_batch, mark_batch_fed
from core.storage.bulk_rows import insert_queued_many
from core.storage.observations import insert_queued
from core.storage.records import QueuedObservation, utc_now
from devstack.stack import ServiceStack, wait_until
from tests.database import backdate_publish_times
from tests.factories import new_id, observation, prediction_request

UPLOAD_ROWS = 50_000
SINGLES = 5
# A single's long-poll answers within this, done, however much bulk is queued (an idle interactive lane
# answers in tens of milliseconds; the bound leaves room for a busy CI machine, not for the bulk).
SINGLE_ANSWERED_S = 2.0


def bulk_rows(count: int) -> list[dict[str, Any]]:
    """Return count valid prediction requests, ids bulk-…."""
    return [prediction_request(id=new_id("bulk")) for _ in range(count)]


def upload(stack: ServiceStack, rows: list[dict[str, Any]]) -> str:
    """Upload these rows as one NDJSON batch; return its id once it is accepted."""
    body = "\n".join(json.dumps(row) for row in rows)
    response = requests.post(
        stack.url("/batches"), data=body, headers={"Content-Type": "application/x-ndjson"}, timeout=120
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(rows)
    return str(response.json()["batch_id"])


def test_singles_are_answered_at_once_behind_a_large_upload(stack: ServiceStack) -> None:
    wait_until(lambda: stack.queue_length() == 0, timeout=60, interval=0.1)
    with stack.gateway_env(BULK_MAX_ITEMS=str(UPLOAD_ROWS)):
        batch_id = upload(stack, bulk_rows(UPLOAD_ROWS))
        answered_in = []
        with requests.Session() as session:
            for _ in range(SINGLES):
                body = prediction_request()
                assert session.post(stack.url("/predict"), json=body, timeout=5).status_code == 202
                started = time.monotonic()
                # The long-poll answers on the worker's notice, not at its deadline (MAX_WAIT_S, 5 s here).
                result = session.get(stack.url(f"/predictions/{body['id']}?wait=5"), timeout=10).json()
                answered_in.append(time.monotonic() - started)
                assert result["status"] == "done", (result, answered_in)
        progress = requests.get(stack.url(f"/batches/{batch_id}"), timeout=10).json()
        # The upload was still being worked through: the singles went past it, not after it.
        assert progress["status"] == "running", (progress, answered_in)
        assert max(answered_in) < SINGLE_ANSWERED_S, answered_in
        wait_until(
            lambda: requests.get(stack.url(f"/batches/{batch_id}"), timeout=10).json()["status"] == "done",
            timeout=180,
            interval=0.5,
        )


def test_a_redriven_row_goes_back_to_its_own_lane(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    settings = stack.settings()
    single = QueuedObservation(id=new_id("single"), observation=observation())
    batch_id = new_id("batch")
    bulk = [QueuedObservation(id=new_id("bulk"), observation=observation()) for _ in range(2)]
    with stack.engine.begin() as conn:
        insert_queued(conn=conn, observation_id=single.id, observation=single.observation, now=utc_now())
        create_batch(conn=conn, batch_id=batch_id, now=utc_now())
        insert_queued_many(conn=conn, observations=bulk, batch_id=batch_id, now=utc_now())
        finish_batch(conn=conn, batch_id=batch_id, items=2, accepted=2, rejected=0)
        mark_batch_fed(conn=conn, batch_id=batch_id)
        # Their messages were lost a minute ago (a broker restarted empty).
        backdate_publish_times(conn=conn, seconds=60, observation_ids=[single.id, *(r.id for r in bulk)])
        backdate_publish_times(conn=conn, seconds=60, batch_id=batch_id)

    stack.start("redrive")
    wait_until(lambda: single.id in stack.queued_ids(settings.queue_name), timeout=20, interval=0.2)
    wait_until(
        lambda: {r.id for r in bulk} <= set(stack.queued_ids(settings.bulk_queue)), timeout=20, interval=0.2
    )
    assert single.id not in stack.queued_ids(settings.bulk_queue)
    assert not {r.id for r in bulk} & set(stack.queued_ids(settings.queue_name))


# The notices go through Redis whatever the backend: one is enough.
@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_an_upload_is_announced_by_its_batch_and_a_long_poll_on_one_of_its_rows_answers_on_it(
    stopped_worker: ServiceStack,
) -> None:
    stack = stopped_worker
    settings = stack.settings()
    assert settings.shared_redis_url is not None
    notices = redis.Redis.from_url(settings.shared_redis_url).pubsub(ignore_subscribe_messages=True)
    notices.subscribe(notices_channel(settings.queue_name))
    rows = bulk_rows(300)
    with stack.gateway_env(MAX_WAIT_S="60"):
        batch_id = upload(stack, rows)
        last = rows[-1]["id"]
        with ThreadPoolExecutor(max_workers=1) as client:
            started = time.monotonic()
            held = client.submit(requests.get, stack.url(f"/predictions/{last}?wait=60"), timeout=90)
            stack.start("worker")
            answer = held.result()
            answered_in = time.monotonic() - started
        # Answered on the batch's notice once its row was done, not at the 60 s deadline.
        assert answer.json()["status"] == "done", answer.text
        assert answered_in < 40, answered_in
    wait_until(
        lambda: requests.get(stack.url(f"/batches/{batch_id}"), timeout=10).json()["status"] == "done",
        timeout=30,
    )
    announced = []
    quiet_until = time.monotonic() + 2  # every notice was sent before the batch read done; read them all
    while time.monotonic() < quiet_until:
        message = notices.get_message(timeout=0.2)  # None too for the subscription's own confirmation
        if message is not None:
            announced.append(json.loads(message["data"]))
    notices.close()
    # One notice per micro-batch naming the batch; none of its rows by id.
    assert {BATCHES: [batch_id]} in announced, announced
    ids = {row["id"] for row in rows}
    assert not [notice for notice in announced if isinstance(notice, list) and ids & set(notice)], announced
