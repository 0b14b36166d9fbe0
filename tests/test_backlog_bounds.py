"""A backlog past its bounds sheds submissions (503, Retry-After, nothing stored) and says why in /ready."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy.engine import Connection

from core.settings import Settings
from core.storage.batches import create_batch, finish_batch
from core.storage.bulk_rows import insert_queued_many
from core.storage.migrate import upgrade_to_head
from core.storage.observations import claim_stale_queued, insert_queued, save_predictions
from core.storage.records import PredictionResult, QueuedObservation, utc_now
from gateway.app import create_app
from gateway.context import GatewayContext
from tests.database import backdate_receipt_times, count_rows
from tests.factories import new_id, observation, prediction_request


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Flask]:
    """A gateway whose backlog may hold 3 observations, none older than a minute (no workers run)."""
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade_to_head(database_url)
    settings = Settings(
        database_url=database_url,
        broker_url="redis://127.0.0.1:1/0",  # nothing listens: publishing fails fast, rows stay queued
        backlog_max_queued=3,
        backlog_max_age_s=60,
        backlog_check_s=0.05,
    )
    app = create_app({"SETTINGS": settings})
    yield app
    app.extensions["predictions"].close()


def context_of(app: Flask) -> GatewayContext:
    context: GatewayContext = app.extensions["predictions"]
    return context


def claim_all_queued(conn: Connection) -> list[QueuedObservation]:
    return claim_stale_queued(conn=conn, older_than_s=0, limit=100)


def queue_rows(app: Flask, count: int) -> list[str]:
    ids = [new_id("waiting") for _ in range(count)]
    with context_of(app).engine.begin() as conn:
        for observation_id in ids:
            insert_queued(conn=conn, observation_id=observation_id, observation=observation(), now=utc_now())
    return ids


def shed_so_far() -> float:
    return REGISTRY.get_sample_value("gateway_shed_submissions_total") or 0.0


def test_a_full_backlog_sheds_submissions_and_stores_nothing(gateway: Flask) -> None:
    client = gateway.test_client()
    queue_rows(gateway, 4)
    context_of(gateway).backlog_guard.check_now()
    shed_before = shed_so_far()

    body = prediction_request()
    refused = client.post("/predict", json=body)
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "service_unavailable"
    assert "backlog is full" in refused.get_json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) > 0
    assert client.post("/batches", json={"observations": [prediction_request()]}).status_code == 503
    with context_of(gateway).engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[body["id"]]) == 0
    assert client.get("/ready").get_json()["error"]["checks"]["backlog"] == "shedding"
    assert shed_so_far() == shed_before + 2


def test_a_backlog_too_old_sheds_and_once_drained_accepts_again(gateway: Flask) -> None:
    client = gateway.test_client()
    ids = queue_rows(gateway, 1)
    context_of(gateway).backlog_guard.check_now()
    assert client.post("/predict", json=prediction_request()).status_code == 202

    engine = context_of(gateway).engine
    with engine.begin() as conn:
        backdate_receipt_times(conn=conn, seconds=120, observation_ids=ids)
    context_of(gateway).backlog_guard.check_now()
    refused = client.post("/predict", json=prediction_request())
    assert refused.status_code == 503 and "too old" in refused.get_json()["error"]["message"]

    with engine.begin() as conn:  # the workers catch up
        queued = [r.id for r in claim_all_queued(conn)]
        save_predictions(
            conn=conn,
            results=[PredictionResult(id=i, proba=0.5, prediction=True) for i in queued],
            model_version="test",
            now=utc_now(),
        )
    context_of(gateway).backlog_guard.check_now()
    assert client.post("/predict", json=prediction_request()).status_code == 202


def test_an_old_bulk_backlog_sheds_uploads_but_never_a_single_submission(gateway: Flask) -> None:
    client = gateway.test_client()
    batch_id = new_id("batch")
    rows = [QueuedObservation(id=new_id("bulk"), observation=observation()) for _ in range(2)]
    engine = context_of(gateway).engine
    with engine.begin() as conn:
        create_batch(conn=conn, batch_id=batch_id, now=utc_now())
        insert_queued_many(conn=conn, observations=rows, batch_id=batch_id, now=utc_now())
        finish_batch(conn=conn, batch_id=batch_id, items=2, accepted=2, rejected=0)
        backdate_receipt_times(conn=conn, seconds=120, observation_ids=[r.id for r in rows])
    context_of(gateway).backlog_guard.check_now()

    upload = client.post("/batches", json={"observations": [prediction_request()]})
    assert upload.status_code == 503
    assert "bulk lane's backlog is too old" in upload.get_json()["error"]["message"]
    assert client.post("/predict", json=prediction_request()).status_code == 202
    # (no broker runs here: /ready is 503 and names the checks in its error)
    assert client.get("/ready").get_json()["error"]["checks"]["backlog"] == "shedding"
