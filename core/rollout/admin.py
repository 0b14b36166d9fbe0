"""Change what serves (canary, promote, rollback, stable, shadow) after checking the bundle; list the bundles.

Shared by the admin API (gateway/rollout/routes.py) and its command line (python -m admin.rollout). A change
is one transaction: the rollout row is locked, the transition computed from it, the new state and its event
written. Gateways pick it up within ROLLOUT_CHECK_S, workers load a new bundle on first use: no restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from core.rollout import state as transitions
from core.rollout.catalog import BundleRefused, BundleSummary, bundle_versions, check_servable, summarize
from core.rollout.state import CANARY, PROMOTE, ROLLBACK, SET, SHADOW, SHADOW_OFF, Rollout
from core.storage.records import utc_now
from core.storage.rollouts import RolloutEvent, read_rollout, rollout_history, write_rollout

HISTORY_SHOWN = 20


class UnknownBundle(BundleRefused):
    """The version names no bundle folder in the artifacts directory."""


@dataclass(frozen=True)
class ModelCatalog:
    """The bundles on disk, what serves (stored, or the settings' version while nothing is), its history."""

    bundles: list[BundleSummary]
    rollout: Rollout
    stored: bool
    history: list[RolloutEvent]


@dataclass(frozen=True)
class RolloutPlace:
    """Where bundles live and which one the settings serve: what a rollout change is checked against."""

    artifacts_dir: Path
    default_version: str
    pinned: dict[str, str]

    def check(self, version: str) -> None:
        """Raise UnknownBundle or BundleRefused unless version's bundle may serve."""
        if version not in bundle_versions(self.artifacts_dir):
            raise UnknownBundle(version, "no bundle of that version in the artifacts directory")
        try:
            check_servable(self.artifacts_dir, version, pinned_sha256=self.pinned.get(version, ""))
        except BundleRefused as exc:
            # The files' paths are the server's business: the reason names them from the artifacts folder.
            reason = exc.reason.replace(f"{self.artifacts_dir}/", "")
            raise BundleRefused(version, reason) from None


def model_catalog(*, engine: Engine, place: RolloutPlace) -> ModelCatalog:
    """Return every bundle on disk (with why it may not serve, if so), the rollout and its recent history."""
    bundles = [
        summarize(place.artifacts_dir, version, pinned_sha256=place.pinned.get(version, ""))
        for version in bundle_versions(place.artifacts_dir)
    ]
    with engine.connect() as conn:
        stored = read_rollout(conn=conn)
        history = rollout_history(conn=conn, limit=HISTORY_SHOWN)
    rollout = stored if stored is not None else Rollout(stable_version=place.default_version)
    return ModelCatalog(bundles=bundles, rollout=rollout, stored=stored is not None, history=history)


def change_rollout(
    *,
    engine: Engine,
    place: RolloutPlace,
    action: str,
    version: str | None = None,
    percent: int = 0,
    by: str | None = None,
) -> Rollout:
    """Apply one change and record it; return what serves now.

    Raises UnknownBundle or BundleRefused for a bundle that may not serve (the one named, or the canary being
    promoted), and core.rollout.state.RolloutError for a change that does not apply to the current rollout.
    """
    if action in (CANARY, SET, SHADOW):
        if version is None:
            raise transitions.RolloutError(f"{action} needs a version")
        place.check(version)
    with engine.begin() as conn:
        current = read_rollout(conn=conn, for_update=True) or Rollout(stable_version=place.default_version)
        if action == CANARY:
            assert version is not None
            changed = transitions.start_canary(current, version, percent)
        elif action == PROMOTE:
            changed = transitions.promote(current)
            place.check(changed.stable_version)  # checked again: its files may have changed since the canary
        elif action == ROLLBACK:
            changed = transitions.rollback(current)
        elif action == SET:
            assert version is not None
            changed = transitions.set_stable(current, version)
        elif action == SHADOW:
            assert version is not None
            changed = transitions.start_shadow(current, version)
        elif action == SHADOW_OFF:
            changed = transitions.stop_shadow(current)
        else:
            raise transitions.RolloutError(f"unknown rollout action {action!r}")
        write_rollout(conn=conn, rollout=changed, action=action, by=by, now=utc_now())
    return changed
