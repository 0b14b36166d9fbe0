"""Command-line tools some tests run: `make test` installs them; only a run outside CI may lack one."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(command: str, *, package: str) -> None:
    """Skip the test when command is missing on a developer's machine; fail it under CI=true."""
    if shutil.which(command) is not None:
        return
    message = f"{command} is missing: `make test` installs Debian's {package} (scripts/ensure-tools)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
