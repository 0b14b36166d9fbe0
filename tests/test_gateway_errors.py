"""A bug in a route still answers with the JSON envelope, and logs carry the request id."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

import pytest

from core.settings import Settings
from core.storage.migrate import upgrade_to_head
from gateway.app import RequestIdFilter, create_app


def test_unexpected_exception_is_a_500_envelope_without_details(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade_to_head(database_url)
    app = create_app({"SETTINGS": Settings(database_url=database_url)})

    @app.get("/boom")
    def boom() -> NoReturn:
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {
            "code": "internal_error",
            "message": "Internal error; it has been logged.",
            "request_id": "req-42",
        }
    }
    assert b"secret" not in response.data
    app.extensions["predictions"].close()


def test_log_records_inside_a_request_carry_its_id(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app({"SETTINGS": Settings(database_url=f"sqlite:///{tmp_path / 'gateway.db'}")})

    @app.get("/boom")
    def boom() -> NoReturn:
        raise RuntimeError("logged, not shown")

    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.ERROR, logger="gateway.errors"):
        app.test_client().get("/boom", headers={"X-Request-ID": "req-7"})
    assert [getattr(r, "request_id", None) for r in caplog.records if r.name == "gateway.errors"] == ["req-7"]
    app.extensions["predictions"].close()


def test_options_names_the_allowed_methods_without_a_body(tmp_path: Path) -> None:
    app = create_app({"SETTINGS": Settings(database_url=f"sqlite:///{tmp_path / 'gateway.db'}")})
    response = app.test_client().options("/predict")
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert "Content-Type" not in response.headers
    assert response.data == b""
    app.extensions["predictions"].close()
