"""Answer from the headers alone, before the front reads a body: an upload nobody may send is never read.

For a request whose body may be large (over HEADER_CHECK_PAST_BYTES, chunked, or sent with
`Expect: 100-continue`), the front first runs the app with no body and HEADERS_ONLY set: routing (404, 405)
and access (401, 403, 429) answer as usual, and a request that passes them gets PROCEED_HEADER instead. Only
then does the front read the body (and uvicorn say `100 Continue`) and run the app again, with
HEADERS_CHECKED set so the request is not charged twice. A refusal closes the connection: the body is left
unread.
"""

from __future__ import annotations

from flask import Response, request

from gateway.server.long_polls import scope_of

HEADER_CHECK_PAST_BYTES = 1 << 16
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Set by the front in the ASGI scope: this pass is the check, and (on the pass with the body) it was done.
HEADERS_ONLY = "gateway.headers_only"
HEADERS_CHECKED = "gateway.headers_checked"
PROCEED_HEADER = "X-Gateway-Proceed"


def needs_header_check(method: str, header_list: list[tuple[bytes, bytes]]) -> bool:
    """Say whether a request's body may be large enough to check its headers before reading it."""
    if method not in BODY_METHODS:
        return False
    headers = dict(header_list)
    declared = headers.get(b"content-length")
    if b"transfer-encoding" in headers or b"expect" in headers:
        return True
    return declared is not None and (not declared.isdigit() or int(declared) > HEADER_CHECK_PAST_BYTES)


def answer_from_headers() -> Response | None:
    """On the front's check pass, refuse what routing refuses, else tell the front to read the body.

    Registered after the access check, so a key that may not call the endpoint has been refused by now.
    """
    if not scope_of(request.environ).get(HEADERS_ONLY):
        return None
    if request.routing_exception is not None:
        raise request.routing_exception
    return Response(status=204, headers={PROCEED_HEADER: "1"})


def was_checked() -> bool:
    """Say whether this request's headers were checked (and charged) on an earlier pass."""
    return bool(scope_of(request.environ).get(HEADERS_CHECKED))
