"""A bug in a route still answers with the JSON envelope, and logs carry the request id."""

from __future__ import annotations

import logging
from typing import NoReturn

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import RequestIdFilter


def test_unexpected_exception_is_a_500_envelope_without_details(app: Flask, client: FlaskClient) -> None:
    @app.get("/boom")
    def boom() -> NoReturn:
        raise RuntimeError("secret internal detail")

    response = client.get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {
            "code": "internal_error",
            "message": "Internal error; it has been logged.",
            "request_id": "req-42",
        }
    }
    assert b"secret" not in response.data


def test_log_records_inside_a_request_carry_its_id(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/boom")
    def boom() -> NoReturn:
        raise RuntimeError("logged, not shown")

    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.ERROR, logger="gateway.errors"):
        client.get("/boom", headers={"X-Request-ID": "req-7"})
    assert [getattr(r, "request_id", None) for r in caplog.records if r.name == "gateway.errors"] == ["req-7"]


def test_options_names_the_allowed_methods_without_a_body(client: FlaskClient) -> None:
    response = client.options("/predict")
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert "Content-Type" not in response.headers
    assert response.data == b""
