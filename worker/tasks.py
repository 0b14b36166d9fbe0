"""The prediction lanes' task: micro-batched prediction (the periodic tasks are in periodic_tasks.py)."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from celery import current_app, shared_task
from celery.signals import worker_init, worker_process_init
from celery_batches import SimpleRequest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.bulk_feeder import feed_bulk_lane
from core.celery_app import PREDICT_TASK
from core.feature_spec import BundleError
from core.publishing import message_contents
from core.result_notices import FinishedNotices
from core.rollout.serving_versions import RolloutReader, pinned_versions, serving_rollout, settings_version
from core.rollout.state import Rollout
from core.storage.batches import read_batch_slices
from core.storage.engine import make_engine
from core.storage.records import BatchSlice, QueuedObservation
from worker.bundle import limit_native_threads
from worker.bundle_shelf import BundleShelf
from worker.lost_batches import IsolatingBatches, times_lost
from worker.metrics import serve_worker_metrics
from worker.predicting import predict_and_store
from worker.process import process_engine, settings

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def default_version() -> str:
    """Return the version the settings name (MODEL_VERSION or artifacts/current), read once per worker."""
    return settings_version(settings)


@lru_cache(maxsize=1)
def process_shelf() -> BundleShelf:
    """Return this process's bundles: each version loaded and checksum-verified on first use, then kept.

    Built in the main process before the pool forks (worker_init): what it holds then is shared.
    """
    pinned = pinned_versions(settings, default_version())
    return BundleShelf(settings.artifacts_dir, pinned=pinned, backoff_s=settings.bundle_retry_s)


@lru_cache(maxsize=1)
def process_rollout() -> RolloutReader:
    """Return this process's reading of the rollout: the stable and shadow versions (re-read every few s)."""
    return RolloutReader(process_engine(), default_version(), interval_s=settings.rollout_check_s)


@lru_cache(maxsize=1)
def finished_notices() -> FinishedNotices:
    """Return this process's publisher of finished-observation notices (for the gateways' long-polls)."""
    return FinishedNotices(settings.shared_redis_url, settings.queue_name)


@worker_init.connect
def _load_model_at_worker_start(**_: Any) -> None:
    # Eager, in the main process before the pool forks: every pool process inherits the loaded
    # pipeline (copy-on-write), the first batch does not pay for it, and a bad bundle stops the worker.
    limit_native_threads(settings.model_threads)
    try:
        serving = _rollout_at_start()
        process_shelf().get(serving.stable_version)
    except BundleError:
        log.critical("model bundle refused; worker stopping", exc_info=True)
        raise SystemExit(1) from None  # Celery's signal dispatch swallows ordinary exceptions
    for other in (serving.canary_version, serving.shadow_version):
        # Shared too when it loads; when it does not, a canary's rows wait for the redrive, a shadow is
        # skipped, and the stable serves.
        if other is not None:
            with contextlib.suppress(BundleError):
                process_shelf().get(other)
    if settings.worker_metrics_port:
        serve_worker_metrics(settings.worker_metrics_port, settings.prometheus_multiproc_dir)
    # What is loaded so far (libraries, pipeline) is never collected: the pool processes' garbage collector
    # leaves those pages alone, so they stay shared with this process instead of being copied on write.
    gc.freeze()


def _rollout_at_start() -> Rollout:
    """Read what serves with an engine of its own (the pool processes must not inherit a connection)."""
    engine = make_engine(settings.database_url)
    try:
        return serving_rollout(engine=engine, default_version=default_version())
    except SQLAlchemyError:
        log.warning("rollout unreadable at worker start; loading the settings' version", exc_info=True)
        return Rollout(stable_version=default_version())
    finally:
        engine.dispose()


@worker_process_init.connect
def _limit_threads_in_pool_process(**_: Any) -> None:
    limit_native_threads(settings.model_threads)


def _inline_observations(request: SimpleRequest, items: list[Any]) -> Iterator[QueuedObservation]:
    for item in items:
        if (
            isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and isinstance(item.get("observation"), dict)
        ):
            version = item.get("version")
            yield QueuedObservation(
                id=item["id"],
                observation=item["observation"],
                version=version if isinstance(version, str) else None,
            )
        else:
            # Not from our publishers; the row it meant, if any, is still queued for the redrive.
            log.error("malformed message item skipped", extra={"task_id": request.id})


@dataclass(frozen=True)
class BufferedWork:
    """What buffered messages hold: the observations they carry, and their batch slices' queued rows."""

    carried: list[QueuedObservation]
    from_slices: list[QueuedObservation]
    batch_ids: set[str]

    @property
    def observations(self) -> list[QueuedObservation]:
        """Return every observation, carried ones first."""
        return [*self.carried, *self.from_slices]


def observations_of(requests: list[SimpleRequest], engine: Engine) -> BufferedWork:
    """Return the observations the buffered messages carry, and the queued ones their batch slices refer to.

    A malformed item is logged and skipped.
    """
    carried: list[QueuedObservation] = []
    slices: list[BatchSlice] = []
    for request in requests:
        contents = message_contents(request.kwargs)
        carried += _inline_observations(request, contents.items)
        slices += contents.slices
    from_slices: list[QueuedObservation] = []
    if slices:
        with engine.connect() as conn:
            from_slices = read_batch_slices(conn=conn, slices=slices)
    return BufferedWork(carried, from_slices, {batch_slice.batch_id for batch_slice in slices})


@shared_task(
    base=IsolatingBatches,
    name=PREDICT_TASK,
    flush_every=settings.batch_size,
    flush_interval=settings.batch_flush_ms / 1000,
    hold_for_more_s=settings.batch_hold_ms / 1000,
    acks_late=True,
    reject_on_worker_lost=True,
)
def predict_batch(requests: list[SimpleRequest]) -> int:
    """Predict the observations of the buffered messages, one predict_proba per version; return rows written.

    An observation that went down with its pool process MAX_ATTEMPTS times is failed, not predicted again.
    """
    killers = [r for r in requests if times_lost(r.kwargs) >= settings.max_attempts]
    others = [r for r in requests if times_lost(r.kwargs) < settings.max_attempts]
    work = observations_of(others, process_engine())
    lost = observations_of(killers, process_engine())
    # Each row is predicted by the version that accepted it; one that names none, by the stable one now; and
    # by the shadow version, if one runs. The rollout is read again every ROLLOUT_CHECK_S, not per batch.
    rollout = process_rollout().current()
    outcome = predict_and_store(
        bundle_for=process_shelf().get,
        stable_version=rollout.stable_version,
        shadow_version=rollout.shadow_version,
        engine=process_engine(),
        observations=work.observations,
        abandoned=[o.id for o in lost.observations],
        max_attempts=settings.max_attempts,
    )
    carried = {o.id for o in (*work.carried, *lost.carried)}
    fed = work.batch_ids | lost.batch_ids
    # A row a message carried is announced by its id; the rows of slices, by their batch.
    finished_notices().announce([i for i in outcome.finished if i in carried], batch_ids=fed)
    if fed:
        # Bulk work done: the bulk lane has room for the next slices, whoever's turn they are.
        feed_bulk_lane(engine=process_engine(), celery=current_app, settings=settings)
    return outcome.predicted
