"""Kombu's Redis transport, with one client object per connection pool instead of one per command.

Kombu's Redis channel builds a new `redis.Redis` for every publish, ack and queue query
(`Channel.conn_or_acquire`), all on the channel's one connection pool. Building it (redis-py fills its table
of response callbacks each time) was a third of a publish's CPU and a fifth of a worker main process's.
A Redis client is a thin, thread-safe handle on its pool, so one per pool does the same work. When kombu
drops the pool (in a forked child, or when a channel's first ping fails), the next command gets a client on
the new one.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A Redis channel that keeps the synchronous client of its current pool."""

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        client = self.__dict__.get("_pool_client")
        if client is None or client.connection_pool is not pool:
            client = self.__dict__["_pool_client"] = super()._create_client()  # type: ignore[no-untyped-call]
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel


TRANSPORT_PATH = f"{__name__}:Transport"


def transport_for(broker_url: str) -> str | None:
    """Return what Celery's broker_transport names for this broker: this transport for redis://, else None.

    None leaves kombu to choose by the URL's scheme: rediss:// sets up TLS only under its own name, and
    amqp:// or memory:// are other transports altogether.
    """
    return TRANSPORT_PATH if broker_url.startswith("redis://") else None
