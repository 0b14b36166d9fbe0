"""The redrive's process runs the periodic tasks without importing a model library (scikit-learn alone takes
seconds to import, and most of a prediction lane's memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.celery_app import MONITOR_TASK, PURGE_TASK, REDRIVE_TASK
from core.settings import PROJECT_ROOT, get_settings
from devstack.run_local import service_commands

# Imports the Celery app the command names and the task modules a worker of it imports at start.
PROBE = """
import importlib, json, sys
app = importlib.import_module(sys.argv[1]).app
app.loader.import_default_modules()
print(json.dumps({
    "tasks": sorted(name for name in app.tasks if not name.startswith("celery.")),
    "model_libraries": sorted(m for m in ("sklearn", "pandas", "numpy", "joblib", "scipy")
                              if m in sys.modules),
}))
"""


def test_the_redrive_process_runs_the_periodic_tasks_and_imports_no_model_library(tmp_path: Path) -> None:
    command = service_commands("127.0.0.1", 5000, tmp_path, get_settings())["redrive"]
    app_module = command[command.index("-A") + 1]
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, app_module],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(probe.stdout)
    assert loaded["tasks"] == sorted([REDRIVE_TASK, PURGE_TASK, MONITOR_TASK])
    assert loaded["model_libraries"] == []
