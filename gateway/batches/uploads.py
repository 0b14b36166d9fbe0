"""The body of an upload as a file that can be read twice: counted and checked first, then taken in."""

from __future__ import annotations

import shutil
from tempfile import SpooledTemporaryFile
from typing import IO

from flask import request

from gateway.bodies import LimitedUpload
from gateway.server.long_polls import BODY_FILE, scope_of

SPOOL_IN_MEMORY_BYTES = 1 << 20


def request_body_file(limit: int) -> IO[bytes]:
    """Return the request body, rewound: the front's spooled copy, or (served without it) one made here."""
    spooled: IO[bytes] | None = scope_of(request.environ).get(BODY_FILE)
    if spooled is not None:
        spooled.seek(0)
        return spooled
    copy: IO[bytes] = SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115  (closed by the route)
    try:
        shutil.copyfileobj(LimitedUpload(request.stream, limit), copy, 1 << 20)
    except BaseException:
        copy.close()  # over the limit, or the client went away: nothing will read it
        raise
    copy.seek(0)
    return copy
