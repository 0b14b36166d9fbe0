"""Which model version accepts a submission, per gateway process: the rollout, and each version's schemas.

The rollout is read from the database every ROLLOUT_CHECK_S in a thread of its own (as the backlog guard
reads the backlog), never per request; each version's request schemas are generated once from its
checksum-verified feature spec, when the rollout first names it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.feature_spec import BundleError, FeatureSpec, load_feature_spec
from core.rollout.serving_versions import RolloutReader, pinned_versions
from core.rollout.state import Rollout, version_for
from core.settings import Settings
from gateway.errors import ApiError
from gateway.server.periodic import EveryProcess, OutageLog
from worker.schemas import RequestSchemas, request_schemas

log = logging.getLogger(__name__)
# A version whose spec failed to load is tried again after this long, not on every request.
SPEC_RETRY_S = 5.0


@dataclass(frozen=True)
class VersionSchemas:
    """One bundle version's input contract: its feature spec and the request schemas generated from it."""

    version: str
    spec: FeatureSpec
    schemas: RequestSchemas


class RolloutView:
    """Tell which version accepts an id or a batch, from the last reading of the rollout."""

    def __init__(self, engine: Engine, settings: Settings, default: VersionSchemas) -> None:
        self._settings = settings
        self._reader = RolloutReader(engine, default.version, interval_s=float("inf"))
        self._thread = EveryProcess("rollout-view", settings.rollout_check_s, self.check_now)
        self._outage = OutageLog(log, "rollout view")
        self._pinned = pinned_versions(settings, default.version)
        self._contracts: dict[str, VersionSchemas] = {default.version: default}
        self._failures: dict[str, float] = {}  # version -> when its spec was last refused
        self._lock = threading.Lock()

    @property
    def default_version(self) -> str:
        """Return the version the settings name, which serves while no rollout is stored."""
        return self._reader.default_version

    @property
    def pinned(self) -> dict[str, str]:
        """Return version -> the SHA-256 MODEL_SHA256 pins its metadata.json to (the settings' one only)."""
        return dict(self._pinned)

    def pinned_sha256(self, version: str) -> str:
        """Return the SHA-256 that MODEL_SHA256 pins this version's metadata.json to ("" when not pinned)."""
        return self._pinned.get(version, "")

    def current(self) -> Rollout:
        """Return what serves, as last read (read now only by a process that has no reading yet)."""
        self._thread.ensure_started(self.check_now)
        return self._reader.current()

    def last_reading(self) -> Rollout | None:
        """Return what serves, as last read; None when never read and the database cannot answer now."""
        try:
            return self.current()
        except SQLAlchemyError:
            return None

    def accepting(self, key: str) -> VersionSchemas:
        """Return the version that accepts the submission of this id (or batch id), with its schemas.

        No key (a body without an id, refused whichever version checks it): the stable version's, so that a
        canary whose bundle broke cannot turn that 422 into a 503.
        """
        rollout = self.current()
        return self.contract(version_for(key, rollout) if key else rollout.stable_version)

    def contract(self, version: str) -> VersionSchemas:
        """Return a version's spec and schemas, loaded and checksum-verified once; 503 if it cannot load."""
        loaded = self._contracts.get(version)
        if loaded is not None:
            return loaded
        with self._lock:
            failed_at = self._failures.get(version)
            if failed_at is not None and time.monotonic() - failed_at < SPEC_RETRY_S:
                raise _unavailable(version)
            try:
                spec = load_feature_spec(
                    self._settings.artifacts_dir, version, pinned_sha256=self.pinned_sha256(version)
                )
            except (BundleError, OSError, ValueError, KeyError) as exc:
                self._failures[version] = time.monotonic()
                log.error("model bundle spec refused", extra={"model_version": version, "reason": str(exc)})
                raise _unavailable(version) from None
            loaded = VersionSchemas(version=version, spec=spec, schemas=request_schemas(spec))
            self._contracts[version] = loaded
            self._failures.pop(version, None)
        return loaded

    def check_now(self) -> None:
        """Read the rollout and load the schemas of the versions it names (so no request waits for them)."""
        try:
            rollout = self._reader.read_now()
        except SQLAlchemyError:
            self._outage.failed()
            return
        self._outage.answered()
        for version in (rollout.stable_version, rollout.canary_version):
            if version is not None:
                # Logged by contract(); requests routed to a version that cannot load get 503 until it does.
                with contextlib.suppress(ApiError):
                    self.contract(version)

    def stop(self) -> None:
        """Stop reading the rollout (for apps built in-process)."""
        self._thread.stop()


def _unavailable(version: str) -> ApiError:
    # The reason names files on the server: it goes to the log, not to the client.
    return ApiError(
        503,
        f"Model version {version!r} cannot validate submissions now: its bundle was refused (logged).",
        retry_after_s=30,
    )
