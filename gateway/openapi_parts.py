"""The fixed parts of the OpenAPI document: its words, headers, error reasons, upload bodies, security."""

from __future__ import annotations

from typing import Any

from worker.schemas import ID_MAX_LENGTH

# A format, not a pattern: "printable" follows Python's Unicode tables, which no portable pattern can.
ID_FORMAT = "observation-id"
ID_DESCRIPTION = (
    f"1 to {ID_MAX_LENGTH} printable characters (as Python's str.isprintable: no control, format, "
    "unassigned or separator character but the space), with no '.' or '..' path segment (as in 'x/../b')."
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
BATCH_DOCUMENT = {
    "type": "object",
    "properties": {"observations": {"type": "array", "minItems": 1, "items": BATCH_ITEM}},
    "required": ["observations"],
    "additionalProperties": False,
}
BATCH_UPLOADS = {
    "application/json": {"schema": BATCH_DOCUMENT},
    "application/x-ndjson": {
        # What makes an item: a byte other than the ones bytes.strip() removes.
        "schema": {"type": "string", "pattern": "[^\\t\\n\\v\\f\\r ]", "description": "One item per line"}
    },
    "text/csv": {
        "schema": {
            "type": "string",
            "description": "A header row with id and every feature column, once each and nothing else; a row "
            "per item",
        }
    },
}
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `python -m gateway.keys create`; scopes: submit, read, label, admin "
        "(admin allows all). Off in local mode unless AUTH_REQUIRED=true.",
    }
}
# The scope each guarded operation needs (gateway/access.py decides; this says so).
SCOPES = {
    ("post", "/predict"): "submit",
    ("post", "/batches"): "submit",
    ("get", "/predictions/{observation_id}"): "read",
    ("get", "/batches/{batch_id}"): "read",
    ("get", "/batches/{batch_id}/results"): "read",
    ("get", "/batches/{batch_id}/rejections"): "read",
    ("post", "/update"): "label",
    ("get", "/performance"): "admin",
    ("get", "/monitoring"): "admin",
    ("get", "/models"): "admin",
    ("post", "/models/canary"): "admin",
    ("post", "/models/promote"): "admin",
    ("post", "/models/rollback"): "admin",
    ("post", "/models/stable"): "admin",
    ("post", "/models/shadow"): "admin",
    ("delete", "/models/shadow"): "admin",
}
