"""How to start Chromium: the Playwright driver once per process, browsers and contexts on demand.

The launcher knows nothing of policy (when to relaunch, how many contexts); that is the pool's job.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright

from shared.chromium import LAUNCH_ARGS, find_chromium
from shared.domain import SITE_TIMEZONE
from shared.settings import Settings

CONTEXT_OPTIONS: dict[str, Any] = {"timezone_id": str(SITE_TIMEZONE), "locale": "de-DE"}
"""The site computes "today" from the browser clock in Europe/Berlin and speaks German (spec §4.1)."""


class BrowserLauncher:
    """Starts the Playwright driver (unless one is handed in) and launches Chromium from settings."""

    def __init__(self, settings: Settings, *, playwright: Playwright | None = None) -> None:
        self.settings = settings
        self._playwright = playwright
        self._owns_driver = playwright is None
        self._manager: Any = None

    async def start(self) -> None:
        if self._playwright is None:
            self._manager = async_playwright()
            self._playwright = await self._manager.start()

    async def launch(self) -> Browser:
        if self._playwright is None:
            await self.start()
        assert self._playwright is not None
        return await self._playwright.chromium.launch(
            executable_path=find_chromium(self.settings.chromium_path),
            headless=self.settings.browser_headless,
            args=list(LAUNCH_ARGS),
        )

    async def new_context(self, browser: Browser) -> BrowserContext:
        return await browser.new_context(**CONTEXT_OPTIONS)

    async def close(self) -> None:
        """Stop the driver if this launcher started it (a handed-in driver belongs to its owner)."""
        if self._owns_driver and self._manager is not None:
            manager, self._manager, self._playwright = self._manager, None, None
            await manager.__aexit__(None, None, None)


__all__ = ["CONTEXT_OPTIONS", "BrowserLauncher"]
