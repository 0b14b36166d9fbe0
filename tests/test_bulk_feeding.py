"""Uploads take turns on the bulk lane: a small upload is fed between the slices of a large one, by priority,
share and age, and a slice is fed once however many feeders run."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from core.bulk_feeder import PlannedSlice, plan_slices
from core.storage.batches import FeedingBatch, claim_slice, create_batch, feeding_batches, finish_batch
from core.storage.engine import make_engine
from core.storage.records import utc_now
from devstack.stack import ServiceStack, wait_until
from tests.database import predicted_before_batch_finished
from tests.factories import prediction_request
from tests.test_lanes import bulk_rows, upload

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def feeding(
    batch_id: str, *, items: int, share: str | None = None, priority: int = 0, age_s: float = 0
) -> FeedingBatch:
    """A batch not fed yet (its intake just finished), created age_s before T0."""
    return FeedingBatch(
        id=batch_id,
        share=share or batch_id,
        priority=priority,
        next_position=0,
        items=items,
        created_at=T0 - timedelta(seconds=age_s),
        fed_at=T0,
    )


def turns(plan: list[PlannedSlice]) -> list[str]:
    return [planned.batch_id for planned in plan]


def test_a_small_upload_takes_turns_with_a_large_one_from_its_first_slice() -> None:
    large = feeding("large", items=100_000, age_s=60)
    small = feeding("small", items=1_000, age_s=1)
    plan = plan_slices([large, small], budget=6, per_message=500)
    assert turns(plan) == ["large", "small", "large", "small", "large", "large"]
    small_slices = [(p.first, p.last, p.following) for p in plan if p.batch_id == "small"]
    assert small_slices == [(0, 499, 500), (500, 999, None)]
    assert [p.first for p in plan if p.batch_id == "large"] == [0, 500, 1000, 1500]


def test_the_share_fed_least_recently_goes_first() -> None:
    minute_ago, hour_ago = T0 - timedelta(minutes=1), T0 - timedelta(hours=1)
    fed_long_ago = FeedingBatch("a", "a", 0, 5_000, 100_000, hour_ago, minute_ago)
    fed_just_now = FeedingBatch("b", "b", 0, 5_000, 100_000, hour_ago, T0)
    assert turns(plan_slices([fed_just_now, fed_long_ago], budget=3, per_message=500)) == ["a", "b", "a"]


def test_one_keys_uploads_share_one_turn_oldest_first() -> None:
    first = feeding("first", items=1_000, share="key-a", age_s=30)
    second = feeding("second", items=1_000, share="key-a", age_s=20)
    other = feeding("other", items=1_000, share="key-b", age_s=10)
    plan = plan_slices([second, other, first], budget=6, per_message=500)
    assert turns(plan) == ["first", "other", "first", "other", "second", "second"]


def test_a_higher_priority_is_fed_before_anything_else() -> None:
    urgent = feeding("urgent", items=1_000, priority=5, age_s=1)
    old = feeding("old", items=100_000, age_s=600)
    assert turns(plan_slices([old, urgent], budget=4, per_message=500)) == ["urgent", "urgent", "old", "old"]


def test_a_slice_is_claimed_by_one_feeder_only(tmp_path: Path, migrated_sqlite: Path) -> None:
    shutil.copyfile(migrated_sqlite, tmp_path / "feeding.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'feeding.db'}")
    try:
        with engine.begin() as conn:
            create_batch(conn=conn, batch_id="upload", now=utc_now(), share_key="key-a")
            finish_batch(conn=conn, batch_id="upload", items=1_200, accepted=1_200, rejected=0)
            (waiting,) = feeding_batches(conn=conn)
            assert (waiting.share, waiting.next_position, waiting.items) == ("key-a", 0, 1_200)
            assert claim_slice(conn=conn, batch_id="upload", first=0, following=500)
            # A second feeder that read the same next position finds it moved.
            assert not claim_slice(conn=conn, batch_id="upload", first=0, following=500)
            assert claim_slice(conn=conn, batch_id="upload", first=500, following=None)
            assert feeding_batches(conn=conn) == []
    finally:
        engine.dispose()


def test_a_small_upload_finishes_while_a_large_one_sent_before_it_is_still_fed(
    stopped_worker: ServiceStack,
) -> None:
    stack = stopped_worker
    # Slices of 100 rows, at most 2 messages waiting on the bulk lane: the large upload is 50 slices.
    settings = {"BULK_FEED_WINDOW": "2", "BULK_ROWS_PER_MESSAGE": "100"}
    with stack.gateway_env(**settings):
        large = upload(stack, bulk_rows(5_000))
        small = upload(stack, bulk_rows(200))
        # Only the window is in the broker: the rest of both uploads waits its turn in the database.
        assert stack.queue_length(stack.settings().bulk_queue) == 2
        stack.start("worker")
        stack.start("redrive")

        def finished(batch_id: str) -> bool:
            progress = requests.get(stack.url(f"/batches/{batch_id}"), timeout=10).json()
            return bool(progress["status"] == "done")

        wait_until(lambda: finished(small) and finished(large), timeout=120, interval=0.5)
        with stack.engine.connect() as conn:
            ahead = predicted_before_batch_finished(conn=conn, batch_id=large, other_batch_id=small)
        # Arrival order would have predicted all 5,000 first; taking turns, a few slices of it.
        assert ahead <= 1_000, ahead
        stack.stop("redrive")
        stack.stop("worker")  # the fixture starts them again with the stack's own settings


def upload_in_process(client: FlaskClient, rows: int) -> str:
    """Upload rows valid observations as NDJSON to the gateway in process; return the batch's id."""
    body = "\n".join(json.dumps(prediction_request()) for _ in range(rows))
    upload = client.post("/batches", data=body, headers={"Content-Type": "application/x-ndjson"})
    assert upload.status_code == 202, upload.get_json()
    return str(upload.get_json()["batch_id"])


def test_an_admin_sets_a_batchs_priority_and_its_progress_shows_it(client: FlaskClient) -> None:
    batch_id = upload_in_process(client, 3)
    assert client.get(f"/batches/{batch_id}").get_json()["priority"] == 0

    answer = client.put(f"/batches/{batch_id}/priority", json={"priority": 5})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["priority"] == 5
    assert client.get(f"/batches/{batch_id}").get_json()["priority"] == 5


@pytest.mark.parametrize(
    "body", [{"priority": "5"}, {"priority": 101}, {"priority": 1.5}, {}, {"priority": 1, "extra": 1}]
)
def test_a_priority_that_is_not_a_whole_number_in_range_is_422_and_changes_nothing(
    client: FlaskClient, body: dict[str, Any]
) -> None:
    batch_id = upload_in_process(client, 1)
    answer = client.put(f"/batches/{batch_id}/priority", json=body)
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["error"]["code"] == "validation_error"
    assert client.get(f"/batches/{batch_id}").get_json()["priority"] == 0


def test_the_priority_of_an_unknown_batch_is_404(client: FlaskClient) -> None:
    answer = client.put("/batches/no-such-batch/priority", json={"priority": 1})
    assert answer.status_code == 404
    assert answer.get_json()["error"]["code"] == "not_found"
