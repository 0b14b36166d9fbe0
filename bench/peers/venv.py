"""The BentoML peer's own virtual environment, made by the bench and reused while its requirements hold.

BentoML pins its own web stack, so it lives apart from the project's venv, under var/peers/bentoml-venv.
scikit-learn, pandas, numpy and joblib are pinned to the versions this venv runs: the pickled pipeline is
loaded by the same library versions on both sides.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from core.settings import PROJECT_ROOT

BENTOML_REQUIREMENT = "bentoml>=1.4,<1.5"
VENV_DIR = PROJECT_ROOT / "var" / "peers" / "bentoml-venv"
MARKER = "bench-requirements.txt"
# The libraries that unpickle and run the pipeline, pinned to this venv's versions.
MODEL_LIBRARIES = ("scikit-learn", "pandas", "numpy", "joblib")


def requirements() -> list[str]:
    """Return the BentoML venv's requirement set: BentoML's range and the model libraries pinned."""
    return [BENTOML_REQUIREMENT, *(f"{name}=={version(name)}" for name in MODEL_LIBRARIES)]


def bentoml_executable(venv: Path = VENV_DIR) -> Path:
    """Return the venv's `bentoml` command."""
    return venv / "bin" / "bentoml"


def ensure_bentoml_venv(log: Path, venv: Path = VENV_DIR) -> float:
    """Create the venv unless its marker lists the same requirements; return the seconds spent (0: reused).

    The marker is written last, so a venv whose install was cut short is made again from scratch.
    """
    wanted = "\n".join(requirements()) + "\n"
    marker = venv / MARKER
    if marker.exists() and marker.read_text() == wanted and bentoml_executable(venv).exists():
        return 0.0
    start = time.perf_counter()
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=out, stderr=out)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements()],
            check=True,
            stdout=out,
            stderr=out,
        )
    marker.write_text(wanted)
    return time.perf_counter() - start


def main() -> int:
    """Make the BentoML venv now, unless it is ready (`make bench-peers`: the bench then installs nothing)."""
    spent = ensure_bentoml_venv(VENV_DIR.parent / "bentoml-venv.log")
    print(f"BentoML venv {VENV_DIR}: {'made in ' + format(spent, '.0f') + ' s' if spent else 'ready'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
