"""Nothing accepted is lost: stopped or killed workers, an emptied broker, a gateway dead after its commit."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from core.celery_app import create_celery_app
from core.feature_spec import current_version
from core.publishing import publish_observations
from core.storage.observations import find_prediction, insert_queued
from core.storage.records import QueuedObservation, utc_now
from devstack.stack import ServiceStack, wait_until
from tests.database import count_by_status, count_rows
from tests.factories import observation, prediction_request
from tests.service_steps import poll_until_finished, postgres_server, scrape
from worker.redrive import republish_stale


def submit_all(stack: ServiceStack, count: int) -> list[str]:
    ids = []
    with requests.Session() as session:
        for _ in range(count):
            body = prediction_request()
            assert session.post(stack.url("/predict"), json=body, timeout=5).status_code == 202
            ids.append(body["id"])
    return ids


def all_finished(stack: ServiceStack, ids: list[str]) -> bool:
    with stack.engine.connect() as conn:
        records = [find_prediction(conn=conn, observation_id=i) for i in ids]
    return all(r is not None and r.status == "done" for r in records)


def test_queued_observation_says_when_to_ask_again_and_replay_sends_no_second_message(
    stopped_worker: ServiceStack,
) -> None:
    stack = stopped_worker
    before = stack.queue_length()
    body = prediction_request()
    assert requests.post(stack.url("/predict"), json=body, timeout=5).status_code == 202
    wait_until(lambda: stack.queue_length() == before + 1, timeout=10)

    replay = requests.post(stack.url("/predict"), json=body, timeout=5)
    assert replay.status_code == 202
    assert replay.json()["status"] == "queued"
    time.sleep(0.5)  # a second message, if one were sent, would be in Redis by now
    assert stack.queue_length() == before + 1

    poll = requests.get(stack.url(f"/predictions/{body['id']}"), timeout=5)
    assert poll.json()["status"] == "queued"
    assert int(poll.headers["Retry-After"]) >= 1


def test_true_outcome_may_arrive_before_the_prediction(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    body = prediction_request()
    requests.post(stack.url("/predict"), json=body, timeout=5)
    update = requests.post(stack.url("/update"), json={"id": body["id"], "true_class": False}, timeout=5)
    assert update.status_code == 200
    assert update.json()["status"] == "queued" and update.json()["true_class"] is False
    stack.start("worker")
    finished = poll_until_finished(stack, body["id"])
    assert finished["status"] == "done" and finished["true_class"] is False


def test_observations_survive_a_broker_emptied_by_hand(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    ids = submit_all(stack, 10)
    wait_until(lambda: stack.queued_observations() == 10, timeout=10)  # the publisher thread is done
    stack.empty_broker()
    assert stack.queue_length() == 0
    stack.start("worker")
    stack.start("redrive")
    wait_until(lambda: all_finished(stack, ids), timeout=45, interval=0.2)


def test_worker_killed_mid_batch_loses_nothing(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    ids = submit_all(stack, 150)
    stack.start("worker")

    def some_done() -> bool:
        with stack.engine.connect() as conn:
            return count_by_status(conn=conn)["done"] > 0

    wait_until(some_done, timeout=30, interval=0.01)
    stack.stop("worker", kill=True)
    stack.start("worker")
    stack.start("redrive")
    wait_until(lambda: all_finished(stack, ids), timeout=60, interval=0.2)
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=ids) == len(ids)


def test_row_committed_by_a_gateway_that_died_before_publishing_is_predicted(stack: ServiceStack) -> None:
    body = prediction_request()
    with stack.engine.begin() as conn:
        insert_queued(conn=conn, observation_id=body["id"], observation=body["observation"], now=utc_now())
    assert poll_until_finished(stack, body["id"], timeout=45)["status"] == "done"


def test_message_delivered_twice_is_predicted_once(stack: ServiceStack) -> None:
    body = prediction_request()
    requests.post(stack.url("/predict"), json=body, timeout=5)
    first = poll_until_finished(stack, body["id"])

    # A late duplicate that would change the answer if it were applied, then a sentinel behind it.
    celery = create_celery_app(stack.settings())
    publish_observations(celery, [QueuedObservation(id=body["id"], observation=observation(hour=3))])
    sentinel = prediction_request()
    requests.post(stack.url("/predict"), json=sentinel, timeout=5)
    poll_until_finished(stack, sentinel["id"])

    again = requests.get(stack.url(f"/predictions/{body['id']}"), timeout=5).json()
    assert again == first
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[body["id"]]) == 1


def test_bad_row_is_failed_after_bounded_retries_without_failing_its_neighbours(stack: ServiceStack) -> None:
    # Stored without validation, as rows written under an older feature spec would be.
    broken = QueuedObservation(id=prediction_request()["id"], observation={"hour": "noon"})
    good = [QueuedObservation(id=prediction_request()["id"], observation=observation()) for _ in range(3)]
    with stack.engine.begin() as conn:
        for item in [broken, *good]:
            insert_queued(conn=conn, observation_id=item.id, observation=item.observation, now=utc_now())
    publish_observations(create_celery_app(stack.settings()), [broken, *good], per_message=4)

    for item in good:
        assert poll_until_finished(stack, item.id)["status"] == "done"
    failed = poll_until_finished(stack, broken.id, timeout=45)
    assert failed["status"] == "failed"
    assert failed["failure_reason"]
    with stack.engine.connect() as conn:
        record = find_prediction(conn=conn, observation_id=broken.id)
    assert record is not None and record.attempts == 2


def test_postgres_restart_loses_nothing_and_stores_nothing_while_down(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    if not stack.backend.database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to restart")
    waiting = prediction_request()
    assert requests.post(stack.url("/predict"), json=waiting, timeout=5).status_code == 202

    postgres_server("stop")
    try:
        stack.start("worker")
        wait_until(
            lambda: stack.queue_length() == 0, timeout=60, interval=0.1
        )  # taken while the database is down
        refused = prediction_request()
        response = requests.post(stack.url("/predict"), json=refused, timeout=10)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "service_unavailable"
        assert "psycopg" not in response.text and "Traceback" not in response.text
        ready = requests.get(stack.url("/ready"), timeout=10)
        assert ready.status_code == 503 and ready.json()["error"]["checks"]["database"] == "down"
    finally:
        postgres_server("start")

    stack.start("redrive")
    wait_until(stack.ready, timeout=30, interval=0.5)
    assert poll_until_finished(stack, waiting["id"], timeout=60)["status"] == "done"
    assert requests.get(stack.url(f"/predictions/{refused['id']}"), timeout=5).status_code == 404
    after = prediction_request()
    assert requests.post(stack.url("/predict"), json=after, timeout=5).status_code == 202
    assert poll_until_finished(stack, after["id"])["status"] == "done"


def test_broker_down_at_submission_still_accepts_and_predicts_once_it_is_back(stack: ServiceStack) -> None:
    if stack.backend.stop_broker is None or stack.backend.start_broker is None:
        pytest.skip("the shared system Redis is not stopped by tests; embedded and RabbitMQ runs cover it")
    failures_before = scrape(stack)["gateway_publish_failures_total"]
    stack.backend.stop_broker()
    try:
        body = prediction_request()
        response = requests.post(stack.url("/predict"), json=body, timeout=15)
        assert response.status_code == 202 and response.json()["status"] == "queued"

        def publish_failure_counted() -> bool:
            return scrape(stack)["gateway_publish_failures_total"] == failures_before + 1

        wait_until(publish_failure_counted, timeout=20, interval=0.2)
        metrics = requests.get(stack.url("/metrics"), timeout=5).text
        assert 'service_dependency_up{name="broker"} 0.0' in metrics
        assert "broker_waiting_messages" not in metrics
    finally:
        stack.backend.start_broker()
    assert poll_until_finished(stack, body["id"], timeout=60)["status"] == "done"


def test_worker_refuses_to_start_on_a_tampered_bundle(stack: ServiceStack, tmp_path: Path) -> None:
    version = current_version(stack.settings().artifacts_dir)
    shutil.copytree(stack.settings().artifacts_dir / version, tmp_path / version)
    (tmp_path / "current").write_text(version)
    pipeline = tmp_path / version / "pipeline.joblib"
    pipeline.write_bytes(pipeline.read_bytes()[:-1] + b"\x00")
    worker = subprocess.run(
        [*stack.commands["worker"][:-2], "--hostname", f"tampered-{uuid.uuid4().hex[:6]}@%h"],
        env={**stack.env, "ARTIFACTS_DIR": str(tmp_path), "QUEUE_NAME": "tampered"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode != 0
    assert "pipeline.joblib" in worker.stderr and "does not match" in worker.stderr


def test_redrive_waits_while_messages_still_wait_in_the_queue(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    body = prediction_request()
    requests.post(stack.url("/predict"), json=body, timeout=5)
    wait_until(lambda: stack.queue_length() >= 1, timeout=10)
    settings = stack.settings().model_copy(update={"redrive_after_s": 1})
    celery = create_celery_app(settings)
    time.sleep(1.1)
    assert republish_stale(engine=stack.engine, celery=celery, settings=settings) == 0  # workers only behind

    stack.empty_broker()

    def redrive() -> int:
        return republish_stale(engine=stack.engine, celery=celery, settings=settings)

    wait_until(lambda: redrive() >= 1, timeout=10)
    assert stack.queued_observations() >= 1
