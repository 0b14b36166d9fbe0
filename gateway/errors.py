"""The one JSON error envelope, and the handlers that turn every failure into it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify
from marshmallow import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from gateway.responses import error_schema

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error answered to the client as {"error": {"code", "message", "fields"?, "links"?, "checks"?}}.

    fields holds validation errors keyed by field; checks the state of each readiness check; headers are
    extra response headers that tell the client what would have been accepted.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        fields: dict[str, Any] | None = None,
        links: dict[str, str] | None = None,
        checks: dict[str, str] | None = None,
        close_connection: bool = False,
        retry_after_s: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields
        self.links = links
        self.checks = checks
        self.close_connection = close_connection
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})


def validation_fields(error: ValidationError) -> dict[str, Any]:
    """Return a marshmallow error's messages keyed by field (errors of the whole object under _schema)."""
    return error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}


def envelope(
    status: int,
    message: str,
    *,
    request_id: str | None,
    fields: dict[str, Any] | None = None,
    links: dict[str, str] | None = None,
    checks: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return the error envelope of a status: its code, the message, and the details that apply."""
    body = {
        "code": HTTP_CODES.get(status, "error"),
        "message": message,
        "fields": fields,
        "links": links,
        "checks": checks,
        "request_id": request_id,
    }
    dumped: dict[str, Any] = error_schema.dump({"error": body})
    return dumped


def error_response(error: ApiError) -> Response:
    """Render an ApiError as the JSON envelope with its status code."""
    body = envelope(
        error.status,
        error.message,
        request_id=g.get("request_id") or None,
        fields=error.fields,
        links=error.links,
        checks=error.checks,
    )
    response = jsonify(body)
    response.status_code = error.status
    if error.close_connection:
        response.headers["Connection"] = "close"
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    response.headers.update(error.headers)
    return response


def register_error_handlers(app: Flask) -> None:
    """Answer every error with the JSON envelope: never HTML, a stack trace or a database message."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(ValidationError)
    def _validation_error(error: ValidationError) -> Response:
        fields = validation_fields(error)
        return error_response(ApiError(422, "The request body is not valid; see fields.", fields=fields))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = {
            404: "No such resource.",
            405: "Method not allowed on this resource.",
            413: "The request body is too large.",
        }.get(status, error.description or "Request failed.")
        response = error_response(ApiError(status, message))
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_unreachable(error: SQLAlchemyError) -> Response:
        log.exception("database unreachable")
        response = error_response(ApiError(503, "The database is unavailable; try again shortly."))
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(ApiError(500, "Internal error; it has been logged."))
