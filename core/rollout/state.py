"""Which model version serves an observation: the rollout state, its transitions, the per-id canary draw.

Pure: no I/O. core.storage.rollouts stores the state and its audit trail; the gateway and workers read it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from core.feature_spec import VERSION_RULE, is_version_name

# What an operator did, as the audit trail records it.
CANARY, PROMOTE, ROLLBACK, SET = "canary", "promote", "rollback", "set"
SHADOW, SHADOW_OFF = "shadow", "shadow_off"
ROLLOUT_ACTIONS = (CANARY, PROMOTE, ROLLBACK, SET, SHADOW, SHADOW_OFF)

BUCKETS = 100  # one bucket per percentage point of the canary share


class RolloutError(ValueError):
    """A rollout that cannot be, or a transition that does not apply to the current one."""


@dataclass(frozen=True)
class Rollout:
    """What serves: the stable version, and optionally a canary version taking canary_percent of the ids.

    A canary at 0 % is allowed (staged, no traffic yet); a share above 0 needs a canary version. A shadow
    version predicts what the others predict, beside them, and serves nothing: compared before a canary.
    """

    stable_version: str
    canary_version: str | None = None
    canary_percent: int = 0
    shadow_version: str | None = None

    def __post_init__(self) -> None:
        _check_version("stable version", self.stable_version)
        if self.canary_version is not None:
            _check_version("canary version", self.canary_version)
            if self.canary_version == self.stable_version:
                raise RolloutError(f"the canary version {self.canary_version!r} is already the stable one")
        # bool is an int: True must not pass for 1 %.
        if not isinstance(self.canary_percent, int) or isinstance(self.canary_percent, bool):
            raise RolloutError(f"canary percent {self.canary_percent!r} is not a whole number")
        if not 0 <= self.canary_percent <= 100:
            raise RolloutError(f"canary percent {self.canary_percent} is outside 0..100")
        if self.canary_percent > 0 and self.canary_version is None:
            raise RolloutError(f"a canary share of {self.canary_percent} % needs a canary version")
        if self.shadow_version is not None:
            _check_version("shadow version", self.shadow_version)
            if self.shadow_version in (self.stable_version, self.canary_version):
                raise RolloutError(f"the shadow version {self.shadow_version!r} already serves")


def _keeping_shadow(current: Rollout, changed: Rollout) -> Rollout:
    """Return changed with current's shadow, unless the shadow now serves (then it is dropped)."""
    if current.shadow_version in (None, changed.stable_version, changed.canary_version):
        return changed
    return replace(changed, shadow_version=current.shadow_version)


def _check_version(role: str, version: object) -> None:
    if not isinstance(version, str) or not is_version_name(version):
        raise RolloutError(f"{role} {str(version)[:80]!r} refused: a bundle version is {VERSION_RULE}")


def canary_bucket(observation_id: str) -> int:
    """Return the id's bucket, 0..99: the first 8 bytes of its SHA-256, big-endian, modulo 100.

    A hash, not a random draw: a replayed or redelivered id lands in the same bucket on every process.
    """
    digest = hashlib.sha256(observation_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def version_for(observation_id: str, rollout: Rollout) -> str:
    """Return the version that serves this id: the canary when its bucket is below the canary share.

    Raising the share only moves ids from the stable version to the canary, never back.
    """
    if rollout.canary_version is not None and canary_bucket(observation_id) < rollout.canary_percent:
        return rollout.canary_version
    return rollout.stable_version


def start_canary(current: Rollout | None, version: str, percent: int) -> Rollout:
    """Send percent of the ids to version; the running canary's own version may change its share.

    Refused with no stable version yet, or while another canary runs (promote or roll it back first).
    """
    if current is None:
        raise RolloutError("no stable version is set yet: set one before starting a canary")
    if current.canary_version not in (None, version):
        raise RolloutError(
            f"canary {current.canary_version!r} is running: promote it or roll it back before starting "
            f"{version!r}"
        )
    return _keeping_shadow(
        current,
        Rollout(stable_version=current.stable_version, canary_version=version, canary_percent=percent),
    )


def promote(current: Rollout | None) -> Rollout:
    """Make the canary the stable version, serving every id."""
    if current is None or current.canary_version is None:
        raise RolloutError("there is no canary to promote")
    return _keeping_shadow(current, Rollout(stable_version=current.canary_version))


def rollback(current: Rollout | None) -> Rollout:
    """Drop the canary: the stable version serves every id again."""
    if current is None or current.canary_version is None:
        stable = "nothing" if current is None else repr(current.stable_version)
        raise RolloutError(f"there is no canary to roll back: {stable} serves every id")
    return _keeping_shadow(current, Rollout(stable_version=current.stable_version))


def set_stable(current: Rollout | None, version: str) -> Rollout:
    """Serve every id with version: the first setting, or an override that drops any canary.

    The shadow stays, unless it is the version set.
    """
    changed = Rollout(stable_version=version)
    return changed if current is None else _keeping_shadow(current, changed)


def start_shadow(current: Rollout | None, version: str) -> Rollout:
    """Predict every observation with version too, beside the version that serves it; serve nothing with it.

    Refused for a version that serves (stable or canary); another shadow is replaced.
    """
    if current is None:
        raise RolloutError("no stable version is set yet: set one before starting a shadow")
    return replace(current, shadow_version=version)


def stop_shadow(current: Rollout | None) -> Rollout:
    """Stop the shadow predictions."""
    if current is None or current.shadow_version is None:
        raise RolloutError("there is no shadow version to stop")
    return replace(current, shadow_version=None)
