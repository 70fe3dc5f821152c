"""Headed Chromium for debugging (``MTA_BROWSER_HEADLESS=false``, ``mta replay --headed``), shown on a
virtual display: on a server without a screen, ``xvfb-run mta worker`` is how an operator watches
the walk. ``scripts/test.sh`` installs Xvfb; without it this test is skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shared.settings import load_settings
from worker.browser import BrowserPool
from worker.sites.munich.selectors import NEXT_BUTTON

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which("Xvfb") is None, reason="Xvfb is not installed (scripts/test.sh installs it)"
    ),
]


@pytest.fixture
def display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private X display (the first free number from 90), set as ``DISPLAY``."""
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    process = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert process.poll() is None, "Xvfb exited"
            assert time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.05)
        monkeypatch.setenv("DISPLAY", f":{number}")
        yield f":{number}"
    finally:
        process.terminate()
        process.wait(10)


def chromium_command_lines() -> list[list[str]]:
    lines = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if child.name() in {"chromium", "chrome", "headless_shell"}:
                lines.append(child.cmdline())
        except psutil.Error:
            continue
    return lines


@pytest.mark.asyncio
async def test_headed_browser_on_a_virtual_display(display: str, tmp_path: Path) -> None:
    """With ``browser_headless=False`` the pool launches a windowed Chromium on ``DISPLAY``: no
    ``--headless`` flag, a real window size, and pages work as in headless mode."""
    settings = load_settings(
        data_dir=tmp_path, env="test", pacer="none", trace_on_failure=False, browser_headless=False
    )
    async with BrowserPool(settings) as pool:
        await pool.launch()
        lines = chromium_command_lines()
        assert lines, "no Chromium below this process"
        assert not any(arg.startswith("--headless") for line in lines for arg in line), lines
        async with pool.session("headed") as session:
            page = session.page
            await page.set_content(f"<button>{NEXT_BUTTON}</button>")
            await page.get_by_role("button", name=NEXT_BUTTON).click()
            agent = await page.evaluate("navigator.userAgent")
            width = await page.evaluate("window.outerWidth")
        assert "Headless" not in agent and width > 0
