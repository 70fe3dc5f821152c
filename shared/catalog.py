"""The city's catalogue of offices and services, as shipped in ``shared/data/munich-catalog.json``.

Loaded once per process. Used to expand "any office" subscriptions into the offices that offer a
service, and by the bot to let people search services and offices by name. Offices and services
whose ``public`` flag is false are hidden by the site, so they are left out unless asked for.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from shared.domain import DEFAULT_SITE

PASS_SERVICES = frozenset({1063453, 1063441, 1080582})
"""Passport and ID services: the site hides them at ``PASS_HIDDEN_AT`` although the catalogue lists
them there, and books them on 10502 (the Pass calendar)."""
PASS_HIDDEN_AT = frozenset({10489})


def offered_at(office_id: int, service_id: int) -> bool:
    """False where the site hides a service that the catalogue lists at an office."""
    return not (service_id in PASS_SERVICES and office_id in PASS_HIDDEN_AT)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Office:
    id: int
    name: str
    display_name: str
    public: bool
    service_ids: frozenset[int]
    street: str = ""
    house_number: str = ""
    postal_code: str = ""
    city: str = ""
    coordinates: tuple[float, float] | None = None
    """(latitude, longitude) from the catalogue's ``geo``; for "the offices nearest to me"."""

    @property
    def address(self) -> str:
        return f"{self.street} {self.house_number}, {self.postal_code} {self.city}".strip(" ,")


@dataclass(frozen=True, slots=True)
class Service:
    id: int
    name: str
    public: bool
    max_quantity: int
    duration_min: int | None
    office_ids: frozenset[int]
    combinable: tuple[int, ...] = ()


def _fold(text: str) -> str:
    """Case- and accent-insensitive form for searching ("strasse" finds "Straße")."""
    text = text.casefold().replace("ß", "ss")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _coordinates(geo: object) -> tuple[float, float] | None:
    """``{"lat": .., "lon": ..}`` as a pair; None when missing or not numbers."""
    if not isinstance(geo, dict):
        return None
    try:
        return float(geo["lat"]), float(geo["lon"])
    except (KeyError, TypeError, ValueError):
        return None


class Catalog:
    """Offices and services of one site, with lookups in both directions."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.offices: dict[int, Office] = {}
        for raw in data.get("offices", []):
            address = raw.get("address") or {}
            office = Office(
                id=int(raw["id"]),
                name=str(raw.get("name", "")),
                display_name=str(raw.get("displayName") or raw.get("name", "")),
                public=bool(raw.get("public", True)),
                service_ids=frozenset(int(s) for s in raw.get("serviceIds", [])),
                street=str(address.get("street", "")),
                house_number=str(address.get("house_number", "")),
                postal_code=str(address.get("postal_code", "")),
                city=str(address.get("city", "")),
                coordinates=_coordinates(raw.get("geo")),
            )
            self.offices[office.id] = office
        self.services: dict[int, Service] = {}
        for raw in data.get("services", []):
            service_id = int(raw["id"])
            from_offices = {o.id for o in self.offices.values() if service_id in o.service_ids}
            combinable = raw.get("combinable") or []
            service = Service(
                id=service_id,
                name=str(raw.get("name", "")),
                public=bool(raw.get("public", True)),
                max_quantity=int(raw.get("maxQuantity") or 1),
                duration_min=int(raw["duration"]) if raw.get("duration") is not None else None,
                office_ids=frozenset({int(i) for i in raw.get("locationIds", [])} | from_offices),
                combinable=tuple(int(i) for i in combinable) if isinstance(combinable, list) else (),
            )
            self.services[service.id] = service

    def service(self, service_id: int) -> Service | None:
        return self.services.get(service_id)

    def office(self, office_id: int) -> Office | None:
        return self.offices.get(office_id)

    def offices_for_service(self, service_id: int, *, include_hidden: bool = False) -> list[Office]:
        """The offices offering a service, sorted by id; empty for an unknown service."""
        service = self.services.get(service_id)
        if service is None:
            return []
        found = (self.offices[i] for i in service.office_ids if i in self.offices)
        shown = (o for o in found if include_hidden or (o.public and offered_at(o.id, service_id)))
        return sorted(shown, key=lambda o: o.id)

    def search_services(self, query: str, *, include_hidden: bool = False, limit: int = 20) -> list[Service]:
        """Services whose name contains every word of the query; names starting with it first."""
        return _search(
            [s for s in self.services.values() if include_hidden or s.public],
            query,
            lambda s: [s.name],
            limit,
        )

    def search_offices(self, query: str, *, include_hidden: bool = False, limit: int = 20) -> list[Office]:
        return _search(
            [o for o in self.offices.values() if include_hidden or o.public],
            query,
            lambda o: [o.name, o.display_name, o.address],
            limit,
        )


def _search(items: list[T], query: str, texts: Callable[[T], list[str]], limit: int) -> list[T]:
    words = _fold(query).split()
    if not words:
        return []
    scored: list[tuple[int, str, T]] = []
    for item in items:
        folded = [_fold(t) for t in texts(item)]
        haystack = " ".join(folded)
        if all(w in haystack for w in words):
            rank = 0 if any(f.startswith(words[0]) for f in folded) else 1
            scored.append((rank, folded[0], item))
    scored.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in scored[:limit]]


def get_catalog(site: str = DEFAULT_SITE) -> Catalog:
    """The catalogue of ``site``, read once per process; only Munich's ships today."""
    return _load_catalog(site)


@cache
def _load_catalog(site: str) -> Catalog:
    if site != "munich":
        raise KeyError(f"no catalogue for site {site!r}")
    text = resources.files("shared").joinpath("data", "munich-catalog.json").read_text(encoding="utf-8")
    return Catalog(json.loads(text))


def offices_for_service(service_id: int, *, include_hidden: bool = False) -> list[Office]:
    return get_catalog().offices_for_service(service_id, include_hidden=include_hidden)


def service(service_id: int) -> Service | None:
    return get_catalog().service(service_id)


def office(office_id: int) -> Office | None:
    return get_catalog().office(office_id)


def search_services(query: str, *, limit: int = 20) -> list[Service]:
    return get_catalog().search_services(query, limit=limit)


def search_offices(query: str, *, limit: int = 20) -> list[Office]:
    return get_catalog().search_offices(query, limit=limit)


__all__ = [
    "Catalog",
    "Office",
    "Service",
    "get_catalog",
    "office",
    "offices_for_service",
    "search_offices",
    "search_services",
    "service",
]
