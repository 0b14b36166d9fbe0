"""Stop a service started in a session of its own (start_new_session=True), and everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence

# How long a killed group's leader gets to exit.
KILL_WAIT_S = 10


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already empty
        os.killpg(group, signum)


def _exited(pid: int) -> bool:
    """Return whether the process has exited, without reaping it: its pid, and so its group's, stay taken."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not _exited(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def stop_process_group(process: subprocess.Popen[bytes], *, kill: bool = False, grace_s: float = 20) -> None:
    """Stop one service and everything it started (see stop_process_groups)."""
    stop_process_groups([process], kill=kill, grace_s=grace_s)


def stop_process_groups(
    processes: Sequence[subprocess.Popen[bytes]], *, kill: bool = False, grace_s: float = 20
) -> None:
    """Signal each service's whole group (SIGTERM, or SIGKILL as a crash would) at once, then wait for the
    leaders: services stopped together take as long as the slowest of them, not the sum.

    A leader that does not stop within grace_s is killed. Then whatever is left of each group is killed too: a
    child that ignored the signal, or that its leader did not wait for, would otherwise run on, orphaned,
    beside the next service started (a second redrive, say). A leader is reaped only after that, so the
    group signalled is still its own. A leader reaped earlier is left alone: its group may be another's now.
    """
    running = [process for process in processes if process.returncode is None]
    signalled = [process for process in running if not _exited(process.pid)]
    for process in signalled:
        _signal_group(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in signalled:
        if not _wait_for_exit(process.pid, max(deadline - time.monotonic(), 0)):
            _signal_group(process.pid, signal.SIGKILL)
            _wait_for_exit(process.pid, KILL_WAIT_S)
    for process in running:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=KILL_WAIT_S)
