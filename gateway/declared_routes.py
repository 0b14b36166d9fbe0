"""Each route declared once: its method, path, scope, body and answers; routing, access and OpenAPI read it.

A small decorator of our own, not flask-smorest or apifairy: both bring their own request parsing (webargs),
error handlers and response documents (flask-smorest: its 404 and 422 bodies, tags, a default error answer on
every operation; apifairy: its ValidationError handler, Flask-HTTPAuth, summaries from docstrings), where the
gateway keeps one error envelope, a strict body reader (400, 413, 415), uploads read from a spooled file and
long-polls held by the front. `ApiBlueprint.declare` registers the Flask route and records the rest; the
access check reads the scope by endpoint (an endpoint not declared needs admin), and
gateway.openapi.document builds the document with apispec from the same declarations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app
from marshmallow import Schema

ROUTES = "declared_routes"
OPEN = None  # the scope of a route anyone may call, with or without a key
View = TypeVar("View", bound=Callable[..., Any])
# A Flask rule's variable, <converter:name> or <name>, and the OpenAPI path's {name}.
RULE_VARIABLE = re.compile(r"<(?:(\w+):)?(\w+)>")


@dataclass(frozen=True)
class Declaration:
    """One route: what Flask routes, who may call it, and what the OpenAPI document says of it.

    scope: the API key scope it needs, or OPEN.
    body: the JSON body's schema (a class, or the name of a component schema the document adds).
    uploads: the bodies it takes by media type, from the feature columns of the CSV header (POST /batches).
    query: the schema of its query arguments.
    answers: every status it answers and how, but the access answers (401, 403, 429) its scope adds.
    documented: False for pages and files for people, which the document leaves out.
    browser_page: a page a browser opens, which also takes the key as the password of HTTP Basic auth.
    """

    method: str
    rule: str
    endpoint: str
    scope: str | None
    summary: str = ""
    description: str | None = None
    answers: Mapping[str, Any] = field(default_factory=dict)
    body: type[Schema] | str | None = None
    uploads: Callable[[list[str]], dict[str, Any]] | None = None
    query: type[Schema] | None = None
    documented: bool = True
    browser_page: bool = False

    @property
    def path(self) -> str:
        """Return the path as OpenAPI writes it: /predictions/{observation_id}."""
        return RULE_VARIABLE.sub(r"{\2}", self.rule)

    @property
    def path_variables(self) -> list[tuple[str, str | None]]:
        """Return each path variable's name and converter (None: the default one), in order."""
        return [(name, converter or None) for converter, name in RULE_VARIABLE.findall(self.rule)]


class ApiBlueprint(Blueprint):
    """A blueprint whose every route is declared with its scope, body and answers."""

    def __init__(self, name: str, import_name: str, **options: Any) -> None:
        super().__init__(name, import_name, **options)
        self.declarations: list[Declaration] = []

    def declare(
        self,
        method: str,
        rule: str,
        *,
        scope: str | None,
        summary: str = "",
        description: str | None = None,
        answers: Mapping[str, Any] | None = None,
        body: type[Schema] | str | None = None,
        uploads: Callable[[list[str]], dict[str, Any]] | None = None,
        query: type[Schema] | None = None,
        documented: bool = True,
        browser_page: bool = False,
    ) -> Callable[[View], View]:
        """Route method and rule to the decorated view, and record its declaration (see Declaration)."""

        if documented and not (summary and answers):
            raise ValueError(f"{method} {rule}: an operation of the document needs a summary and its answers")

        def register(view: View) -> View:
            self.add_url_rule(rule, view_func=view, methods=[method])
            self.declarations.append(
                Declaration(
                    method=method,
                    rule=rule,
                    endpoint=f"{self.name}.{view.__name__}",
                    scope=scope,
                    summary=summary,
                    description=description,
                    answers=answers or {},
                    body=body,
                    uploads=uploads,
                    query=query,
                    documented=documented,
                    browser_page=browser_page,
                )
            )
            return view

        return register


def declarations_of(blueprints: Iterable[Blueprint]) -> list[Declaration]:
    """Return the declarations of these blueprints' routes, in the order they were declared."""
    return [
        d for blueprint in blueprints if isinstance(blueprint, ApiBlueprint) for d in blueprint.declarations
    ]


def register_declared(app: Flask, blueprints: Iterable[Blueprint]) -> None:
    """Register the blueprints on the app, and keep their declarations by endpoint for declaration_of."""
    blueprints = list(blueprints)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    app.extensions[ROUTES] = {d.endpoint: d for d in declarations_of(blueprints)}


def declared_routes(app: Flask) -> list[Declaration]:
    """Return every route the app declares."""
    return list(app.extensions[ROUTES].values())


def declaration_of(endpoint: str | None) -> Declaration | None:
    """Return the declaration of one of the current app's endpoints, or None (not declared)."""
    routes: dict[str, Declaration] = current_app.extensions[ROUTES]
    return routes.get(endpoint or "")
