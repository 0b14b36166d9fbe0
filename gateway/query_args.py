"""Query-string arguments of the routes that take any, checked by schema (422 with fields, as bodies are)."""

from __future__ import annotations

import re
from typing import Any

from flask import request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from gateway.errors import ApiError, validation_fields


class QueryArgs(Schema):
    """Base of the query schemas: other arguments are ignored, as a browser or proxy may add some."""

    class Meta:
        unknown = EXCLUDE


class WaitArgs(QueryArgs):
    """GET /predictions/<id>: how long to hold the request for the result."""

    wait = fields.Float(
        load_default=0.0,
        allow_nan=False,
        validate=validate.Range(min=0, error="Must be a number, 0 or more."),
        error_messages={
            "invalid": "Must be a number, 0 or more.",
            "special": "Must be a number, 0 or more.",
        },
        metadata={"description": "Hold the request up to this many seconds (capped) for the result"},
    )


class BatchArgs(QueryArgs):
    """POST /batches: all or nothing."""

    atomic = fields.Boolean(
        load_default=False,
        truthy={"true", "1"},
        falsy={"false", "0"},
        error_messages={"invalid": "Must be true or false."},
        metadata={"description": "all or nothing"},
    )

    @pre_load
    def _any_case(self, args: Any, **_: Any) -> dict[str, Any]:
        loaded = dict(args)
        if isinstance(loaded.get("atomic"), str):
            loaded["atomic"] = loaded["atomic"].lower()
        return loaded


class ResultFormatArgs(QueryArgs):
    """GET /batches/<id>/results: the download format (else from the Accept header)."""

    format = fields.String(
        # A callable, so apispec documents no default: None would make the argument nullable in the document,
        # and a query string cannot send null.
        load_default=lambda: None,
        validate=validate.OneOf(["ndjson", "csv"], error="Must be one of: {choices}."),
        metadata={"description": "Without it, the Accept header decides (text/csv: csv), else ndjson"},
    )


DURATION = re.compile(r"([1-9][0-9]{0,5})([smhd])")
SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


class Duration(fields.Field[int]):
    """A duration written as a number and a unit: 90s, 30m, 1h, 7d; loaded as seconds."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        found = DURATION.fullmatch(value) if isinstance(value, str) else None
        if found is None:
            raise ValidationError("Must be a whole number from 1 and a unit: s, m, h or d (e.g. 1h, 7d).")
        return int(found[1]) * SECONDS_PER_UNIT[found[2]]


class WindowArgs(QueryArgs):
    """GET /monitoring: the window the figures are measured over (default MONITOR_WINDOW_S)."""

    window = Duration(
        load_default=lambda: None,
        metadata={"description": "e.g. 1h, 30m, 7d; default: the monitor's window (a day)"},
    )


def load_query(schema: Schema) -> dict[str, Any]:
    """Return the request's query arguments loaded by schema; 422 naming every bad argument."""
    try:
        loaded: dict[str, Any] = schema.load(request.args.to_dict())
    except ValidationError as error:
        fields_ = validation_fields(error)
        raise ApiError(
            422, f"Query argument {', '.join(sorted(fields_))} is not valid; see fields.", fields=fields_
        ) from None
    return loaded


wait_args = WaitArgs()
batch_args = BatchArgs()
result_format_args = ResultFormatArgs()
window_args = WindowArgs()
