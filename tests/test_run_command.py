"""The README's run command (`make run`: devstack.run_local) serves the course example and stops on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis
import requests

from core.settings import PROJECT_ROOT
from devstack.embedded_redis import free_port
from devstack.stack import wait_until
from tests.factories import prediction_request

# Both run `make run`'s command, which starts the gateway, a worker and an embedded Redis.
pytestmark = pytest.mark.usefixtures("starts_servers")


def test_run_command_serves_the_course_example_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    port, redis_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'predictions.db'}", "LOG_LEVEL": "WARNING"}
    env.pop("BROKER_URL", None)  # the embedded Redis
    with (tmp_path / "run.log").open("wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "devstack.run_local", "--port", str(port),
             "--redis-port", str(redis_port)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return requests.get(f"{base}/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout=90, interval=0.3)
        children = psutil.Process(run.pid).children(recursive=True)
        body = prediction_request()
        accepted = requests.post(f"{base}/predict", json=body, timeout=5)
        assert accepted.status_code == 202 and accepted.headers["Location"] == f"/predictions/{body['id']}"

        def predicted() -> dict[str, object] | None:
            result: dict[str, object] = requests.get(f"{base}/predictions/{body['id']}", timeout=5).json()
            return result if result["status"] == "done" else None

        assert isinstance(wait_until(predicted, timeout=60)["proba"], float)
    finally:
        # As a terminal's Ctrl-C does: to every process of the foreground group, not to the command alone.
        os.killpg(run.pid, signal.SIGINT)
        code = run.wait(timeout=60)
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    # The embedded Redis went last: the worker never lost its broker on the way out.
    output = (tmp_path / "run.log").read_text()
    assert "Connection to broker lost" not in output and "Cannot connect" not in output, output[-3000:]


def test_run_command_that_cannot_migrate_leaves_no_embedded_redis_behind(tmp_path: Path) -> None:
    redis_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/nothing",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("BROKER_URL", None)  # the embedded Redis, started before the migrations
    with (tmp_path / "run.log").open("wb") as log:  # a file, not a pipe a leftover server would hold open
        run = subprocess.run(
            [sys.executable, "-m", "devstack.run_local", "--port", str(free_port()),
             "--redis-port", str(redis_port)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False,
        )  # fmt: skip
    assert run.returncode != 0 and "OperationalError" in (tmp_path / "run.log").read_text()
    with socket.socket() as probe:
        left_behind = probe.connect_ex(("127.0.0.1", redis_port)) == 0
    if left_behind:  # not for the next run to trip over
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(port=redis_port).shutdown(nosave=True)
    assert not left_behind, "the embedded Redis still answered after the command had exited"
