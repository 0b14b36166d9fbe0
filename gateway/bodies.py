"""Read request bodies strictly: JSON only, within the size limit, no NaN, Infinity or repeated keys."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import IO, Any, TypeVar

from flask import request
from gunicorn.http.errors import ParseException

from gateway.errors import ApiError

log = logging.getLogger(__name__)
T = TypeVar("T")
UNREADABLE = "The request body cannot be read (its transfer encoding is malformed)."
# What reading a body raises when its framing is broken: gunicorn's parse errors (a bad chunk size, say),
# and the I/O errors other WSGI servers use.
UNREADABLE_BODY_ERRORS = (ParseException, OSError, ValueError)
# Bodies are read as sent: a compressed one would be parsed as if it were plain (and its size limit would
# count compressed bytes), so any coding other than identity is refused (RFC 9110 15.5.16).
ACCEPTED_CODINGS = frozenset({"", "identity"})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def repeated_names(names: Iterable[str]) -> list[str]:
    """Return, sorted, the names that occur more than once (JSON keys, CSV columns)."""
    return sorted(name for name, times in Counter(names).items() if times > 1)


def _object_without_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        repeated = repeated_names(key for key, _ in pairs)
        raise ValueError(f"repeated key {', '.join(map(repr, repeated))}")
    return found


def parse_json(raw: bytes | str) -> Any:
    """Parse strict JSON (no NaN or Infinity, no repeated keys); raise ValueError saying what is wrong."""
    try:
        return json.loads(
            raw, parse_constant=_reject_constant, object_pairs_hook=_object_without_repeated_keys
        )
    except ValueError as exc:
        if str(exc).startswith("Exceeds the limit"):  # Python's cap on integer length, in Python's words
            raise ValueError("a number has too many digits") from None
        raise


def read_from_client(read: Callable[[], T]) -> T:
    """Run a read of the request body; a body the server cannot decode (bad chunk framing) is a 400."""
    try:
        return read()
    except UNREADABLE_BODY_ERRORS:
        log.warning("request body unreadable", exc_info=True)
        raise ApiError(400, UNREADABLE) from None


def refuse_encoded_body() -> None:
    """Answer 415 to a body sent with a Content-Encoding (gzip, deflate, ...) other than identity."""
    sent = request.headers.get("Content-Encoding", "")
    if any(coding.strip().lower() not in ACCEPTED_CODINGS for coding in sent.split(",")):
        raise ApiError(
            415,
            f"Content-Encoding {sent.strip()[:40]!r} is not supported; send the body uncompressed, "
            "without a Content-Encoding header.",
            headers={"Accept-Encoding": "identity"},
        )


def read_json_body() -> Any:
    """Return the parsed JSON body; 415 if not plain JSON, 400 if malformed, 413 if too large."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise ApiError(415, "Send the body as JSON with Content-Type: application/json.")
    refuse_encoded_body()
    raw = read_from_client(lambda: request.get_data(cache=True))  # 413 past MAX_CONTENT_LENGTH
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body is cut at the limit rather than refused: refuse it here.
        raise ApiError(413, "The request body is too large.")
    if not raw.strip():
        raise ApiError(400, "The request body is empty; send a JSON object.")
    try:
        return parse_json(raw)
    except ValueError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "The request body is nested too deeply.") from None


class LimitedUpload(io.RawIOBase):
    """Read a streamed upload, answering 413 once it reaches limit bytes (chunked bodies have no length)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = read_from_client(lambda: self._stream.read(len(buffer)))
        self._left -= len(data)
        if self._left <= 0:
            raise ApiError(413, "The request body is too large.")
        buffer[: len(data)] = data
        return len(data)
