"""Who may do what: each endpoint needs an API key holding its scope, and submissions are rate limited.

Open to anyone: /health, /ready, /metrics, /openapi.json and /docs (probes, scrapers and readers of the API
description carry no key), and every OPTIONS request. Any endpoint not named below needs the admin scope,
so a new route stays closed until someone decides who may call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from sqlalchemy.engine import Engine

from core.api_keys import ADMIN, LABEL, READ, SUBMIT, grants
from core.settings import Settings
from gateway.access.keyring import KeyRing
from gateway.access.rate_limits import SubmissionLimits
from gateway.errors import ApiError
from gateway.server.header_checks import was_checked

log = logging.getLogger(__name__)
EXTENSION = "access"
REALM = 'Bearer realm="contraband"'

OPEN_ENDPOINTS = frozenset(
    {
        "ops.health",
        "ops.ready",
        "ops.metrics",
        "ops.openapi",
        "docs.docs_page",
        "docs.docs_start_script",
        "docs.docs_asset",
    }
)
SCOPE_OF_ENDPOINT = {
    "predictions.submit_prediction": SUBMIT,
    "batches.submit_batch_request": SUBMIT,
    "predictions.get_prediction": READ,
    "batches.get_batch": READ,
    "batches.get_batch_results": READ,
    "batches.get_batch_rejections": READ,
    "predictions.update_true_class": LABEL,
    "monitoring.live_performance": ADMIN,
    "monitoring.model_monitoring": ADMIN,
    "models.list_models": ADMIN,
    "models.start_canary": ADMIN,
    "models.promote_canary": ADMIN,
    "models.roll_back_canary": ADMIN,
    "models.set_stable_version": ADMIN,
    "models.start_shadow": ADMIN,
    "models.stop_shadow": ADMIN,
}
# Pages opened in a browser, which cannot send a bearer token: they also take the key as a Basic password.
BROWSER_PAGES = frozenset({"dashboard.dashboard_page", "dashboard.dashboard_stylesheet"})
SUBMISSIONS = frozenset(endpoint for endpoint, scope in SCOPE_OF_ENDPOINT.items() if scope == SUBMIT)


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
    endpoint = request.endpoint
    if request.method == "OPTIONS" or request.url_rule is None or endpoint in OPEN_ENDPOINTS:
        return  # OPTIONS carries no data; an unmatched path answers 404 or 405 as before
    needed = SCOPE_OF_ENDPOINT.get(endpoint or "", ADMIN)
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
    if endpoint in SUBMISSIONS and not was_checked():
        control.limits.charge_submission(record.name)  # once: on the header check when there was one


def _presented_key() -> str:
    """The key a request carries: a bearer token, or on the HTML pages the password of HTTP Basic auth."""
    credentials = request.authorization
    if credentials is None:
        return ""
    if credentials.type == "bearer":
        return credentials.token or ""
    if credentials.type == "basic" and request.endpoint in BROWSER_PAGES:
        return credentials.password or ""
    return ""


def _challenge(error: str = "") -> str:
    bearer = f"{REALM}, {error}" if error else REALM
    # A browser prompts for a user name and password on a Basic challenge: the key goes in as the password.
    return f'{bearer}, Basic realm="contraband"' if request.endpoint in BROWSER_PAGES else bearer


def charge_batch_items(items: int) -> None:
    """Count a counted batch's items against its key's allowance: 429 past it (no-op when keys are off)."""
    control: AccessControl | None = current_app.extensions.get(EXTENSION)
    if control is not None:
        control.limits.charge_batch_items(g.api_key, items)
