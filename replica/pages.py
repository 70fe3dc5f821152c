"""The replica's pages: the host page with the booking web component, and the component's assets.

The front end is our own plain HTML, CSS and JavaScript in ``replica/static`` (no build step). It
copies the city's steps, German labels, element ids, hash routes, shadow DOM and API call order
(shared/site/munich-site.md §3-§4), so the browser adapter can be tested against it.

A *layout variant* lets a scenario change the page under a watcher, so a watcher keyed on the spec's
DOM notices: ``renamed-timeslot-ids`` gives the time-slot buttons other ids and classes
(``button.slot-btn#slot-<officeId>-<epoch>``), ``renamed-buttons`` relabels the step buttons
("Fortfahren" for "Weiter", "Reservierung abschicken" for "Termin reservieren"), ``no-shadow-dom``
renders the component into the light DOM, ``renamed-day-tiles`` takes role=button, the class and the
aria-label off the calendar's day tiles (``div.muc-calendar-day``). The variant is read on every
page load from the provider set with :func:`set_layout_provider` or else from the replica state
(``app.state.replica``).

The page also follows the API release the state serves: with ``legacy_api`` it uses the <= muc45
availability endpoints, and a renamed calendar endpoint (``calendar_path``) is passed on, so the
page keeps working for a person while a watcher keyed on the old names sees the change.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from replica.config import API_PREFIX, PAGE_PATH
from replica.state import CALENDAR_ENDPOINT, LAYOUT_DEFAULT
from replica.state import LAYOUT_VARIANTS as STATE_LAYOUT_VARIANTS

__all__ = [
    "API_BASE",
    "LAYOUT_VARIANTS",
    "PAGE_PATH",
    "STATIC_DIR",
    "current_layout_variant",
    "render_host_page",
    "router",
    "set_layout_provider",
]

STATIC_DIR = Path(__file__).parent / "static"
EN_PAGE_PATH = "/en/buergerservice/terminvereinbarung.html/"
ASSET_PREFIX = "/buergeransicht"
API_BASE = API_PREFIX
LAYOUT_VARIANTS = frozenset({*STATE_LAYOUT_VARIANTS, "renamed-ids"})
"""The state's variants, plus ``renamed-ids`` as another name for ``renamed-timeslot-ids``."""

_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(js|css)$")
_MEDIA_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
# Assets change while developing and between scenario runs; a browser must never keep a stale copy.
_NO_CACHE = {"Cache-Control": "no-cache"}

LayoutProvider = Callable[[], str]
_layout_provider: LayoutProvider | None = None

router = APIRouter()


def set_layout_provider(provider: LayoutProvider | None) -> None:
    """Install (or, with None, remove) the function that names the current layout variant."""
    global _layout_provider
    _layout_provider = provider


def current_layout_variant(request: Request | None = None) -> str:
    """The layout variant to render now.

    Looked up in this order: the provider from :func:`set_layout_provider`, then
    ``app.state.replica.layout_variant`` (the :class:`replica.state.ReplicaState`, which the control
    API's ``POST /_replica/faults {"layout_variant": ...}`` sets). Unknown names give ``default``.
    """
    value: Any = None
    if _layout_provider is not None:
        value = _layout_provider()
    elif request is not None:
        replica_state = getattr(request.app.state, "replica", None)
        value = getattr(replica_state, "layout_variant", None)
    return value if isinstance(value, str) and value in LAYOUT_VARIANTS else LAYOUT_DEFAULT


def render_host_page(
    *,
    layout_variant: str = LAYOUT_DEFAULT,
    lang: str = "de",
    base_url: str | None = None,
    legacy_api: bool = False,
    calendar_endpoint: str = CALENDAR_ENDPOINT,
) -> str:
    """The host page HTML; ``base_url`` overrides the component's API base (default: relative)."""
    template = (STATIC_DIR / "terminvereinbarung.html").read_text(encoding="utf-8")
    base_url_attr = f' base-url="{html.escape(base_url)}"' if base_url else ""
    calendar_attrs = ' data-calendar-api="legacy"' if legacy_api else ""
    if calendar_endpoint != CALENDAR_ENDPOINT:
        calendar_attrs += f' data-calendar-endpoint="{html.escape(calendar_endpoint)}"'
    replacements = {
        "{lang}": html.escape(lang),
        "{detail_url}": html.escape(PAGE_PATH),
        "{base_url_attr}": base_url_attr,
        "{calendar_attrs}": calendar_attrs,
        "{layout_variant}": html.escape(layout_variant),
    }
    for placeholder, value in replacements.items():
        template = template.replace(placeholder, value)
    return template


def _page_for(request: Request, lang: str) -> HTMLResponse:
    replica_state = getattr(request.app.state, "replica", None)
    page = render_host_page(
        layout_variant=current_layout_variant(request),
        lang=lang,
        legacy_api=bool(getattr(replica_state, "legacy_api", False)),
        calendar_endpoint=str(getattr(replica_state, "calendar_path", CALENDAR_ENDPOINT)),
    )
    return HTMLResponse(page, headers=_NO_CACHE)


@router.get(PAGE_PATH, response_class=HTMLResponse, include_in_schema=False)
def host_page(request: Request) -> HTMLResponse:
    """The city's Magnolia page: a title and the ``<zms-appointment>`` embed."""
    return _page_for(request, "de")


@router.get(EN_PAGE_PATH, response_class=HTMLResponse, include_in_schema=False)
def host_page_en(request: Request) -> HTMLResponse:
    """The English page embeds the same component; the city's widget stays German there too."""
    return _page_for(request, "en")


@router.get(ASSET_PREFIX + "/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    """The component's scripts and styles (one flat folder; nothing else is served from it)."""
    match = _ASSET_NAME.match(name)
    path = STATIC_DIR / name
    if match is None or not path.is_file():
        raise HTTPException(status_code=404)
    return FileResponse(path, media_type=_MEDIA_TYPES[match.group(1)], headers=_NO_CACHE)
