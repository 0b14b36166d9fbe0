"""A stopped service leaves nothing of itself running: the test stack and the bench start services again and
again on one machine, and a process left over (a second redrive, a worker) would act beside the next ones."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil

from devstack.process_groups import stop_process_group

# A leader that stops on SIGTERM, with a child that ignores it and would run on for a minute.
LEADER_WITH_STUBBORN_CHILD = """
import os, signal, sys, time
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(os.getpid(), flush=True)  # only once it ignores SIGTERM
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
        return bool(status != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_stopping_a_service_ends_the_children_that_outlive_its_main_process() -> None:
    service = subprocess.Popen(
        [sys.executable, "-c", LEADER_WITH_STUBBORN_CHILD], stdout=subprocess.PIPE, start_new_session=True
    )
    assert service.stdout is not None
    try:
        child = int(service.stdout.readline())
        stop_process_group(service, grace_s=5)
        assert service.returncode is not None
        assert _ends_within(child, seconds=5), "the child outlived the service's stop"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGKILL)
        service.wait(timeout=10)
        service.stdout.close()
