"""Hand the queued rows of a version that cannot serve to another version, or fail them saying why.

For the rows a canary accepted before its bundle broke (or was withdrawn): they wait for that version, since a
row is only ever predicted by the version whose schema accepted it. An operator who will not restore the
bundle moves them: each stored observation is validated again by the new version's schema; the rows it
accepts are the new version's (predicted when the redrive next publishes them), the others fail with the
reason. Chunks of REASSIGN_CHUNK rows, one transaction each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from core.feature_spec import load_feature_spec
from core.rollout.admin import RolloutPlace
from core.rollout.serving_versions import serving_rollout
from core.rollout.state import RolloutError
from core.storage.observations import mark_failed, queued_accepted_by, reassign_queued
from core.storage.records import utc_now
from core.storage.rollouts import rollout_history
from worker.schemas import request_schemas

log = logging.getLogger(__name__)
REASSIGN_CHUNK = 1_000
REFUSED_BY = (
    "Accepted by model version {old}, which cannot serve; version {new}'s schema refuses it: {errors}"
)


@dataclass(frozen=True)
class Reassignment:
    """What a reassignment did: the rows moved to the new version and those failed."""

    from_version: str
    to_version: str
    moved: int
    failed: int


def reassign_rows(
    *,
    engine: Engine,
    place: RolloutPlace,
    from_version: str,
    to_version: str | None = None,
    settle_s: float = 0.0,
) -> Reassignment:
    """Move the queued rows from_version accepted to to_version (default: the stable version).

    settle_s: how long after the last rollout change gateways may still accept rows for from_version
    (ROLLOUT_CHECK_S and a margin); within it the reassignment is refused, as rows could arrive after it.
    Raises RolloutError while from_version serves (stable or canary: roll it back first), within settle_s of
    a change, or when both versions are the same; UnknownBundle or BundleRefused when to_version's bundle may
    not serve; BundleError or ValueError when its feature spec cannot be read.
    """
    rollout = serving_rollout(engine=engine, default_version=place.default_version)
    with engine.connect() as conn:
        last = rollout_history(conn=conn, limit=1)
    target = to_version or rollout.stable_version
    if from_version in (rollout.stable_version, rollout.canary_version):
        raise RolloutError(f"{from_version!r} serves: roll it back or set another stable version first")
    since = (utc_now() - last[0].at).total_seconds() if last else float("inf")
    if since < settle_s:
        raise RolloutError(
            f"the rollout changed {since:.1f} s ago: gateways may still accept rows for {from_version!r}; "
            f"run this again in {settle_s - since:.1f} s"
        )
    if target == from_version:
        raise RolloutError(f"the rows of {from_version!r} cannot be reassigned to itself")
    place.check(target)
    spec = load_feature_spec(place.artifacts_dir, target, pinned_sha256=place.pinned.get(target, ""))
    schema = request_schemas(spec).observation
    moved = failed = 0
    while True:
        with engine.begin() as conn:
            rows = queued_accepted_by(conn=conn, version=from_version, limit=REASSIGN_CHUNK)
            if not rows:
                break
            errors = {row.id: schema.validate(row.observation) for row in rows}
            accepted = [observation_id for observation_id, found in errors.items() if not found]
            moved += reassign_queued(
                conn=conn, observation_ids=accepted, from_version=from_version, to_version=target
            )
            for observation_id, found in errors.items():
                if found:
                    reason = REFUSED_BY.format(old=from_version, new=target, errors=found)
                    failed += len(
                        mark_failed(conn=conn, observation_ids=[observation_id], reason=reason, now=utc_now())
                    )
    log.warning(
        "queued rows reassigned",
        extra={"from_version": from_version, "to_version": target, "moved": moved, "failed": failed},
    )
    return Reassignment(from_version=from_version, to_version=target, moved=moved, failed=failed)
