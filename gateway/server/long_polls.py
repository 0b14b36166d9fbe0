"""How the Flask route and the ASGI front share a long-poll: the route says how long to hold, the front holds.

The route never waits: a thread held for seconds is what let 40 patient clients stall the gateway. When the
result is still queued and the client asked to wait, it answers at once with HOLD_HEADER; the front, which
marked the request as coming through it, keeps the connection on its event loop until the worker's notice or
the deadline, then asks the route again. A row of an upload is announced with its batch (HOLD_BATCH_HEADER
names it): on each of the batch's notices the front asks again, holding on while the row is still queued.
"""

from __future__ import annotations

from typing import Any

# Set by the front in the ASGI scope (Flask sees it as environ["asgi.scope"]).
THROUGH_FRONT = "gateway.server.front"
BODY_OVER_LIMIT = "gateway.body_over_limit"
# The request body the front read, as a seekable file (uploads are counted, then read again).
BODY_FILE = "gateway.body_file"
# time.perf_counter() when the front had the whole body and handed the request on (or asked again after a
# hold): the request's latency counts from here, the wait for a free thread included.
HANDED_ON_AT = "gateway.handed_on_at"
HOLD_HEADER = "X-Gateway-Hold-Seconds"
# With HOLD_HEADER, for a row of an upload: its batch, whose notices tell the front to ask again.
HOLD_BATCH_HEADER = "X-Gateway-Hold-Batch"


def scope_of(environ: dict[str, Any]) -> dict[str, Any]:
    """Return the ASGI scope of a request served through the front, or an empty one."""
    scope: dict[str, Any] = environ.get("asgi.scope") or {}
    return scope
