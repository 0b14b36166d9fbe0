"""Read request bodies strictly: JSON only, within the size limit, no NaN or Infinity."""

from __future__ import annotations

import io
import json
from typing import IO, Any

from flask import request

from gateway.errors import ApiError


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json_body() -> Any:
    """Return the parsed JSON body; 415 if it is not JSON, 400 if malformed, 413 if too large."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise ApiError(415, "Send the body as JSON with Content-Type: application/json.")
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body is cut at the limit rather than refused: refuse it here.
        raise ApiError(413, "The request body is too large.")
    if not raw.strip():
        raise ApiError(400, "The request body is empty; send a JSON object.")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
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
        data = self._stream.read(len(buffer))
        self._left -= len(data)
        if self._left <= 0:
            raise ApiError(413, "The request body is too large.")
        buffer[: len(data)] = data
        return len(data)
