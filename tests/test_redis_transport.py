"""On Redis, Celery publishes and acks through one client per connection pool, on the system Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

from core.celery_app import create_celery_app
from core.publishing import publish_message
from core.redis_transport import Transport
from core.settings import Settings
from devstack.backends import SYSTEM_REDIS_DB

BROKER_URL = f"redis://127.0.0.1:6379/{SYSTEM_REDIS_DB}"


@pytest.fixture
def queue_name() -> Iterator[str]:
    name = f"transport-{uuid.uuid4().hex[:8]}"
    yield name
    redis.Redis.from_url(BROKER_URL).delete(name)


@pytest.fixture
def app(queue_name: str) -> Iterator[Celery]:
    celery = create_celery_app(Settings(broker_url=BROKER_URL, queue_name=queue_name))
    yield celery
    celery.close()


def waiting(queue_name: str) -> int:
    return int(redis.Redis.from_url(BROKER_URL).llen(queue_name))


def test_a_redis_broker_is_reached_through_the_services_transport(app: Celery) -> None:
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
        assert connection.transport.driver_type == "redis", "Celery still treats it as Redis"


@pytest.mark.parametrize(
    ("broker_url", "kombu_transport"),
    [
        ("rediss://redis.internal:6380/0", "rediss"),
        ("memory://", "memory"),
        ("amqp://guest:guest@rabbitmq:5672//", "amqp"),
    ],
)
def test_other_schemes_keep_the_transport_kombu_chooses(broker_url: str, kombu_transport: str) -> None:
    celery = create_celery_app(Settings(broker_url=broker_url, queue_name="stops"))
    try:
        assert celery.conf.broker_transport is None
        assert not issubclass(celery.connection_for_write().get_transport_cls(), Transport)
        assert celery.connection_for_write().transport_cls == kombu_transport
    finally:
        celery.close()


def test_publishes_build_one_client_not_one_each(
    app: Celery, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    build: Callable[..., object] = kombu_redis.Channel._create_client

    def counted(channel: kombu_redis.Channel, asynchronous: bool = False) -> object:
        client = build(channel, asynchronous)
        built.append(client)
        return client

    monkeypatch.setattr(kombu_redis.Channel, "_create_client", counted)
    for n in range(20):
        publish_message(app, items=[{"id": f"stop-{n}", "observation": {}}])
    assert waiting(queue_name) == 20
    # None at all when kombu's process-wide connection pool (shared by apps on the same URL) already holds a
    # channel whose client was built by an earlier test; kombu's own transport builds one per publish.
    assert len(built) <= 2, f"{len(built)} Redis clients built for 20 publishes"


def test_a_pool_kombu_replaces_gets_a_client_of_its_own(app: Celery, queue_name: str) -> None:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        before = channel._create_client()
        channel._after_fork()  # what kombu does in a forked child: the pool is dropped, built again on use
        after = channel._create_client()
        assert after is not before
        assert after.connection_pool is channel.pool
        assert after.lpush(queue_name, b"{}") == 1
