"""Security headers on every response, and the Content-Security-Policy of the HTML pages (docs, dashboard)."""

from __future__ import annotations

from flask import Response

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# What the HTML pages (Swagger UI, the dashboard) need: their own scripts, stylesheets and API calls, and
# the data: images Swagger UI's stylesheet draws icons with. No inline script or style, nothing from another
# site, no framing.
HTML_POLICY = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


def add_security_headers(response: Response) -> Response:
    """Add the security headers to a response, and the page policy when it is HTML."""
    response.headers.update(HEADERS)
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = HTML_POLICY
    return response
