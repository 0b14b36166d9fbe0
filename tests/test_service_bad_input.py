"""Bad input over real HTTP: a clear JSON error in one envelope, never a 500 or HTML, and nothing stored."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.stack import ServiceStack
from tests.database import count_rows
from tests.factories import COURSE_OBSERVATION, new_id, observation, prediction_request


@pytest.fixture
def nothing_stored(stack: ServiceStack) -> Iterator[None]:
    """Check that the test leaves the predictions table exactly as it found it."""
    with stack.engine.connect() as conn:
        before = count_rows(conn=conn)
    yield
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn) == before


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    envelope = response.json()
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
    stack: ServiceStack, api: requests.Session, nothing_stored: None, case: str
) -> None:
    body, fields = INVALID_BODIES[case]
    error = assert_error(api.post(stack.url("/predict"), json=body, timeout=5), 422, "validation_error")
    assert set(error["fields"]) == fields


def test_every_bad_feature_is_reported_in_one_answer(
    stack: ServiceStack, api: requests.Session, nothing_stored: None
) -> None:
    body = INVALID_BODIES["course nonsense values"][0]
    error = assert_error(api.post(stack.url("/predict"), json=body, timeout=5), 422, "validation_error")
    assert len(error["fields"]["observation"]) == 7
    assert error["fields"]["observation"]["SubjectSexCode"] == ["Must be one of: F, M."]


REPEATED_ID = json.dumps(prediction_request())[:-1] + ', "id": "other"}'
REPEATED_FEATURE = json.dumps(prediction_request())[:-2] + ', "hour": 11}}'


@pytest.mark.parametrize(
    "raw",
    ['{"id": "x", "observation": ', "not json", '{"id": NaN}', "", "\xff\xfe", REPEATED_ID, REPEATED_FEATURE],
)
def test_malformed_json_is_400(
    stack: ServiceStack, api: requests.Session, nothing_stored: None, raw: str
) -> None:
    response = api.post(
        stack.url("/predict"),
        data=raw.encode("latin-1"),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_body_that_is_not_declared_json_is_415(
    stack: ServiceStack, api: requests.Session, nothing_stored: None, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps(prediction_request())
    response = api.post(stack.url("/predict"), data=body, headers=headers, timeout=5)
    assert_error(response, 415, "unsupported_media_type")


def test_body_over_the_size_limit_is_413(
    stack: ServiceStack, api: requests.Session, nothing_stored: None
) -> None:
    body = prediction_request(StatuteReason="x" * 70_000)
    assert_error(api.post(stack.url("/predict"), json=body, timeout=5), 413, "payload_too_large")


def test_wrong_method_is_405_with_allow_header(stack: ServiceStack, api: requests.Session) -> None:
    response = api.get(stack.url("/predict"), timeout=5)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unknown_path_is_a_json_404(stack: ServiceStack, api: requests.Session) -> None:
    assert_error(api.get(stack.url("/predictions"), timeout=5), 404, "not_found")


def test_feedback_that_is_not_json_is_415(stack: ServiceStack, api: requests.Session) -> None:
    response = api.post(stack.url("/update"), data="id=1&true_class=1", timeout=5)
    assert_error(response, 415, "unsupported_media_type")


def test_deeply_nested_json_is_400_not_500(
    stack: ServiceStack, api: requests.Session, nothing_stored: None
) -> None:
    response = api.post(
        stack.url("/predict"), data="[" * 60_000, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert_error(response, 400, "bad_request")


def test_id_that_cannot_exist_is_404_without_a_database_error(
    stack: ServiceStack, api: requests.Session
) -> None:
    assert_error(api.get(stack.url("/predictions/a%00b"), timeout=5), 404, "not_found")
    assert_error(api.get(stack.url("/predictions/" + "x" * 129), timeout=5), 404, "not_found")


def post_raw(api: requests.Session, url: str, raw: str) -> requests.Response:
    return api.post(url, data=raw, headers={"Content-Type": "application/json"}, timeout=5)


def test_number_with_too_many_digits_is_400_in_plain_words(
    stack: ServiceStack, api: requests.Session, nothing_stored: None
) -> None:
    raw = json.dumps(prediction_request())[:-2] + ', "SubjectAge": ' + "9" * 5000 + "}}"
    response = post_raw(api, stack.url("/predict"), raw)
    error = assert_error(response, 400, "bad_request")
    assert "too many digits" in error["message"] and "sys." not in error["message"]


@pytest.mark.parametrize("key", ["true_class", "digits"])
def test_feedback_with_a_repeated_key_is_400_naming_it(
    stack: ServiceStack, api: requests.Session, key: str
) -> None:
    raw = f'{{"id": "x", "true_class": 1, "{key}": 0, "{key}": 1}}'
    response = post_raw(api, stack.url("/update"), raw)
    assert f"repeated key '{key}'" in assert_error(response, 400, "bad_request")["message"]


def test_malformed_chunked_body_is_400(stack: ServiceStack, nothing_stored: None) -> None:
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
    stack: ServiceStack, api: requests.Session, nothing_stored: None
) -> None:
    body = json.dumps(prediction_request(StatuteReason="x" * 70_000)).encode()
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))  # a generator: sent chunked
    response = api.post(
        stack.url("/predict"), data=chunks, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_error(response, 413, "payload_too_large")
