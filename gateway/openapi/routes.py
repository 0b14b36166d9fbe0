"""The Swagger UI page of the API description, served with Swagger UI's own files from this service."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flask import Response, send_from_directory

from gateway.declared_routes import OPEN, ApiBlueprint
from gateway.errors import ApiError

blueprint = ApiBlueprint("docs", __name__)

# The Swagger UI release that flask-swagger-ui ships (its own blueprint is not used: its page has an inline
# script, which the page's Content-Security-Policy would have to allow).
SWAGGER_UI_FILES = Path(str(resources.files("flask_swagger_ui") / "dist"))
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Contraband predictions API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png"></head>
<body><div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
<noscript>The API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>
"""
# In a file of its own, not inline: the page's policy allows scripts from this service only.
START_SCRIPT = 'SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", validatorUrl: null});\n'


@blueprint.declare("GET", "/docs", scope=OPEN, documented=False)
def docs_page() -> Response:
    """Return a Swagger UI page for the OpenAPI document."""
    return Response(DOCS_PAGE, content_type="text/html; charset=utf-8")


@blueprint.declare("GET", "/docs/start.js", scope=OPEN, documented=False)
def docs_start_script() -> Response:
    """Return the script that starts Swagger UI on the OpenAPI document."""
    return Response(START_SCRIPT, content_type="text/javascript; charset=utf-8")


@blueprint.declare("GET", "/docs/<name>", scope=OPEN, documented=False)
def docs_asset(name: str) -> Response:
    """Return one of the Swagger UI files the page loads."""
    if name not in ASSETS:
        raise ApiError(404, "No such resource.")
    return send_from_directory(SWAGGER_UI_FILES, name)
