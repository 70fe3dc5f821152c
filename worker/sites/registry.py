"""The sites MTA knows: one entry per city package, used by the worker's runtime (checks and
bookings) and the recorder. A second city is a new package under ``worker/sites/`` and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings
    from worker.pacer import Pacer
    from worker.sites.base import SiteAdapter, SiteBooker


@dataclass(frozen=True)
class Site:
    """How to build one site's adapter and booker."""

    name: str
    make_adapter: Callable[..., SiteAdapter]
    """``(settings=, pacer=, today=None) -> SiteAdapter``; ``today`` pins the site's current day."""
    make_booker: Callable[[Pacer], SiteBooker]


def _munich() -> Site:
    from worker.captcha import InPageAltchaSolver
    from worker.sites.munich import selectors
    from worker.sites.munich.adapter import MunichAdapter, berlin_today
    from worker.sites.munich.booker import MunichBooker

    def adapter(*, settings: Settings, pacer: Pacer, today: Callable[[], date] | None = None) -> SiteAdapter:
        return MunichAdapter(
            solver=InPageAltchaSolver(), pacer=pacer, settings=settings, today=today or berlin_today
        )

    def booker(pacer: Pacer) -> SiteBooker:
        return MunichBooker(solver=InPageAltchaSolver(pacer=pacer), pacer=pacer)

    return Site(selectors.SITE, adapter, booker)


def sites() -> dict[str, Site]:
    """Every site, by the name targets carry (``TargetKey.site``)."""
    found = [_munich()]
    return {site.name: site for site in found}


__all__ = ["Site", "sites"]
