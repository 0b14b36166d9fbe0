"""Worker layouts the bench switches between, and the memory the workers use."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import psutil

from bench.plan import Layout
from core.feature_spec import PIPELINE_FILE, bundle_path
from core.settings import get_settings
from devstack.run_local import WORKER_LANES
from devstack.stack import ServiceStack


def worker_names(stack: ServiceStack) -> list[str]:
    """Return the names of the stack's worker processes (two per node: one per lane)."""
    return [name for name in stack.processes if name.startswith("worker")]


def stop_workers(stack: ServiceStack) -> None:
    """Stop every worker node of the stack."""
    stack.stop(*worker_names(stack))


def _concurrency(command: list[str]) -> int:
    return int(command[command.index("--concurrency") + 1])


def running_layout(stack: ServiceStack) -> Layout | None:
    """Return the layout the stack's workers run in, or None when a process is stopped or has exited."""
    names = worker_names(stack)
    if not names or any(stack.processes[name].poll() is not None for name in names):
        return None
    return Layout(nodes=len(names) // len(WORKER_LANES), processes=_concurrency(stack.commands["worker"]))


def _with_option(command: list[str], option: str, value: str) -> list[str]:
    """Return command with the last occurrence of option set to value (the one the worker reads)."""
    changed = list(command)
    at = len(changed) - 1 - changed[::-1].index(option)
    changed[at + 1] = value
    return changed


def _hostname(command: list[str]) -> str:
    """Return the node name a worker command gives (its last --hostname)."""
    return command[len(command) - command[::-1].index("--hostname")]


def set_workers(stack: ServiceStack, layout: Layout) -> None:
    """(Re)start the workers in this layout, unless they already run in it; wait until every node answers a
    ping. A node is both lanes' processes, each with layout.processes pool processes: the bulk measures
    scale the bulk lane, and singles keep a lane of their own."""
    if running_layout(stack) == layout:
        return
    stop_workers(stack)
    for lane in WORKER_LANES:
        stack.commands[lane] = _with_option(stack.commands[lane], "--concurrency", str(layout.processes))
    stack.start("worker")  # both lanes
    nodes = [_hostname(stack.commands[lane]) for lane in WORKER_LANES]
    for number in range(2, layout.nodes + 1):
        for lane in WORKER_LANES:
            node = f"{number}-{_hostname(stack.commands[lane])}"
            stack.commands[f"{lane}-{number}"] = _with_option(stack.commands[lane], "--hostname", node)
            stack.start(f"{lane}-{number}")
            nodes.append(node)
    stack.wait_for_worker(nodes)


@dataclass(frozen=True)
class ProcessMemory:
    """Resident memory of one process, and the part of it no other process shares (USS), in MB."""

    rss: float
    unique: float


def process_tree(pid: int) -> list[psutil.Process]:
    """Return a process and all its descendants (none if it has exited)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def worker_memory_mb(stack: ServiceStack) -> list[ProcessMemory]:
    """Return the memory of the worker's main process and each pool process."""
    return [
        ProcessMemory(rss=info.rss / 2**20, unique=info.uss / 2**20)
        for info in (p.memory_full_info() for p in process_tree(stack.processes["worker"].pid))
    ]


LIBRARIES_ONLY = """
import sys
import joblib, pandas, psutil, sklearn
joblib.load(sys.argv[1])
print(psutil.Process().memory_info().rss)
"""


def libraries_floor_mb() -> float:
    """Resident memory of a bare Python with pandas and scikit-learn imported and the pipeline loaded."""
    pipeline = bundle_path(get_settings().artifacts_dir) / PIPELINE_FILE
    out = subprocess.run(
        [sys.executable, "-c", LIBRARIES_ONLY, str(pipeline)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1]) / 2**20
