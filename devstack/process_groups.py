"""Stop a service started in a session of its own (start_new_session=True), and everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

# How long a killed group's leader gets to be reaped.
KILL_WAIT_S = 10


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already empty
        os.killpg(group, signum)


def stop_process_group(process: subprocess.Popen[bytes], *, kill: bool = False, grace_s: float = 20) -> None:
    """Signal the whole group (SIGTERM, or SIGKILL as a crash would) and wait for its leader.

    A leader that does not stop within grace_s is killed. Then whatever is left of the group is killed too: a
    child that ignored the signal, or that its leader did not wait for, would otherwise run on, orphaned,
    beside the next service started (a second redrive, say).
    """
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=KILL_WAIT_S)
    _signal_group(process.pid, signal.SIGKILL)
