"""Build the Celery application from the settings: broker, late acks, prefetch for micro-batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery

from core.redis_transport import transport_for
from core.settings import Settings, get_settings

PREDICT_TASK = "worker.tasks.predict_batch"
REDRIVE_TASK = "worker.periodic_tasks.redrive_stale"
PURGE_TASK = "worker.periodic_tasks.purge_expired"
MONITOR_TASK = "worker.periodic_tasks.monitor_model"
# What a bulk lane's worker prefetches (`--prefetch-multiplier`, per pool process): 16 messages of
# BULK_ROWS_PER_MESSAGE rows, ~8,000 rows or about a second of one node's bulk work, instead of the
# interactive lane's 2 x BATCH_SIZE messages. Bulk nodes share an upload evenly, and what a node holds is
# what a redelivery after its death repeats.
BULK_PREFETCH_MULTIPLIER = 16


def create_celery_app(settings: Settings | None = None, *, include: Sequence[str] = ()) -> Celery:
    """Return a Celery app wired to the configured broker; include names the task modules a worker imports."""
    settings = settings or get_settings()
    app = Celery("predictions", broker=settings.broker_url, include=list(include), set_as_current=True)
    app.conf.update(
        task_default_queue=settings.queue_name,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A batch is acked after its results are committed; a killed worker's batch is redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Prefetch must exceed the batch size, or a batch could never fill. The bulk lane's workers run with a
        # lower one of their own (BULK_PREFETCH_MULTIPLIER, on their command line).
        worker_prefetch_multiplier=max(2 * settings.batch_size, 4),
        broker_transport_options=_transport_options(settings),
        # Redis: kombu's transport, one client object per connection pool (core/redis_transport.py).
        broker_transport=transport_for(settings.broker_url),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        **_rabbitmq_queues(settings),
        # The periodic tasks (redrive, purge, monitor) have a queue and a process of their own (a worker node
        # of worker.periodic_main consuming only that queue, beat inside): a backlog of predictions never
        # holds them back, and workers never spend a pool process on them.
        task_routes={
            REDRIVE_TASK: {"queue": settings.redrive_queue},
            PURGE_TASK: {"queue": settings.redrive_queue},
            MONITOR_TASK: {"queue": settings.redrive_queue},
        },
        beat_schedule={
            "redrive-stale-observations": {
                "task": REDRIVE_TASK,
                "schedule": float(settings.redrive_interval_s),
                "options": {"expires": float(settings.redrive_interval_s)},
            },
            "purge-expired-rows": {
                "task": PURGE_TASK,
                "schedule": float(settings.retention_interval_s),
                "options": {"expires": float(settings.retention_interval_s)},
            },
            "monitor-model-drift": {
                "task": MONITOR_TASK,
                "schedule": float(settings.monitor_interval_s),
                "options": {"expires": float(settings.monitor_interval_s)},
            },
        },
    )
    return app


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_is_amqp:
        # Each publish waits for RabbitMQ's confirm: a message the broker refused or lost before storing it
        # raises, so the request is answered knowing whether its row was handed over.
        return {"confirm_publish": True}
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        # A broker that stops answering fails a publish in seconds instead of hanging a request.
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
    }


def _rabbitmq_queues(settings: Settings) -> dict[str, Any]:
    """On RabbitMQ, declare every queue as a quorum queue: replicated, durable, and what the Celery and
    RabbitMQ docs advise for work that must not be lost (classic mirrored queues are gone in RabbitMQ 4).
    Celery sees the quorum type and uses per-consumer prefetch, which quorum queues require. The queues are
    not listed in task_queues: a worker started without --queues would then consume the redrive's too."""
    if not settings.broker_is_amqp:
        return {}
    return {
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        # Celery binds quorum queues' native delayed delivery to topic exchanges only (no countdown or ETA is
        # used here; a direct exchange would only log a warning at every start).
        "task_default_exchange_type": "topic",
    }
