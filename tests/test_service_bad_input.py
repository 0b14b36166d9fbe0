"""Bad input: a clear JSON error in one envelope, never a 500 or HTML, and nothing stored.

Parsing and validation are the app's: those cases run once, in process. What the front or the database
decides (a body past the size limit, chunked framing, an id no database could hold) runs over real HTTP on
every backend.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from devstack.stack import ServiceStack
from gateway.context import EXTENSION
from tests.database import count_rows
from tests.factories import COURSE_OBSERVATION, new_id, observation, prediction_request

Answer = requests.Response | TestResponse


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The gateway in process, with the body limit of the test stack (devstack.stack)."""
    return make_app(max_body_bytes=65_536)


def leaves_nothing_stored(engine: Engine) -> Iterator[None]:
    """Check that the test leaves the predictions table exactly as it found it."""
    with engine.connect() as conn:
        before = count_rows(conn=conn)
    yield
    with engine.connect() as conn:
        assert count_rows(conn=conn) == before


@pytest.fixture
def nothing_stored(app: Flask) -> Iterator[None]:
    """Nothing stored by the app in process."""
    yield from leaves_nothing_stored(app.extensions[EXTENSION].engine)


@pytest.fixture
def nothing_stored_on_the_stack(stack: ServiceStack) -> Iterator[None]:
    """Nothing stored by the service on its backend."""
    yield from leaves_nothing_stored(stack.engine)


def assert_error(response: Answer, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    envelope = json.loads(response.text)
    assert set(envelope) == {"error"}
    error: dict[str, Any] = envelope["error"]
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.text and "<html" not in response.text.lower()
    return error


def without(key: str) -> dict[str, Any]:
    partial = observation()
    del partial[key]
    return {"id": new_id(), "observation": partial}


INVALID_BODIES = {
    "stop sign in lower case": (prediction_request(StatuteReason="Stop sign"), {"observation"}),
    "my_observation instead of observation": (
        {"id": new_id(), "my_observation": COURSE_OBSERVATION},
        {"observation", "my_observation"},
    ),
    "missing hour": (without("hour"), {"observation"}),
    "course nonsense values": (
        prediction_request(
            InterventionReasonCode="A",
            SubjectSexCode="C",
            SubjectEthnicityCode="D",
            StatuteReason="E",
            SearchAuthorizationCode="F",
            hour=90,
            day_of_week="potato",
        ),
        {"observation"},
    ),
    "age in words": (prediction_request(SubjectAge="twenty"), {"observation"}),
    "hour 24": (prediction_request(hour=24), {"observation"}),
    "hour true": (prediction_request(hour=True), {"observation"}),
    "resident indicator 1": (prediction_request(ResidentIndicator=1), {"observation"}),
    "extra column": (prediction_request(Department="New Haven"), {"observation"}),
    "null value": (prediction_request(SubjectAge=None), {"observation"}),
    "observation not an object": ({"id": new_id(), "observation": "Stop Sign"}, {"observation"}),
    "integer id": ({"id": 7, "observation": COURSE_OBSERVATION}, {"id"}),
    "body is a list": ([prediction_request()], {"_schema"}),
    "body is a number": (42, {"_schema"}),
}


@pytest.mark.parametrize("case", list(INVALID_BODIES))
def test_invalid_observation_is_422_with_every_field_error_and_nothing_stored(
    client: FlaskClient, nothing_stored: None, case: str
) -> None:
    body, fields = INVALID_BODIES[case]
    error = assert_error(client.post("/predict", json=body), 422, "validation_error")
    assert set(error["fields"]) == fields


def test_every_bad_feature_is_reported_in_one_answer(client: FlaskClient, nothing_stored: None) -> None:
    body = INVALID_BODIES["course nonsense values"][0]
    error = assert_error(client.post("/predict", json=body), 422, "validation_error")
    assert len(error["fields"]["observation"]) == 7
    assert error["fields"]["observation"]["SubjectSexCode"] == ["Must be one of: F, M."]


REPEATED_ID = json.dumps(prediction_request())[:-1] + ', "id": "other"}'
REPEATED_FEATURE = json.dumps(prediction_request())[:-2] + ', "hour": 11}}'


@pytest.mark.parametrize(
    "raw",
    ['{"id": "x", "observation": ', "not json", '{"id": NaN}', "", "\xff\xfe", REPEATED_ID, REPEATED_FEATURE],
)
def test_malformed_json_is_400(client: FlaskClient, nothing_stored: None, raw: str) -> None:
    response = client.post(
        "/predict", data=raw.encode("latin-1"), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_body_that_is_not_declared_json_is_415(
    client: FlaskClient, nothing_stored: None, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps(prediction_request())
    response = client.post("/predict", data=body, headers=headers)
    assert_error(response, 415, "unsupported_media_type")


# The front reads a body within its limit and stops there: on the real server.
def test_body_over_the_size_limit_is_413(
    stack: ServiceStack, api: requests.Session, nothing_stored_on_the_stack: None
) -> None:
    body = prediction_request(StatuteReason="x" * 70_000)
    assert_error(api.post(stack.url("/predict"), json=body, timeout=5), 413, "payload_too_large")


def test_wrong_method_is_405_with_allow_header(client: FlaskClient) -> None:
    response = client.get("/predict")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unknown_path_is_a_json_404(client: FlaskClient) -> None:
    assert_error(client.get("/predictions"), 404, "not_found")


def test_feedback_that_is_not_json_is_415(client: FlaskClient) -> None:
    response = client.post("/update", data="id=1&true_class=1")
    assert_error(response, 415, "unsupported_media_type")


def test_deeply_nested_json_is_400_not_500(client: FlaskClient, nothing_stored: None) -> None:
    response = client.post("/predict", data="[" * 60_000, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "bad_request")


# A NUL would fail a query on Postgres, and the front decodes the path: on every backend.
def test_id_that_cannot_exist_is_404_without_a_database_error(
    stack: ServiceStack, api: requests.Session
) -> None:
    assert_error(api.get(stack.url("/predictions/a%00b"), timeout=5), 404, "not_found")
    assert_error(api.get(stack.url("/predictions/" + "x" * 129), timeout=5), 404, "not_found")


def post_raw(client: FlaskClient, path: str, raw: str) -> TestResponse:
    return client.post(path, data=raw, headers={"Content-Type": "application/json"})


def test_number_with_too_many_digits_is_400_in_plain_words(client: FlaskClient, nothing_stored: None) -> None:
    raw = json.dumps(prediction_request())[:-2] + ', "SubjectAge": ' + "9" * 5000 + "}}"
    response = post_raw(client, "/predict", raw)
    error = assert_error(response, 400, "bad_request")
    assert "too many digits" in error["message"] and "sys." not in error["message"]


@pytest.mark.parametrize("key", ["true_class", "digits"])
def test_feedback_with_a_repeated_key_is_400_naming_it(client: FlaskClient, key: str) -> None:
    raw = f'{{"id": "x", "true_class": 1, "{key}": 0, "{key}": 1}}'
    response = post_raw(client, "/update", raw)
    assert f"repeated key '{key}'" in assert_error(response, 400, "bad_request")["message"]


# Chunked framing is the front's to read: on the real server.
def test_malformed_chunked_body_is_400(stack: ServiceStack, nothing_stored_on_the_stack: None) -> None:
    request = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()  # header names are case-insensitive
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_chunked_body_over_the_limit_is_413_not_cut_short(
    stack: ServiceStack, api: requests.Session, nothing_stored_on_the_stack: None
) -> None:
    body = json.dumps(prediction_request(StatuteReason="x" * 70_000)).encode()
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))  # a generator: sent chunked
    response = api.post(
        stack.url("/predict"), data=chunks, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_error(response, 413, "payload_too_large")
