"""This worker process's long-lived resources: the browser pool and the site adapters.

Created by ``BrowserMiddleware`` at worker boot, closed at shutdown; actors reach them through
``current()``, which fails loudly when the browser never came up (Dramatiq swallows hook errors).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from shared.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    pool: Any
    adapters: dict[str, Any]
    stack: AsyncExitStack


_current: Runtime | None = None


async def start(settings: Settings) -> Runtime:
    global _current
    from worker.browser import BrowserPool
    from worker.captcha import InPageAltchaSolver
    from worker.pacer import pacer_from_settings
    from worker.sites.munich import MunichAdapter

    stack = AsyncExitStack()
    pool = await stack.enter_async_context(BrowserPool(settings))
    pacer = pacer_from_settings(settings)
    adapters = {"munich": MunichAdapter(solver=InPageAltchaSolver(), pacer=pacer, settings=settings)}
    _current = Runtime(settings=settings, pool=pool, adapters=adapters, stack=stack)
    return _current


async def stop() -> None:
    global _current
    if _current is not None:
        runtime, _current = _current, None
        await runtime.stack.aclose()


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no browser in this worker process: see the 'browser launch failed' log line")
    return _current
