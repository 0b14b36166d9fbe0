"""The gateway accepts requests without loading any model code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.settings import PROJECT_ROOT

PROBE = """
import sys
from gateway.app import create_app
from core.settings import Settings
app = create_app({"SETTINGS": Settings(database_url=sys.argv[1])})
print(",".join(sorted(m for m in ("sklearn", "pandas", "numpy", "joblib", "scipy") if m in sys.modules)))
"""


def test_gateway_imports_no_model_libraries(tmp_path: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, f"sqlite:///{tmp_path / 'gateway.db'}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stdout.strip() == ""


FROZEN_PROBE = """
import gc
import gateway.server.asgi
frozen = gc.get_freeze_count()
print(frozen, len(gc.get_objects()))
"""


def test_gateway_process_keeps_what_it_loaded_out_of_full_collections(tmp_path: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", FROZEN_PROBE],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}", "LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    frozen, tracked = (int(number) for number in probe.stdout.split())
    assert frozen > 9 * tracked, f"{frozen} objects frozen, {tracked} still scanned by every full collection"
