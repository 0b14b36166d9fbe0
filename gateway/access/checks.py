"""Who may do what: each endpoint needs an API key holding its declared scope; submissions are rate limited.

The scope is the route's declaration's (gateway.declared_routes). Open to anyone: the routes declared OPEN
(/health, /ready, /metrics, /openapi.json and /docs: probes, scrapers and readers of the API description carry
no key), and every OPTIONS request. An endpoint with no declaration needs the admin scope, so a route added
some other way stays closed until someone declares who may call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from sqlalchemy.engine import Engine

from core.api_keys import ADMIN, SUBMIT, grants
from core.settings import Settings
from gateway.access.keyring import KeyRing
from gateway.access.rate_limits import SubmissionLimits
from gateway.declared_routes import OPEN, declaration_of
from gateway.errors import ApiError
from gateway.server.header_checks import was_checked

log = logging.getLogger(__name__)
EXTENSION = "access"
REALM = 'Bearer realm="contraband"'


@dataclass(frozen=True)
class AccessControl:
    """The key lookups and the rate limits of one app."""

    keyring: KeyRing
    limits: SubmissionLimits


def install_access_control(app: Flask, settings: Settings, engine: Engine) -> None:
    """Require API keys on the app when settings say so; otherwise say loudly that it is open."""
    if not settings.auth_required:
        log.warning(
            "API keys are NOT required (AUTH_REQUIRED off, APP_ENV=%s): anyone who can reach this port may "
            "submit, read every prediction, send true outcomes and read live performance. Serve on "
            "127.0.0.1 only, or set AUTH_REQUIRED=true.",
            settings.app_env,
        )
        return
    app.extensions[EXTENSION] = AccessControl(
        keyring=KeyRing(engine, settings.api_key_cache_s), limits=SubmissionLimits(settings)
    )
    app.before_request(_authorize_request)


def _authorize_request() -> None:
    """Refuse the request (401, 403, 429) unless its key may call the endpoint now."""
    if request.method == "OPTIONS" or request.url_rule is None:
        return  # OPTIONS carries no data; an unmatched path answers 404 or 405 as before
    declaration = declaration_of(request.endpoint)
    needed = ADMIN if declaration is None else declaration.scope  # closed unless declared
    if needed is OPEN:
        return
    control: AccessControl = current_app.extensions[EXTENSION]
    key = _presented_key()
    if not key:
        raise ApiError(
            401,
            "This endpoint needs an API key: send the header Authorization: Bearer <key>.",
            headers={"WWW-Authenticate": _challenge()},
        )
    record = control.keyring.active_key(key)
    if record is None:
        raise ApiError(
            401,
            "The API key is not valid: unknown or revoked.",
            headers={"WWW-Authenticate": _challenge('error="invalid_token"')},
        )
    g.api_key = record.name
    if not grants(record.scopes, needed):
        held = ", ".join(sorted(record.scopes)) or "none"
        raise ApiError(
            403,
            f"API key {record.name!r} may not do this: it needs the {needed!r} scope (it has: {held}).",
            headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{needed}"'},
        )
    if needed == SUBMIT and not was_checked():
        control.limits.charge_submission(record.name)  # once: on the header check when there was one


def _presented_key() -> str:
    """The key a request carries: a bearer token, or on the HTML pages the password of HTTP Basic auth."""
    credentials = request.authorization
    if credentials is None:
        return ""
    if credentials.type == "bearer":
        return credentials.token or ""
    if credentials.type == "basic" and _on_browser_page():
        return credentials.password or ""
    return ""


def _challenge(error: str = "") -> str:
    bearer = f"{REALM}, {error}" if error else REALM
    # A browser prompts for a user name and password on a Basic challenge: the key goes in as the password.
    return f'{bearer}, Basic realm="contraband"' if _on_browser_page() else bearer


def _on_browser_page() -> bool:
    """Say whether the request is for a page a browser opens, which cannot send a bearer token."""
    declaration = declaration_of(request.endpoint)
    return declaration is not None and declaration.browser_page


def charge_batch_items(items: int) -> None:
    """Count a counted batch's items against its key's allowance: 429 past it (no-op when keys are off)."""
    control: AccessControl | None = current_app.extensions.get(EXTENSION)
    if control is not None:
        control.limits.charge_batch_items(g.api_key, items)
