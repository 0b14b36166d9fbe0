"""Start the real service for integration tests: database, broker, gateway, Celery workers and beat."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import redis
import requests
from sqlalchemy.engine import Engine

from core.celery_app import MONITOR_TASK, create_celery_app
from core.publishing import PUBLISH_ERRORS, held_messages, message_contents, waiting_messages
from core.settings import PROJECT_ROOT, Settings, child_environment
from core.storage.batches import read_batch_slices
from core.storage.engine import make_engine
from core.storage.migrate import upgrade_to_head
from core.storage.monitoring import latest_snapshot
from devstack.backends import Backend
from devstack.embedded_redis import free_port
from devstack.process_groups import stop_process_groups
from devstack.queue_contents import waiting_bodies
from devstack.run_local import WORKER_LANES, fresh_metrics_dir, service_commands

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float = 30, interval: float = 0.05) -> T:
    """Call check until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


class ServiceStack:
    """The running service: gateway, worker and redrive processes against one backend.

    The worker node is two processes, one per lane: "worker" (interactive) and "worker-bulk". Starting or
    stopping "worker" starts or stops both; "worker-bulk" names the bulk lane's alone.
    """

    bulk_max_items = 5_000

    def __init__(self, backend: Backend, work_dir: Path) -> None:
        self.backend = backend
        self.work_dir = work_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = child_environment(
            {
                "DATABASE_URL": backend.database_url,
                "BROKER_URL": backend.broker_url,
                "QUEUE_NAME": backend.queue_name,
                "REDRIVE_AFTER_S": "3",
                "REDRIVE_INTERVAL_S": "1",
                "REDRIVE_BACKLOG_CAP_S": "6",
                # Scenarios make rows look days old; the backlog bounds are tested on their own.
                "BACKLOG_MAX_AGE_S": str(30 * 86_400),
                "BATCH_SIZE": "50",
                "BATCH_FLUSH_MS": "5",
                "MAX_BODY_BYTES": "65536",
                "MAX_ATTEMPTS": "2",
                "MAX_WAIT_S": "5",
                "BULK_MAX_ITEMS": str(self.bulk_max_items),
                "BULK_CHUNK_ROWS": "2000",
                "BULK_ROWS_PER_MESSAGE": "500",
                "LOG_LEVEL": "INFO",
                "PROMETHEUS_MULTIPROC_DIR": str(fresh_metrics_dir(work_dir / "prometheus")),
                "REDIS_URL": backend.redis_url,
                "BROKER_MANAGEMENT_URL": backend.management_url,
            }
        )
        self.commands = service_commands("127.0.0.1", self.port, work_dir, self.settings())
        # Node names of their own, so a ping is answered by this stack's workers and no others.
        self.node_name = f"{backend.queue_name}@{socket.gethostname()}"
        self.bulk_node_name = f"bulk-{backend.queue_name}@{socket.gethostname()}"
        self.commands["worker"] += ["--hostname", self.node_name]
        self.commands["worker-bulk"] += ["--hostname", self.bulk_node_name]
        # Each lane's node serves its own metrics, gathered from a folder of its own.
        self.worker_metrics_url = f"http://127.0.0.1:{(metrics_port := free_port())}/metrics"
        self.bulk_worker_metrics_url = f"http://127.0.0.1:{(bulk_metrics_port := free_port())}/metrics"
        self.process_env = {
            "worker": {
                "WORKER_METRICS_PORT": str(metrics_port),
                "PROMETHEUS_MULTIPROC_DIR": str(fresh_metrics_dir(work_dir / "prometheus-worker")),
            },
            "worker-bulk": {
                "WORKER_METRICS_PORT": str(bulk_metrics_port),
                "PROMETHEUS_MULTIPROC_DIR": str(fresh_metrics_dir(work_dir / "prometheus-worker-bulk")),
            },
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        upgrade_to_head(backend.database_url)
        self.engine: Engine = make_engine(backend.database_url)
        # The broker as a client sees it (queue lengths, held messages), and its Redis when it is Redis.
        self.celery = create_celery_app(self.settings())
        self.broker_redis = (
            None if self.settings().broker_is_amqp else redis.Redis.from_url(backend.broker_url)
        )

    def start(self, name: str) -> None:
        """Start one of gateway, worker (the lanes not running), worker-bulk, redrive (output to a log file
        in the work dir)."""
        if name == "worker":
            for lane in WORKER_LANES:
                if lane not in self.processes:  # one lane may have been stopped alone
                    self._start_process(lane)
        else:
            self._start_process(name)

    def _start_process(self, name: str) -> None:
        with (self.work_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                self.commands[name],
                env={**self.env, **self.process_env.get(name, {})},
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, *names: str, kill: bool = False) -> None:
        """Stop these processes (worker: both lanes') and all their children, together: gracefully, or with
        SIGKILL as a crash would."""
        each = [lane for name in names for lane in (WORKER_LANES if name == "worker" else (name,))]
        stop_process_groups([self.processes.pop(name) for name in each if name in self.processes], kill=kill)

    def restart_gateway(self, **env: str) -> None:
        """Restart the gateway with these environment variables added or changed; wait until it is ready."""
        self.env.update(env)
        self.stop("gateway")
        self.start("gateway")
        wait_until(self.ready, timeout=60, interval=0.2)

    @contextmanager
    def gateway_env(self, **env: str) -> Iterator[None]:
        """Run the gateway with these environment variables inside the block, then as it ran before."""
        saved = dict(self.env)
        self.restart_gateway(**env)
        try:
            yield
        finally:
            self.env = saved
            self.restart_gateway()

    def start_all(self) -> None:
        for name in ("gateway", "worker", "redrive"):
            self.start(name)
        wait_until(self.ready, timeout=60, interval=0.2)
        self.wait_for_worker()

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_for_worker(self, nodes: Sequence[str] = ()) -> None:
        """Block until every worker node (this stack's two lanes by default) answers a ping on the broker."""
        destination = list(nodes) or [self.node_name, self.bulk_node_name]
        app = create_celery_app(self.settings())

        def pong() -> bool:
            try:
                # limit: back as soon as every node has answered, not at the end of the timeout.
                replies = app.control.ping(destination=destination, timeout=0.5, limit=len(destination))
                return len(replies) == len(destination)
            except PUBLISH_ERRORS:  # a broker that was just restarted
                return False

        try:
            wait_until(pong, timeout=60, interval=0.2)
        finally:
            app.close()

    def close(self) -> None:
        self.stop(*self.processes)
        self.engine.dispose()
        self.celery.close()

    def lane_queues(self, queue: str | None = None) -> tuple[str, ...]:
        """Return queue alone, or both lanes' queues (interactive first) when it is None."""
        return (queue,) if queue is not None else self.settings().lane_queues

    def queue_length(self, queue: str | None = None) -> int:
        """Return how many messages wait in queue (None: in both lanes)."""
        return sum(waiting_messages(self.celery, name) for name in self.lane_queues(queue))

    def waiting_bodies(self, queue: str | None = None) -> list[bytes]:
        """Return the bodies of the messages waiting in queue (None: the interactive lane's, then the bulk
        lane's), in queue order, leaving them there."""
        return [
            body
            for name in self.lane_queues(queue)
            for body in waiting_bodies(self.celery, self.broker_redis, name)
        ]

    def queued_items(self, queue: str | None = None) -> list[dict[str, Any]]:
        """Return the observation items ({id, observation}) the waiting messages carry or refer to (the rows
        of batch slices still queued), in queue order; queue: one lane's (None: both)."""
        items: list[dict[str, Any]] = []
        for body in self.waiting_bodies(queue):
            _args, kwargs, _embed = json.loads(body)
            contents = message_contents(kwargs)
            items += contents.items
            if contents.slices:
                with self.engine.connect() as conn:
                    referred = read_batch_slices(conn=conn, slices=contents.slices)
                items += [{"id": o.id, "observation": o.observation} for o in referred]
        return items

    def queued_ids(self, queue: str | None = None) -> list[str]:
        """Return the ids of the observations the waiting messages carry or refer to, in queue order."""
        return [item["id"] for item in self.queued_items(queue)]

    def queued_observations(self) -> int:
        """Return how many observations the waiting messages carry (a message may carry several)."""
        return len(self.queued_items())

    def held_message_count(self) -> int | None:
        """Return how many messages consumers hold unacknowledged, in either lane (None: the broker does not
        say)."""
        settings = self.settings()
        return held_messages(self.celery, settings.lane_queues, settings.broker_management_url)

    @contextmanager
    def hold_one_message(self) -> Iterator[None]:
        """Take the next message as a worker's prefetch does (unacknowledged) and give it back on exit."""
        app = create_celery_app(self.settings())
        try:
            with app.connection_for_read() as connection:
                # The queue as the service declares it (RabbitMQ refuses a quorum queue declared as classic).
                queue = connection.SimpleQueue(app.amqp.queues[self.backend.queue_name])
                message = queue.get(block=True, timeout=5)
                try:
                    yield
                finally:
                    message.requeue()
                    queue.close()
        finally:
            app.close()

    def empty_broker(self) -> None:
        """Lose every message, waiting or unacknowledged, as a broker restarted with nothing kept would."""
        if self.backend.restart_broker is not None:
            self.backend.restart_broker()
            return
        # The shared system Redis is not restarted: its database is emptied and every connection to it is
        # dropped, which is what the service's processes see of a restart.
        broker = self.broker_redis
        if broker is None:
            raise RuntimeError(f"the {self.backend.name} backend cannot empty its broker")
        broker.flushdb()
        database = broker.connection_pool.connection_kwargs.get("db", 0)
        own = broker.client_id()
        for client in broker.client_list():
            if int(client["db"]) == database and int(client["id"]) != own:
                broker.client_kill_filter(_id=client["id"])

    def settings(self) -> Settings:
        """Return the settings the stack's processes run with (its database, broker, queue and timings)."""
        chosen = {name: self.env[name.upper()] for name in Settings.model_fields if name.upper() in self.env}
        return Settings.model_validate(chosen)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.work_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def run_monitor(self) -> None:
        """Run the model monitor now, as its beat entry would, and wait until its snapshot is stored."""
        with self.engine.connect() as conn:
            before, _ = latest_snapshot(conn=conn)
        app = create_celery_app(self.settings())
        try:
            app.send_task(MONITOR_TASK)
        finally:
            app.close()

        def stored() -> bool:
            with self.engine.connect() as conn:
                taken_at, _ = latest_snapshot(conn=conn)
            return taken_at is not None and taken_at != before

        wait_until(stored, timeout=60, interval=0.2)
