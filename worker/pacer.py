"""How fast the browser acts: think times, typing delays and mouse travel.

A person pauses before a click and types one key at a time; a script that clicks within
milliseconds of a page load is easy to spot. The adapter asks its ``Pacer`` before each action;
``HumanPacer`` draws the pauses from the settings' ranges, ``NoPacer`` makes tests fast.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

    from shared.settings import Settings

Sleep = Callable[[float], Awaitable[None]]


class Pacer(Protocol):
    """Paces a browser walk like a person."""

    async def think(self, *, elapsed_s: float = 0.0) -> None:
        """Pause before the next action (reading, deciding). ``elapsed_s``: how long what the
        person reacts to has been on screen already (the pause counts from its appearance)."""
        ...

    def type_delay_ms(self) -> float:
        """Delay before the next keystroke, in milliseconds."""
        ...

    async def type_text(self, locator: Locator, text: str) -> None:
        """Type ``text`` into ``locator``."""
        ...

    async def move_to(self, page: Page, locator: Locator) -> None:
        """Move the mouse onto ``locator`` before it is clicked."""
        ...


class HumanPacer:
    """Random pauses within the configured ranges; pass ``seed`` for repeatable runs."""

    def __init__(
        self,
        *,
        think_time_min_ms: float = 400,
        think_time_max_ms: float = 1_500,
        typing_delay_min_ms: float = 40,
        typing_delay_max_ms: float = 140,
        mouse_steps: tuple[int, int] = (8, 25),
        seed: int | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if think_time_min_ms > think_time_max_ms or typing_delay_min_ms > typing_delay_max_ms:
            raise ValueError("a pacer range's minimum must not exceed its maximum")
        self.think_range_ms = (float(think_time_min_ms), float(think_time_max_ms))
        self.typing_range_ms = (float(typing_delay_min_ms), float(typing_delay_max_ms))
        self.mouse_steps = mouse_steps
        self._rng = random.Random(seed)
        self._sleep = sleep

    def think_ms(self) -> float:
        return self._rng.uniform(*self.think_range_ms)

    def type_delay_ms(self) -> float:
        return self._rng.uniform(*self.typing_range_ms)

    async def think(self, *, elapsed_s: float = 0.0) -> None:
        await self._sleep(max(0.0, self.think_ms() / 1000 - elapsed_s))

    async def type_text(self, locator: Locator, text: str) -> None:
        await locator.click()
        for char in text:
            await self._sleep(self.type_delay_ms() / 1000)
            await locator.press_sequentially(char)

    async def move_to(self, page: Page, locator: Locator) -> None:
        box = await locator.bounding_box()
        if box is None:  # not rendered (hidden or detached): the click will tell
            return
        # somewhere inside the element, not its exact centre
        x = box["x"] + box["width"] * self._rng.uniform(0.25, 0.75)
        y = box["y"] + box["height"] * self._rng.uniform(0.3, 0.7)
        await page.mouse.move(x, y, steps=self._rng.randint(*self.mouse_steps))


class NoPacer:
    """No pauses at all: for tests and for replaying recordings."""

    async def think(self, *, elapsed_s: float = 0.0) -> None:
        return None

    def type_delay_ms(self) -> float:
        return 0.0

    async def type_text(self, locator: Locator, text: str) -> None:
        await locator.fill(text)

    async def move_to(self, page: Page, locator: Locator) -> None:
        return None


def pacer_from_settings(settings: Settings, *, seed: int | None = None) -> Pacer:
    """``MTA_PACER=human`` (default) or ``none``."""
    if settings.pacer == "none":
        return NoPacer()
    return HumanPacer(
        think_time_min_ms=settings.think_time_min_ms,
        think_time_max_ms=settings.think_time_max_ms,
        typing_delay_min_ms=settings.typing_delay_min_ms,
        typing_delay_max_ms=settings.typing_delay_max_ms,
        seed=seed,
    )


__all__ = ["HumanPacer", "NoPacer", "Pacer", "pacer_from_settings"]
