"""Predict a micro-batch, one predict_proba per version, and store it in one write; then any shadow's."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.feature_spec import BundleError
from core.storage.observations import mark_failed, record_failed_attempts, save_predictions, still_queued
from core.storage.records import PredictionResult, QueuedObservation, utc_now
from core.storage.shadow import save_shadow_predictions
from worker.bundle import ModelBundle
from worker.metrics import record_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch did: rows written, the ids marked failed, and every id it finished or found finished."""

    predicted: int
    failed: list[str]
    finished: list[str]


def _results(
    bundle: ModelBundle, observations: Sequence[QueuedObservation], *, served: bool = True
) -> list[PredictionResult]:
    started = time.perf_counter()
    probas = bundle.predict_observations([o.observation for o in observations])
    seconds = time.perf_counter() - started
    results = [
        PredictionResult(id=o.id, proba=float(p), prediction=bool(p >= bundle.threshold))
        for o, p in zip(observations, probas, strict=True)
    ]
    if not served:
        return results  # a shadow's: the metrics count what the service answered
    record_batch(
        model_version=bundle.version,
        probas=[r.proba for r in results],
        positives=sum(r.prediction for r in results),
        seconds=seconds,
    )
    return results


def predict_observations(
    bundle: ModelBundle, observations: Sequence[QueuedObservation]
) -> tuple[list[PredictionResult], dict[str, str]]:
    """Return results, and failure reasons by id; one bad row never fails its neighbours."""
    try:
        return _results(bundle, observations), {}
    except Exception:
        log.warning("batch predict failed; retrying row by row", extra={"rows": len(observations)})
    results: list[PredictionResult] = []
    failures: dict[str, str] = {}
    for observation in observations:
        try:
            results.extend(_results(bundle, [observation]))
        except Exception as exc:
            log.warning(
                "observation cannot be scored", exc_info=True, extra={"observation_id": observation.id}
            )
            failures[observation.id] = f"The model could not score this observation ({type(exc).__name__})."
    return results, failures


def unique_by_id(observations: Sequence[QueuedObservation]) -> list[QueuedObservation]:
    """Drop repeated ids (a message delivered twice into one batch); keep the first."""
    seen: dict[str, QueuedObservation] = {}
    for observation in observations:
        seen.setdefault(observation.id, observation)
    return list(seen.values())


KILLED_ITS_WORKER = "Its worker process died predicting it, {times} times; it is not tried again."


def by_version(
    observations: Sequence[QueuedObservation], stable_version: str
) -> dict[str, list[QueuedObservation]]:
    """Group observations by the version to predict them: the one that accepted them, else the stable one."""
    groups: dict[str, list[QueuedObservation]] = {}
    for observation in observations:
        groups.setdefault(observation.version or stable_version, []).append(observation)
    return groups


def predict_and_store(
    *,
    bundle_for: Callable[[str], ModelBundle],
    stable_version: str,
    engine: Engine,
    observations: Sequence[QueuedObservation],
    max_attempts: int,
    abandoned: Sequence[str] = (),
    shadow_version: str | None = None,
) -> BatchOutcome:
    """Predict a batch, each row with the bundle of its version, and write it in one transaction.

    Rows that fail are retried by the redrive until max_attempts. Rows whose version cannot load (bundle_for
    raises BundleError) are left queued, unattempted, for the redrive: a bundle put right serves them then.
    abandoned: ids whose prediction killed the worker's process max_attempts times, marked failed unpredicted.
    shadow_version: predicts the rows predicted here too, after their write and in a transaction of its own
    (see predict_shadow): whatever it does, the served predictions are stored first.
    """
    batch = unique_by_id(observations)
    predicted: dict[str, list[PredictionResult]] = {}
    failures: dict[str, str] = {}
    waiting: list[QueuedObservation] = []
    for version, rows in by_version(batch, stable_version).items():
        try:
            bundle = bundle_for(version)
        except BundleError as exc:
            log.error(
                "model version unavailable; its rows stay queued for the redrive",
                extra={"model_version": version, "rows": len(rows), "reason": str(exc)},
            )
            waiting += rows
            continue
        results, version_failures = predict_observations(bundle, rows)
        predicted[bundle.version] = results  # the version asked for: the shelf refuses any other
        failures.update(version_failures)
    killed = KILLED_ITS_WORKER.format(times=max_attempts)
    now = utc_now()
    failed: list[str] = []
    written = 0
    refused: set[str] = set()
    with engine.begin() as conn:
        for version, results in predicted.items():
            written += save_predictions(conn=conn, results=results, model_version=version, now=now)
        if written < sum(len(results) for results in predicted.values()):
            # Rare: rows finished before (first write wins), or rows another version accepted (a stale message
            # after a reassign). Those still queued are not finished: nobody is told they are.
            refused = still_queued(conn=conn, observation_ids=[r.id for rs in predicted.values() for r in rs])
        failed += mark_failed(conn=conn, observation_ids=abandoned, reason=killed, now=now)
        for observation_id, reason in failures.items():
            failed += record_failed_attempts(
                conn=conn, observation_ids=[observation_id], reason=reason, max_attempts=max_attempts, now=now
            )
    reasons = {**failures, **dict.fromkeys(abandoned, killed)}
    for observation_id in failed:
        log.error(
            "observation failed", extra={"observation_id": observation_id, "reason": reasons[observation_id]}
        )
    log.info(
        "batch predicted",
        extra={
            "rows": len(batch),
            "written": written,
            "failures": len(failures) + len(abandoned),
            "left_queued": len(waiting),
            "model_versions": sorted(predicted),
        },
    )
    if shadow_version is not None:
        predict_shadow(
            bundle_for=bundle_for,
            shadow_version=shadow_version,
            batch=batch,
            predicted=predicted,
            engine=engine,
        )
    unfinished = failures.keys() | {o.id for o in waiting} | refused
    finished = [o.id for o in batch if o.id not in unfinished] + failed
    return BatchOutcome(predicted=written, failed=failed, finished=finished)


def predict_shadow(
    *,
    bundle_for: Callable[[str], ModelBundle],
    shadow_version: str,
    batch: Sequence[QueuedObservation],
    predicted: dict[str, list[PredictionResult]],
    engine: Engine,
) -> int:
    """Predict with the shadow version the rows another version predicted; store them; return how many.

    Never in the way of serving: it runs after the served write, in one predict_proba call with no row-by-row
    retry; a shadow that cannot load, or that cannot score the batch (a spec that does not read these rows),
    is logged and skipped.
    """
    served = {r.id for version, results in predicted.items() if version != shadow_version for r in results}
    rows = [o for o in batch if o.id in served]
    if not rows:
        return 0
    try:
        bundle = bundle_for(shadow_version)
        results = _results(bundle, rows, served=False)
    except Exception as exc:  # a shadow's failure, whatever it is, is the shadow's: logged, never raised
        log.warning(
            "shadow version skipped for this batch",
            extra={
                "model_version": shadow_version,
                "rows": len(rows),
                "reason": f"{type(exc).__name__}: {exc}",
            },
        )
        return 0
    try:
        with engine.begin() as conn:
            save_shadow_predictions(conn=conn, results=results, model_version=shadow_version, now=utc_now())
    except SQLAlchemyError:
        log.warning("shadow predictions not stored", extra={"model_version": shadow_version}, exc_info=True)
        return 0
    return len(results)
