"""The gateway accepts requests without loading any model code."""

from __future__ import annotations

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
