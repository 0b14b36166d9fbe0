"""Run the whole service on one machine (make run): migrations, Redis, gateway, a worker per lane, redrive."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.celery_app import BULK_PREFETCH_MULTIPLIER
from core.settings import PROJECT_ROOT, Settings, child_environment, get_settings
from core.storage.migrate import upgrade_to_head
from devstack.embedded_redis import start_embedded_redis
from devstack.process_groups import stop_process_group

# The bulk lane's worker runs at this niceness (0 normal, 19 lowest): on a shared host the interactive lane's
# processes get the CPU first whenever both have work.
BULK_NICENESS = 10
# The processes of a worker node's two lanes, each consuming its own queue.
WORKER_LANES = ("worker", "worker-bulk")


def service_commands(host: str, port: int, state_dir: Path, settings: Settings) -> dict[str, list[str]]:
    """Return the command line of each long-running process of the service."""
    python = sys.executable
    return {
        "gateway": [
            python, "-m", "gunicorn", "--workers", "2", "--bind", f"{host}:{port}",
            "--config", "python:gateway.server.gunicorn_conf", "gateway.server.asgi:app",
        ],
        # The interactive lane: single submissions, prefetching 2 x BATCH_SIZE messages for its micro-batches.
        "worker": [
            python, "-m", "celery", "-A", "worker.main", "worker", "--queues", settings.queue_name,
            "--concurrency", "1", "--without-mingle", "--without-gossip", "--loglevel", "INFO",
        ],
        # The bulk lane: batch slices, a short prefetch, and a lower CPU priority, so that the system gives
        # the interactive lane's processes the CPU first and bulk takes what is left.
        "worker-bulk": [
            "nice", "-n", str(BULK_NICENESS), python, "-m", "celery", "-A", "worker.main", "worker",
            "--queues", settings.bulk_queue, "--prefetch-multiplier", str(BULK_PREFETCH_MULTIPLIER),
            "--hostname", f"bulk-{settings.queue_name}@%h",
            "--concurrency", "1", "--without-mingle", "--without-gossip", "--loglevel", "INFO",
        ],
        # One process, beat inside: it schedules the redrive and runs it from its own queue.
        "redrive": [
            python, "-m", "celery", "-A", "worker.periodic_main", "worker", "--beat",
            "--schedule", str(state_dir / "beat-schedule"), "--queues", settings.redrive_queue,
            "--pool", "solo", "--hostname", f"redrive-{settings.queue_name}@%h",
            "--without-mingle", "--without-gossip", "--loglevel", "INFO",
        ],
    }  # fmt: skip


def bulk_lane_metrics(settings: Settings) -> dict[str, str]:
    """Return where the bulk lane's node serves its metrics, when nodes serve theirs: the next port, its
    own folder (two nodes on one port or one folder would clash)."""
    if not settings.worker_metrics_port:
        return {}
    return {
        "WORKER_METRICS_PORT": str(settings.worker_metrics_port + 1),
        "PROMETHEUS_MULTIPROC_DIR": str(PROJECT_ROOT / "var" / "prometheus-worker-bulk"),
    }


def fresh_metrics_dir(path: Path) -> Path:
    """Empty the folder where gunicorn's workers share their Prometheus metrics; return it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def main(argv: list[str] | None = None) -> int:
    """Start everything, print where to look, stop everything on Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m devstack.run_local", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="the gateway's address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=5000, help="the gateway's port (default: %(default)s)")
    parser.add_argument(
        "--redis-port", type=int, default=6380, help="port of the embedded Redis (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    # Handlers first: a Ctrl-C while things start only asks to stop, and what has started is stopped below.
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    children: dict[str, subprocess.Popen[bytes]] = {}
    exit_code = 0
    try:
        settings = get_settings()
        overrides = {"PROMETHEUS_MULTIPROC_DIR": str(fresh_metrics_dir(PROJECT_ROOT / "var" / "prometheus"))}
        broker_url = settings.broker_url
        if "broker_url" not in settings.model_fields_set:  # no BROKER_URL given: the embedded Redis
            children["redis"] = start_embedded_redis(args.redis_port, PROJECT_ROOT / "var" / "redis")
            broker_url = overrides["BROKER_URL"] = f"redis://127.0.0.1:{args.redis_port}/0"
        env = child_environment(overrides)
        database_url = settings.database_url
        upgrade_to_head(database_url)

        for name, command in service_commands(args.host, args.port, PROJECT_ROOT / "var", settings).items():
            if stopping:
                break
            # Own sessions: Ctrl-C reaches only this supervisor, which stops them in order.
            own_env = {**env, **bulk_lane_metrics(settings)} if name == "worker-bulk" else env
            children[name] = subprocess.Popen(command, env=own_env, cwd=PROJECT_ROOT, start_new_session=True)
        base = f"http://{args.host}:{args.port}"
        print(
            f"\nContraband predictions is starting:\n"
            f"  API        {base}/predict  (POST)   results: {base}/predictions/<id>\n"
            f"  ready      {base}/ready     docs: {base}/docs     metrics: {base}/metrics\n"
            f"  database   {database_url}\n  broker     {broker_url}\n"
            f"Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with {child.returncode}; stopping everything", flush=True)
                    stopping, exit_code = True, 1
            time.sleep(0.5)
    finally:
        # In reverse order, each group gone before the next: the embedded Redis stops last, once the worker
        # has acked or requeued its batch on the way out.
        for child in reversed(children.values()):
            stop_process_group(child)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
