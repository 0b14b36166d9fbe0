"""What serves now, as gateways and workers read it: the stored rollout, else the bundle the settings name."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.feature_spec import current_version
from core.rollout.state import Rollout
from core.settings import Settings
from core.storage.rollouts import read_rollout

log = logging.getLogger(__name__)


def settings_version(settings: Settings) -> str:
    """Return the version the settings serve: MODEL_VERSION, else the one artifacts/current names."""
    return settings.model_version or current_version(settings.artifacts_dir)


def pinned_versions(settings: Settings, default_version: str) -> dict[str, str]:
    """Return version -> pinned SHA-256 of its metadata.json: MODEL_SHA256 pins the settings' version only."""
    return {default_version: settings.model_sha256} if settings.model_sha256 else {}


def serving_rollout(*, engine: Engine, default_version: str) -> Rollout:
    """Return the stored rollout; while none is stored, the settings' version serves every id."""
    with engine.connect() as conn:
        stored = read_rollout(conn=conn)
    return stored if stored is not None else Rollout(stable_version=default_version)


class RolloutReader:
    """Hold the last rollout read, and read it again when it is older than interval_s.

    A database that cannot answer keeps the last reading (a process that never read one raises the
    database's error): a rollout changes seldom, and every submission needs the database anyway.
    """

    def __init__(
        self,
        engine: Engine,
        default_version: str,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default_version = default_version
        self._engine = engine
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._rollout: Rollout | None = None
        self._read_at = float("-inf")

    def current(self) -> Rollout:
        """Return what serves, read again first if the last reading is over interval_s old."""
        rollout = self._rollout
        if rollout is not None and self._clock() - self._read_at < self._interval_s:
            return rollout
        return self.read_now()

    def read_now(self) -> Rollout:
        """Read the rollout from the database now; on a database error keep the last one, if any."""
        try:
            rollout = serving_rollout(engine=self._engine, default_version=self.default_version)
        except SQLAlchemyError:
            if self._rollout is None:
                raise
            log.warning("rollout: database unreachable; keeping the last reading", exc_info=True)
            return self._rollout
        with self._lock:
            if rollout != self._rollout:
                log.info(
                    "rollout read",
                    extra={
                        "stable_version": rollout.stable_version,
                        "canary_version": rollout.canary_version,
                        "canary_percent": rollout.canary_percent,
                    },
                )
            self._rollout, self._read_at = rollout, self._clock()
        return rollout
