"""Each row keeps the version that accepted it, and the worker predicts it with that version's bundle.

Storage on SQLite and Postgres (single, bulk, the readers the workers and the redrive use); the worker's
micro-batch grouped by version, and a version that cannot load leaving its rows queued, not failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from core.publishing import message_contents, observation_item
from core.storage.batches import create_batch, read_batch_slices
from core.storage.bulk_rows import StagedItem, insert_queued_many, store_batch_chunk
from core.storage.engine import make_engine
from core.storage.migrate import upgrade_to_head
from core.storage.observations import (
    claim_stale_queued,
    find_prediction,
    insert_queued,
    save_predictions,
    still_queued,
)
from core.storage.records import BatchSlice, PredictionResult, QueuedObservation, utc_now
from devstack.backends import _fresh_postgres_database
from tests.factories import new_id, observation
from worker.bundle import ModelBundle
from worker.bundle_shelf import BundleUnavailable
from worker.predicting import predict_and_store


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'rows.db'}", None
    else:
        url, drop = _fresh_postgres_database()
    upgrade_to_head(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        if drop is not None:
            drop()


def test_single_and_bulk_rows_record_their_version_and_every_reader_hands_it_back(engine: Engine) -> None:
    single = new_id("single")
    many = [QueuedObservation(new_id("many"), observation(), version=v) for v in ("v1", "v2", None)]
    items = [StagedItem(n, new_id("item"), observation(), "{}") for n in range(2)]
    now = utc_now() - timedelta(hours=1)
    with engine.begin() as conn:
        assert insert_queued(
            conn=conn, observation_id=single, observation=observation(), now=now, accepted_version="v2"
        )
        assert insert_queued_many(conn=conn, observations=many, batch_id=None, now=now) == {
            o.id for o in many
        }
        create_batch(conn=conn, batch_id="batch-v3", now=now)
        store_batch_chunk(conn=conn, batch_id="batch-v3", items=items, now=now, accepted_version="v3")
    with engine.begin() as conn:
        assert find_prediction(conn=conn, observation_id=single).accepted_version == "v2"  # type: ignore[union-attr]
        sliced = read_batch_slices(conn=conn, slices=[BatchSlice("batch-v3", 0, 1)])
        assert [(o.id, o.version) for o in sliced] == [(i.id, "v3") for i in items]
        claimed = {o.id: o.version for o in claim_stale_queued(conn=conn, older_than_s=0, limit=100)}
    assert claimed[single] == "v2"
    assert [claimed[o.id] for o in many] == ["v1", "v2", None]


def test_a_message_item_carries_its_version_and_an_item_without_one_stays_readable() -> None:
    versioned = observation_item(QueuedObservation("a", observation(), version="v2"))
    assert versioned["version"] == "v2"
    assert "version" not in observation_item(QueuedObservation("b", observation()))
    assert message_contents({"observations": [versioned]}).items == [versioned]


class Shelf:
    """The committed bundle under two version names; a third version that cannot load."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundles = {"v1": replace(bundle, version="v1"), "v2": replace(bundle, version="v2")}
        self.asked: list[str] = []

    def get(self, version: str) -> ModelBundle:
        self.asked.append(version)
        if version not in self.bundles:
            raise BundleUnavailable(version, "its pipeline.joblib does not match its checksum")
        return self.bundles[version]


def test_a_batch_is_predicted_per_version_and_a_broken_version_leaves_its_rows_queued(
    engine: Engine, bundle: ModelBundle, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        QueuedObservation(new_id("v1"), observation(), version="v1"),
        QueuedObservation(new_id("v2"), observation(hour=2), version="v2"),
        QueuedObservation(new_id("none"), observation(hour=3)),  # stored before rollouts: the stable one
        QueuedObservation(new_id("broken"), observation(hour=4), version="v3"),
    ]
    with engine.begin() as conn:
        for row in rows:
            insert_queued(conn=conn, observation_id=row.id, observation=row.observation, now=utc_now(),
                          accepted_version=row.version)  # fmt: skip
    shelf = Shelf(bundle)
    outcome = predict_and_store(
        bundle_for=shelf.get, stable_version="v2", engine=engine, observations=rows, max_attempts=2
    )
    assert sorted(shelf.asked) == ["v1", "v2", "v3"]  # once per version, not per row
    assert outcome.predicted == 3
    assert set(outcome.finished) == {r.id for r in rows[:3]}
    with engine.connect() as conn:
        stored = {r.id: find_prediction(conn=conn, observation_id=r.id) for r in rows}
    assert [(stored[r.id].model_version, stored[r.id].accepted_version) for r in rows[:2]] == [  # type: ignore[union-attr]
        ("v1", "v1"),
        ("v2", "v2"),
    ]
    assert stored[rows[2].id].model_version == "v2"  # type: ignore[union-attr]
    broken = stored[rows[3].id]
    assert (broken.status, broken.attempts, broken.failure_reason) == ("queued", 0, None)  # type: ignore[union-attr]
    assert "model version unavailable; its rows stay queued for the redrive" in caplog.text


def test_a_result_of_another_version_than_the_one_that_accepted_the_row_is_not_written(
    engine: Engine,
) -> None:
    # A stale message naming the wrong version (the row was reassigned since): the row waits for its own.
    accepted_by_v2, unrecorded = new_id("v2"), new_id("old")
    with engine.begin() as conn:
        insert_queued(
            conn=conn,
            observation_id=accepted_by_v2,
            observation=observation(),
            now=utc_now(),
            accepted_version="v2",
        )
        insert_queued(conn=conn, observation_id=unrecorded, observation=observation(), now=utc_now())
        results = [PredictionResult(id=i, proba=0.7, prediction=True) for i in (accepted_by_v2, unrecorded)]
        assert save_predictions(conn=conn, results=results, model_version="v1", now=utc_now()) == 1
        assert save_predictions(conn=conn, results=results[:1], model_version="v2", now=utc_now()) == 1
        stored = {i: find_prediction(conn=conn, observation_id=i) for i in (accepted_by_v2, unrecorded)}
    assert {i: (r.status, r.model_version) for i, r in stored.items() if r} == {
        accepted_by_v2: ("done", "v2"),
        unrecorded: ("done", "v1"),
    }


def test_a_row_left_to_its_own_version_is_not_announced_as_finished(
    engine: Engine, bundle: ModelBundle
) -> None:
    # A stale message names v1 for a row v2 accepted (reassigned since): nothing is written for it, and the
    # batch does not count it among the ids it finished, so no long-poll on it is woken to read "queued".
    reassigned = QueuedObservation(new_id("reassigned"), observation(), version="v1")
    own = QueuedObservation(new_id("own"), observation(hour=2), version="v1")
    done_before = QueuedObservation(new_id("done"), observation(hour=3), version="v1")
    with engine.begin() as conn:
        insert_queued(conn=conn, observation_id=reassigned.id, observation=reassigned.observation,
                      now=utc_now(), accepted_version="v2")  # fmt: skip
        for row in (own, done_before):
            insert_queued(conn=conn, observation_id=row.id, observation=row.observation, now=utc_now(),
                          accepted_version="v1")  # fmt: skip
        result = PredictionResult(id=done_before.id, proba=0.9, prediction=True)
        assert save_predictions(conn=conn, results=[result], model_version="v1", now=utc_now()) == 1

    outcome = predict_and_store(
        bundle_for=Shelf(bundle).get,
        stable_version="v1",
        engine=engine,
        observations=[reassigned, own, done_before],
        max_attempts=2,
    )
    assert outcome.predicted == 1
    # Finished: the row written now and the one finished before (its first result stands); not the other.
    assert set(outcome.finished) == {own.id, done_before.id}
    with engine.connect() as conn:
        waiting = find_prediction(conn=conn, observation_id=reassigned.id)
    assert (waiting.status, waiting.accepted_version) == ("queued", "v2")  # type: ignore[union-attr]


def test_which_rows_are_still_queued_is_read_for_a_batch_of_any_size(engine: Engine) -> None:
    queued, done = new_id("queued"), new_id("done")
    with engine.begin() as conn:
        for row_id in (queued, done):
            insert_queued(conn=conn, observation_id=row_id, observation=observation(), now=utc_now())
        result = PredictionResult(done, 0.1, False)
        save_predictions(conn=conn, results=[result], model_version="v1", now=utc_now())
        # A batch of 100 bulk messages of 500 rows asks about 50,000 ids: past SQLite's parameter limit.
        asked = [*(f"absent-{n}" for n in range(50_000)), queued, done]
        assert still_queued(conn=conn, observation_ids=asked) == {queued}
