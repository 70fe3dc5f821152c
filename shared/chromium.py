"""Where Chromium lives: Playwright's own build if installed, else the system package.

This is the only place that decides; the worker pool, the recorder and the test fixtures call it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Debian's /usr/bin/chromium is a wrapper script; the real binary sits below /usr/lib.
SYSTEM_CANDIDATES = (
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
)

LAUNCH_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
)


def _playwright_browser_installed() -> bool:
    root = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH", Path.home() / ".cache" / "ms-playwright"))
    return any(root.glob("chromium*/chrome-linux*/chrome")) or any(
        root.glob("chromium_headless_shell*/chrome-*/headless_shell")
    )


def find_chromium(configured: str = "") -> str | None:
    """Return an executable path to pass to Playwright, or None to let Playwright use its own."""
    if configured:
        if not Path(configured).exists():
            raise FileNotFoundError(f"MTA_CHROMIUM_PATH={configured} does not exist")
        return configured
    if _playwright_browser_installed():
        return None
    for candidate in SYSTEM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    raise FileNotFoundError(
        "No Chromium found: run scripts/setup.sh, or `playwright install chromium`, "
        "or `apt-get install chromium`, or set MTA_CHROMIUM_PATH"
    )
