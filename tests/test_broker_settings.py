"""Which broker carries what: Redis or RabbitMQ for the work, Redis for notices and shared counters."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.celery_app import REDRIVE_TASK, create_celery_app
from core.settings import Settings

RABBITMQ = "amqp://guest:guest@rabbitmq:5672//"


def test_on_redis_the_broker_carries_notices_and_counters_too() -> None:
    settings = Settings(broker_url="redis://redis:6379/0")
    assert not settings.broker_is_amqp
    assert settings.shared_redis_url == "redis://redis:6379/0"


def test_on_rabbitmq_notices_and_counters_go_to_redis_url() -> None:
    assert Settings(broker_url=RABBITMQ).shared_redis_url is None
    settings = Settings(broker_url=RABBITMQ, redis_url="redis://redis:6379/1")
    assert settings.broker_is_amqp
    assert settings.shared_redis_url == "redis://redis:6379/1"


def test_production_on_rabbitmq_without_redis_is_refused_by_name() -> None:
    production: dict[str, Any] = {
        "app_env": "production",
        "database_url": "postgresql+psycopg://u:p@db/predictions",
        "broker_url": RABBITMQ,
    }
    with pytest.raises(ValidationError, match="needs REDIS_URL"):
        Settings(**production)
    Settings(**production, redis_url="redis://redis:6379/0")  # accepted


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("redis_url", "amqp://rabbitmq//", "REDIS_URL must be empty or a redis://"),
        ("broker_management_url", "rabbitmq:15672", "BROKER_MANAGEMENT_URL must be empty or"),
    ],
)
def test_urls_of_the_wrong_kind_are_refused_naming_the_setting(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options: dict[str, Any] = {field: value}
        Settings(**options)


def test_on_rabbitmq_every_queue_is_a_quorum_queue_and_publishes_are_confirmed() -> None:
    app = create_celery_app(Settings(broker_url=RABBITMQ, queue_name="stops"))
    try:
        assert app.conf.broker_transport_options == {"confirm_publish": True}
        assert app.amqp.queues["stops"].queue_arguments == {"x-queue-type": "quorum"}
        # The redrive's queue is declared on first use, as a quorum queue too, and no worker started without
        # --queues consumes it: only the predictions queue is listed.
        assert list(app.amqp.queues) == ["stops"]
        redrive = app.amqp.router.route({}, REDRIVE_TASK)["queue"]
        assert redrive.name == "stops.redrive"
        assert redrive.queue_arguments == {"x-queue-type": "quorum"}
    finally:
        app.close()


def test_on_redis_queues_stay_plain_lists_with_a_visibility_timeout() -> None:
    app = create_celery_app(Settings(broker_url="redis://redis:6379/0", visibility_timeout_s=120))
    try:
        assert app.conf.broker_transport_options["visibility_timeout"] == 120
        assert "confirm_publish" not in app.conf.broker_transport_options
        assert app.amqp.queues["predictions"].queue_arguments is None
    finally:
        app.close()
