"""Build the answers of OpenAPI operations: JSON and NDJSON bodies, the error envelope per status, headers."""

from __future__ import annotations

from typing import Any

from gateway.openapi.parts import ERROR_REASONS


def ref(name: str) -> dict[str, str]:
    """Return a reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def answer(description: str, content: dict[str, Any] | None = None, *headers: str) -> dict[str, Any]:
    """Return an answer with its content, if any, and headers (X-Request-ID always)."""
    names = ("X-Request-ID", *headers)
    described = {
        "description": description,
        "headers": {n: {"$ref": f"#/components/headers/{n}"} for n in names},
    }
    return described | ({"content": content} if content is not None else {})


def json_answer(schema: dict[str, Any], description: str, *headers: str) -> dict[str, Any]:
    """Return an answer with a JSON body of this schema."""
    return answer(description, {"application/json": {"schema": schema}}, *headers)


def ndjson(item: dict[str, Any]) -> dict[str, Any]:
    """Return NDJSON content: one item per line, its schema that of the lines read as an array."""
    lines = {"type": "array", "items": item, "description": "The lines, each one JSON item, as an array"}
    return {"application/x-ndjson": {"schema": lines}}


def errors(*statuses: int, reasons: dict[int, str] | None = None) -> dict[str, Any]:
    """Return the error answers of an operation; 413 and 500 can answer any request."""
    headers = {415: ("Accept-Encoding",), 503: ("Retry-After",)}
    reason = ERROR_REASONS | (reasons or {})
    return {
        str(status): json_answer(ref("Error"), reason[status], *headers.get(status, ()))
        for status in sorted({*statuses, 413, 500})
    }


def access_errors(*, with_rate_limit: bool) -> dict[str, Any]:
    """Return the answers of a guarded operation to a request without the right key (or over its limit)."""
    answers = {
        "401": json_answer(ref("Error"), ERROR_REASONS[401], "WWW-Authenticate"),
        "403": json_answer(ref("Error"), ERROR_REASONS[403], "WWW-Authenticate"),
    }
    if with_rate_limit:
        answers["429"] = json_answer(ref("Error"), ERROR_REASONS[429], "Retry-After")
    return answers
