"""Start, wait for and stop the peers' processes, and measure each peer in turn.

Every process runs in its own session and logs to the bench's work dir; whatever happens, each peer's
processes are stopped (SIGTERM to the process group, then SIGKILL to what lingers) before the next peer
starts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis
import requests
from celery import Celery

from bench.peers.behind_bulk import measure_behind_bulk
from bench.peers.endpoints import BENTOML_SYNC, BENTOML_TASK, CELERY_TEMPLATE, bentoml_sync, bentoml_task
from bench.peers.endpoints import celery_template as celery_template_endpoint
from bench.peers.measure import PeerEndpoint, PeerFigures, measure_peer, warm_up
from bench.peers.venv import bentoml_executable, ensure_bentoml_venv
from bench.plan import Plan
from core.feature_spec import bundle_path
from core.settings import PROJECT_ROOT, Settings
from devstack.embedded_redis import free_port
from devstack.process_groups import stop_process_group
from devstack.stack import wait_until

# The template's own Redis databases (the suite's queues use database 9): broker, then result backend.
TEMPLATE_BROKER_URL = "redis://127.0.0.1:6379/12"
TEMPLATE_BACKEND_URL = "redis://127.0.0.1:6379/13"
BENTOML_SERVICE_DIR = Path(__file__).resolve().parent / "bentoml_service"
START_TIMEOUT_S = 120


@dataclass
class PeerProcesses:
    """The processes of one peer, each in its own session, logging to <work_dir>/peer-<name>.log."""

    work_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path = PROJECT_ROOT) -> None:
        """Start one process of the peer."""
        with self.log(name).open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self, name: str) -> Path:
        return self.work_dir / f"peer-{name}.log"

    def wait_ready(self, ready: Callable[[], bool]) -> None:
        """Wait until ready() is true; fail at once if a process of the peer exits meanwhile."""

        def check() -> bool:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    tail = "\n".join(self.log(name).read_text(errors="replace").splitlines()[-20:])
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
            return ready()

        wait_until(check, timeout=START_TIMEOUT_S, interval=0.2)

    def stop_all(self) -> None:
        """Stop every process and its children, the last started first."""
        for process in reversed(self.processes.values()):
            stop_process_group(process)
        self.processes.clear()


def _answers(url: str, status: int, method: str = "GET") -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.request(method, url, json={}, timeout=2).status_code == status
        except requests.RequestException:
            return False

    return check


def _worker_answers(node: str) -> Callable[[], bool]:
    def check() -> bool:
        app = Celery(broker=TEMPLATE_BROKER_URL)
        try:
            return len(app.control.ping(destination=[node], timeout=0.5)) == 1
        except (redis.RedisError, OSError):
            return False
        finally:
            app.close()

    return check


def _empty_template_databases() -> None:
    for url in (TEMPLATE_BROKER_URL, TEMPLATE_BACKEND_URL):
        with redis.Redis.from_url(url) as client:
            client.flushdb()


@contextmanager
def celery_template(plan: Plan, work_dir: Path, env: dict[str, str]) -> Iterator[PeerEndpoint]:
    """Run the template: gunicorn with two sync workers, a prefork Celery worker of two processes."""
    port = free_port()
    template_env = {
        **env,
        "FLASK_CELERY__broker_url": TEMPLATE_BROKER_URL,
        "FLASK_CELERY__result_backend": TEMPLATE_BACKEND_URL,
        # Celery takes BROKER_URL from the environment over its config: the stack's (the suite's database).
        "BROKER_URL": TEMPLATE_BROKER_URL,
    }
    node = f"template-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    processes = PeerProcesses(work_dir)
    _empty_template_databases()  # nothing left over from a run that was killed
    try:
        processes.start(
            "template-worker",
            [
                sys.executable, "-m", "celery", "-A", "bench.peers.celery_template.make_celery", "worker",
                "--pool", "prefork", "--concurrency", "2", "--hostname", node,
                "--without-mingle", "--without-gossip", "--loglevel", "WARNING",
            ],
            template_env,
        )  # fmt: skip
        processes.start(
            "template-web",
            [
                sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
                "bench.peers.celery_template.app:create_app()",
            ],
            template_env,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"
        processes.wait_ready(_answers(f"{base_url}/predict", 422, "POST"))
        processes.wait_ready(_worker_answers(node))
        yield celery_template_endpoint(base_url, plan)
    finally:
        processes.stop_all()
        _empty_template_databases()


@contextmanager
def bentoml_service(settings: Settings, work_dir: Path, env: dict[str, str], workers: int) -> Iterator[str]:
    """Run `bentoml serve` from the BentoML venv on the current bundle; yield its base URL."""
    port = free_port()
    bento_env = {
        key: value for key, value in env.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    bento_env.update(
        {
            "PEER_BUNDLE_DIR": str(bundle_path(settings.artifacts_dir, settings.model_version)),
            "BENTOML_HOME": str(work_dir / "bentoml-home"),
            "BENTOML_DO_NOT_TRACK": "true",
            # The thread cap the service's workers run with (OpenMP for the trees).
            "OMP_NUM_THREADS": str(settings.model_threads),
            "PEER_BENTOML_WORKERS": str(workers),
        }
    )
    processes = PeerProcesses(work_dir)
    try:
        processes.start(
            f"bentoml-{workers}-workers",
            [
                str(bentoml_executable()), "serve", "service:ContrabandModel",
                "--host", "127.0.0.1", "--port", str(port),
            ],
            bento_env,
            cwd=BENTOML_SERVICE_DIR,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"
        processes.wait_ready(_answers(f"{base_url}/readyz", 200))
        yield base_url
    finally:
        processes.stop_all()


def must_run() -> bool:
    """Return whether a peer that fails is a failure of the bench (CI) rather than a row marked not run."""
    return os.environ.get("CI") == "true"


def _measured(
    label: str, measure: Callable[[], list[PeerFigures]], labels: list[str], work_dir: Path
) -> list[PeerFigures]:
    try:
        return measure()
    except Exception as error:
        # The work dir goes with the run: the peers' last log lines are shown here.
        for log in sorted(work_dir.glob("peer-*.log")):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            print(f"--- {log.name}, last lines:\n{tail}", file=sys.stderr)
        if must_run():
            raise
        reason = str(error) or type(error).__name__  # a TimeoutError carries no text
        print(f"{label} did not run: {reason}", file=sys.stderr)
        return [PeerFigures(system=name, skipped=f"not run: {reason}"[:120]) for name in labels]


def run_peers(plan: Plan, work_dir: Path, env: dict[str, str], settings: Settings) -> list[PeerFigures]:
    """Measure the Celery template, then BentoML's sync and task endpoints, one peer running at a time; the
    template and the task endpoint with singles behind a bulk load too."""

    def template() -> list[PeerFigures]:
        with celery_template(plan, work_dir, env) as endpoint:
            warm_up(endpoint, plan)
            figures = measure_peer(endpoint, plan)
            print("peers: Celery template, singles behind its bulk load ...", file=sys.stderr)
            return [replace(figures, behind_bulk=measure_behind_bulk(endpoint, plan))]

    def bentoml() -> list[PeerFigures]:
        spent = ensure_bentoml_venv(work_dir / "peer-bentoml-venv.log")
        print(
            f"BentoML venv {'made in ' + format(spent, '.0f') + ' s' if spent else 'reused'}", file=sys.stderr
        )
        figures = []
        # The task endpoint gets one worker: the local server keeps task results in one SQLite file, and two
        # processes writing it lose tasks ("database is locked" when a result is stored, the task stays in
        # progress for good) and refuse submissions.
        for workers, endpoint_of in ((2, bentoml_sync), (1, bentoml_task)):
            with bentoml_service(settings, work_dir, env, workers) as base_url:
                endpoint = endpoint_of(base_url, plan)
                warm_up(endpoint, plan)
                measured = measure_peer(endpoint, plan)
                if endpoint_of is bentoml_task:
                    # Behind the bulk load a user sends it: the behind-bulk measure's rows, in tasks as usual.
                    bulk = bentoml_task(base_url, replace(plan, bulk_rows=plan.behind_rows))
                    print("peers: BentoML task endpoint, singles behind its bulk load ...", file=sys.stderr)
                    measured = replace(measured, behind_bulk=measure_behind_bulk(bulk, plan))
                figures.append(measured)
        return figures

    print("peers: Celery template ...", file=sys.stderr)
    figures = _measured(CELERY_TEMPLATE, template, [CELERY_TEMPLATE], work_dir)
    print("peers: BentoML ...", file=sys.stderr)
    return figures + _measured("BentoML", bentoml, [BENTOML_SYNC, BENTOML_TASK], work_dir)
