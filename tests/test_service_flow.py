"""Fire-and-poll over real HTTP: submit, poll, replay, conflicts, feedback, operator endpoints."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from devstack.stack import ServiceStack
from gateway.app import create_app
from tests.database import count_rows
from tests.factories import new_id, prediction_request
from tests.service_steps import poll_until_finished
from worker.bundle import ModelBundle


def test_course_example_is_accepted_at_once_then_predicted(
    stack: ServiceStack, api: requests.Session, bundle: ModelBundle
) -> None:
    body = prediction_request()
    accepted = api.post(stack.url("/predict"), json=body, timeout=5)
    assert accepted.status_code == 202
    assert accepted.json() == {
        "id": body["id"],
        "status": "queued",
        "links": {"result": f"/predictions/{body['id']}"},
    }
    assert accepted.headers["Location"] == f"/predictions/{body['id']}"

    result = poll_until_finished(stack, body["id"])
    assert result["status"] == "done"
    assert 0.0 <= result["proba"] <= 1.0
    assert result["prediction"] == (result["proba"] >= bundle.threshold)
    assert result["model_version"] == bundle.version
    assert result["accepted_version"] == bundle.version  # no rollout stored: the settings' version serves
    assert result["true_class"] is None
    assert datetime.fromisoformat(result["received_at"]) <= datetime.fromisoformat(result["predicted_at"])


def test_hour_zero_is_predicted(stack: ServiceStack, api: requests.Session) -> None:
    body = prediction_request(hour=0)
    assert api.post(stack.url("/predict"), json=body, timeout=5).status_code == 202
    assert poll_until_finished(stack, body["id"])["status"] == "done"


def test_replay_of_a_finished_observation_answers_its_state_without_a_second_row(
    stack: ServiceStack, api: requests.Session
) -> None:
    body = prediction_request()
    api.post(stack.url("/predict"), json=body, timeout=5)
    finished = poll_until_finished(stack, body["id"])
    replay = api.post(stack.url("/predict"), json=body, timeout=5)
    assert replay.status_code == 200
    assert replay.json() == finished
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[body["id"]]) == 1


def test_same_id_with_another_observation_is_409_with_a_link(
    stack: ServiceStack, api: requests.Session
) -> None:
    body = prediction_request()
    api.post(stack.url("/predict"), json=body, timeout=5)
    conflict = api.post(stack.url("/predict"), json=prediction_request(id=body["id"], hour=3), timeout=5)
    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert error["code"] == "conflict"
    assert error["links"] == {"existing": f"/predictions/{body['id']}"}
    assert poll_until_finished(stack, body["id"])["status"] == "done"


def test_concurrent_submissions_of_one_id_end_in_exactly_one_row(stack: ServiceStack) -> None:
    body = prediction_request()

    def submit(_: int) -> requests.Response:
        return requests.post(stack.url("/predict"), json=body, timeout=10)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(submit, range(24)))
    assert {r.status_code for r in responses} <= {200, 202}
    first_acceptances = [r for r in responses if set(r.json()) == {"id", "status", "links"}]
    assert len(first_acceptances) == 1
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[body["id"]]) == 1
    assert poll_until_finished(stack, body["id"])["status"] == "done"


def test_unknown_id_is_a_json_404(stack: ServiceStack, api: requests.Session) -> None:
    response = api.get(stack.url(f"/predictions/{new_id()}"), timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


def test_true_outcome_is_stored_after_the_prediction(stack: ServiceStack, api: requests.Session) -> None:
    body = prediction_request()
    api.post(stack.url("/predict"), json=body, timeout=5)
    poll_until_finished(stack, body["id"])
    update = api.post(stack.url("/update"), json={"id": body["id"], "true_class": 1}, timeout=5)
    assert update.status_code == 200
    assert update.json()["true_class"] is True
    assert api.get(stack.url(f"/predictions/{body['id']}"), timeout=5).json()["true_class"] is True


def test_true_outcome_for_unknown_id_is_404(stack: ServiceStack, api: requests.Session) -> None:
    response = api.post(stack.url("/update"), json={"id": new_id(), "true_class": False}, timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_bad_feedback_body_is_422_listing_fields(stack: ServiceStack, api: requests.Session) -> None:
    response = api.post(stack.url("/update"), json={"id": "x", "true_class": "yes", "extra": 1}, timeout=5)
    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"true_class", "extra"}


def test_operator_endpoints_answer(stack: ServiceStack, api: requests.Session) -> None:
    assert api.get(stack.url("/health"), timeout=5).json() == {"status": "ok"}
    ready = api.get(stack.url("/ready"), timeout=5).json()
    assert ready["checks"] == {"database": "ok", "broker": "ok", "model_bundle": "ok", "backlog": "ok"}
    openapi = api.get(stack.url("/openapi.json"), timeout=5).json()
    assert {
        "/predict", "/predictions/{observation_id}", "/update", "/batches", "/batches/{batch_id}",
        "/batches/{batch_id}/results", "/performance",
    } <= set(openapi["paths"])  # fmt: skip
    observation = openapi["components"]["schemas"]["Observation"]
    assert observation["properties"]["ResidentIndicator"] == {"type": "boolean"}
    assert "Stop Sign" in observation["properties"]["StatuteReason"]["enum"]
    assert "/openapi.json" in api.get(stack.url("/docs"), timeout=5).text
    assert "gateway_requests_total" in api.get(stack.url("/metrics"), timeout=5).text


def test_ready_is_503_naming_the_broker_when_it_is_down(stack: ServiceStack) -> None:
    dead_broker = stack.settings().model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    app = create_app({"SETTINGS": dead_broker})
    response = app.test_client().get("/ready")
    app.extensions["predictions"].close()
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["checks"] == {"database": "ok", "broker": "down", "model_bundle": "ok", "backlog": "ok"}
    assert "broker" in error["message"]


@pytest.mark.parametrize("prefix", ["upstream/", "/", "a//"])
def test_id_with_slashes_is_polled_at_its_own_location(
    stack: ServiceStack, api: requests.Session, prefix: str
) -> None:
    body = prediction_request(id=f"{prefix}{new_id()}")
    accepted = api.post(stack.url("/predict"), json=body, timeout=5)
    assert accepted.status_code == 202
    poll = api.get(
        stack.url(accepted.headers["Location"]), params={"wait": 20}, timeout=30, allow_redirects=False
    )
    assert poll.status_code == 200
    assert poll.json()["id"] == body["id"] and poll.json()["status"] == "done"


def test_true_outcomes_feed_live_precision_and_recall(stack: ServiceStack, api: requests.Session) -> None:
    before = api.get(stack.url("/performance"), timeout=5).json()["model_versions"]
    ids = []
    for hour in (0, 3, 6, 9):
        body = prediction_request(hour=hour, SubjectAge=20 + hour)
        api.post(stack.url("/predict"), json=body, timeout=5)
        ids.append(body["id"])
    finished = [poll_until_finished(stack, i) for i in ids]
    for n, result in enumerate(finished):  # every second prediction turns out wrong
        truth = result["prediction"] if n % 2 == 0 else not result["prediction"]
        api.post(stack.url("/update"), json={"id": result["id"], "true_class": truth}, timeout=5)

    version = finished[0]["model_version"]
    after = api.get(stack.url("/performance"), timeout=5).json()["model_versions"][version]
    earlier = before.get(version, {"labelled": 0, "true_positive": 0, "false_positive": 0})
    assert after["labelled"] - earlier["labelled"] == 4
    called = (after["true_positive"] + after["false_positive"]) - (
        earlier["true_positive"] + earlier["false_positive"]
    )
    assert called == sum(1 for r in finished if r["prediction"])
    if after["true_positive"] + after["false_positive"]:
        assert after["precision"] == round(
            after["true_positive"] / (after["true_positive"] + after["false_positive"]), 4
        )
