"""The fixed parts of the OpenAPI document: its words, headers, error reasons, upload bodies, security."""

from __future__ import annotations

from typing import Any

from worker.schemas import ID_MAX_LENGTH

# "Printable" follows Python's Unicode tables, which no portable pattern can: the format names the whole rule,
# the pattern states what an ECMA regex can (no '.' or '..' segment; no control character, NUL included, and
# no separator, format, private-use or noncharacter code point of the Basic Multilingual Plane), the
# description the rest (unassigned code points, and what lies beyond the BMP). The length is minLength and
# maxLength, not the pattern's: a regex without the u flag counts a character beyond the BMP twice.
ID_FORMAT = "observation-id"
ID_PATTERN = (
    r"^(?!\.\.?(?:/|$))(?!.*/\.\.?(?:/|$))"
    r"[^\u0000-\u001f\u007f-\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u1680"
    r"\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ue000-\uf8ff\ufdd0-\ufdef\ufeff\ufff0-\ufffb\ufffe\uffff]+$"
)
ID_DESCRIPTION = (
    f"1 to {ID_MAX_LENGTH} printable characters (as Python's str.isprintable: no control, format, "
    "private-use, unassigned or separator character but the space), with no '.' or '..' path segment (as in "
    "'x/../b'). The pattern states all of it but unassigned code points (as of Unicode 14) and, beyond the "
    "Basic Multilingual Plane, format and private-use ones: the server refuses those too."
)
OVERVIEW = (
    "Asynchronous predictions; the request schema of model bundle {version}, the stable version (during a "
    "canary, the ids it takes are validated by the canary's schema). Every error is the Error envelope "
    '{{"error": {{"code", "message", ...}}}}: a path not listed here (but /openapi.json and /docs) '
    "answers 404, a method not listed for a path 405 with an Allow header (HEAD is answered wherever GET "
    "is, OPTIONS with 204 and Allow), any request whose body is over the size limit 413, and a request "
    "the server cannot parse 400."
)
ERROR_REASONS = {
    400: "The body is empty, not JSON (or has NaN, Infinity, repeated keys), or cannot be read",
    404: "No such observation or batch",
    409: "The id was already submitted with a different observation: error.links.existing",
    413: "The request body is over the size limit",
    415: "The body is not of a listed Content-Type, or has a Content-Encoding: send it uncompressed",
    422: "Not valid: error.fields names every bad field or query argument",
    401: "No API key, or an unknown or revoked one (WWW-Authenticate says so)",
    403: "The API key lacks the scope this operation needs",
    429: "Over the API key's rate limit: Retry-After",
    500: "Unexpected error: logged, no details given",
    503: "The database is unreachable, or (submissions) the backlog is over its bounds: Retry-After",
}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: the client's X-Request-ID if it is a plain token, else one made up",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
    },
    "Location": {
        "description": "Where to follow the resource",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before asking again",
        "schema": {"type": "integer", "minimum": 1},
    },
    "Accept-Encoding": {"description": "identity: what a body may be sent as", "schema": {"type": "string"}},
    "Allow": {"description": "The methods of the path", "required": True, "schema": {"type": "string"}},
    "WWW-Authenticate": {
        "description": "Bearer, with the error and the scope needed",
        "required": True,
        "schema": {"type": "string"},
    },
}
BATCH_ITEM = {
    "description": "A PredictionRequest each; an item that is not valid is rejected alone and listed (with "
    "atomic=true, it refuses the whole batch: 422, nothing stored)"
}
# A rule across the query and the body, which no schema states: the body's schemas say what a batch is, this
# says when one item refuses it.
ATOMIC_BATCHES = (
    "Each item is a PredictionRequest. With atomic=false (the default) an item that is not one is rejected "
    "alone and listed in the receipt and at the rejections URL, and the others are queued. With atomic=true "
    "the server is stricter than the body's schemas: one item that is not a valid PredictionRequest (or a "
    "CSV row that is not a valid item) refuses the whole batch with a 422, nothing stored, "
    "error.fields.rejected listing the first such items."
)
BATCH_DOCUMENT = {
    "type": "object",
    "properties": {"observations": {"type": "array", "minItems": 1, "items": BATCH_ITEM}},
    "required": ["observations"],
    "additionalProperties": False,
}
# What makes an item: a byte other than the ones bytes.strip() removes.
NDJSON_UPLOAD = {"type": "string", "pattern": "[^\\t\\n\\v\\f\\r ]", "description": "One item per line"}
# A CSV cell as RFC 4180 writes it: plain, or quoted with its quotes doubled (then it may hold a comma or
# a line break).
CSV_CELL = r'(?:[^",\r\n]*|"(?:[^"]|"")*")'
CSV_ROW = rf"{CSV_CELL}(?:,{CSV_CELL})*"
CSV_ITEM_ROW = rf'(?:[^",\r\n]+|"(?:[^"]|"")*"|,{CSV_CELL})(?:,{CSV_CELL})*'  # a row that is not blank
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `python -m admin.keys create`; scopes: submit, read, label, admin "
        "(admin allows all). Off in local mode unless AUTH_REQUIRED=true.",
    }
}


def batch_uploads(columns: list[str]) -> dict[str, Any]:
    """Return the bodies POST /batches takes; columns: the feature columns of the CSV header, in order."""
    header = ",".join(["id", *columns])
    csv_upload = {
        "type": "string",
        # The header in the document's order; the server takes the same columns in any order, which a pattern
        # could only say with a lookahead per column (and generators cannot draw from those).
        "pattern": rf"^{header}\r?\n(?:{CSV_ROW}\r?\n)*{CSV_ITEM_ROW}(?:\r?\n{CSV_ROW})*$",
        "description": f"UTF-8 (a byte order mark is skipped), a header row with the columns {header}, "
        "once each and nothing else (the pattern writes them in this order; the server takes any order), "
        "then a row per item (at least one; blank lines are skipped). A row that is not a valid item, as one "
        "with another number of cells, is rejected alone and listed (with atomic=true, it refuses the whole "
        "batch: 422)",
    }
    return {
        "application/json": {"schema": BATCH_DOCUMENT},
        "application/x-ndjson": {"schema": NDJSON_UPLOAD},
        "text/csv": {"schema": csv_upload},
    }
