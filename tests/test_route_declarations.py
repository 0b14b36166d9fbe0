"""Every route the gateway serves is declared once; the document and the access check say what it declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from core.api_keys import ADMIN, READ, key_digest, new_api_key
from core.settings import Settings
from core.storage.api_keys import insert_api_key
from core.storage.migrate import upgrade_to_head
from core.storage.records import utc_now
from gateway.app import create_app
from gateway.context import EXTENSION
from gateway.declared_routes import declared_routes


def served_routes(app: Flask) -> list[tuple[str, str, str]]:
    """Return each endpoint, method and rule the app routes (but Flask's static files, HEAD and OPTIONS)."""
    return [
        (rule.endpoint, method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in sorted(rule.methods or ())
        if method not in ("HEAD", "OPTIONS")
    ]


def undeclared_routes(app: Flask) -> list[str]:
    """Return the routes the app serves that no declaration states with that method and rule."""
    declared = {(route.endpoint, route.method, route.rule) for route in declared_routes(app)}
    return [
        f"{method} {rule}"
        for endpoint, method, rule in served_routes(app)
        if (endpoint, method, rule) not in declared
    ]


def make_gateway(tmp_path: Path) -> Flask:
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade_to_head(database_url)
    settings = Settings(database_url=database_url, broker_url="memory://", auth_required=True)
    return create_app({"SETTINGS": settings})


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Flask]:
    app = make_gateway(tmp_path)
    yield app
    app.extensions[EXTENSION].close()


def test_every_served_route_is_declared_with_its_method_and_rule(gateway: Flask) -> None:
    assert undeclared_routes(gateway) == []
    served = {(endpoint, method, rule) for endpoint, method, rule in served_routes(gateway)}
    assert {(r.endpoint, r.method, r.rule) for r in declared_routes(gateway)} == served


def test_every_declared_route_is_in_the_document_with_its_scope_or_left_out_as_a_page(gateway: Flask) -> None:
    paths: dict[str, dict[str, Any]] = gateway.test_client().get("/openapi.json").get_json()["paths"]
    for route in declared_routes(gateway):
        operation = paths.get(route.path, {}).get(route.method.lower())
        if not route.documented:
            assert operation is None, f"{route.method} {route.path} is a page, not an operation"
            continue
        assert operation is not None, f"{route.method} {route.path} is missing from the document"
        assert operation.get("x-required-scope") == route.scope, route.path
        assert operation["security"] == ([] if route.scope is None else [{"bearerAuth": []}]), route.path
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert documented == {(r.method, r.path) for r in declared_routes(gateway) if r.documented}


def test_a_route_added_without_a_declaration_is_found_and_needs_the_admin_scope(tmp_path: Path) -> None:
    app = make_gateway(tmp_path)
    app.add_url_rule("/undeclared", "undeclared", lambda: {"served": True})
    keys = {scope: new_api_key() for scope in (READ, ADMIN)}
    with app.extensions[EXTENSION].engine.begin() as conn:
        for scope, key in keys.items():
            insert_api_key(
                conn=conn,
                name=scope,
                prefix=key[:12],
                key_sha256=key_digest(key),
                scopes={scope},
                now=utc_now(),
            )
    client = app.test_client()
    try:
        assert undeclared_routes(app) == ["GET /undeclared"]
        assert client.get("/undeclared").status_code == 401  # closed until someone declares who may call it
        assert client.get("/undeclared", headers={"Authorization": f"Bearer {keys[READ]}"}).status_code == 403
        assert (
            client.get("/undeclared", headers={"Authorization": f"Bearer {keys[ADMIN]}"}).status_code == 200
        )
    finally:
        app.extensions[EXTENSION].close()
