"""Load a page in a real browser (Debian's headless chromium): a screenshot, or the DOM once scripts ran."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tools import require_tool

# As root chromium needs --no-sandbox; the virtual time budget lets a page's scripts run before the capture.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]


def _chromium(*arguments: str) -> subprocess.CompletedProcess[str]:
    require_tool("chromium", package="chromium")
    result = subprocess.run(
        ["chromium", *FLAGS, *arguments], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def screenshot(url: str, path: Path, *, width: int = 1400, height: int = 1800) -> Path:
    """Save a PNG of the page as a browser window of this size shows it; return its path."""
    _chromium(f"--window-size={width},{height}", f"--screenshot={path}", url)
    assert path.exists() and path.stat().st_size > 0
    return path


def rendered_dom(url: str) -> str:
    """Return the page's DOM once its scripts have run, as HTML."""
    return _chromium("--dump-dom", url).stdout
