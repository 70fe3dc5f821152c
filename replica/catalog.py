"""The ``offices-and-services`` catalogue, built from the real DLDB export.

``shared/data/munich-catalog.json`` holds offices and services with their public flags; this module
adds what the citizen API derives from the scopes (spec §2.3, §5): the ThinnedScope of each office
(captcha, reservation and activation minutes, custom fields, mails per address), relations with
the number of slot units a service needs, the Munich rules (shared booking at Ruppertstraße,
passport services hidden on 10489), and drops everything that is not public.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from shared.catalog import offered_at

SLOT_MINUTES = 15
"""Length of one slot unit at every office (``slotTimeInMinutes``); a service needs
``ceil(duration / SLOT_MINUTES)`` consecutive units (the relation's ``slots``)."""


class OfficeGroup(StrEnum):
    BUERGERBUERO = "buergerbuero"
    FUEHRERSCHEIN = "fuehrerscheinstelle"
    AUSLAENDER = "auslaenderbehoerde"
    AUSLAENDER_NOTFALL = "auslaenderbehoerde-notfall"
    EINBUERGERUNG = "einbuergerung"
    KFZ = "kfz"
    OTHER = "other"


@dataclass(frozen=True)
class ScopeSettings:
    """The scope fields that differ between office groups (spec §5, scope test data)."""

    captcha: bool
    reservation_min: int
    activation_min: int | None
    appointments_per_mail: str | None
    email_required: bool = True
    telephone_activated: bool = True
    telephone_required: bool = False
    custom1_activated: bool = False
    custom1_required: bool = False
    custom1_label: str | None = None
    custom2_activated: bool = False
    custom2_required: bool = False
    custom2_label: str | None = None
    info_for_all: str | None = None


_INFO_BB = (
    "<p>Termine für den gleichen Tag werden Montag bis Freitag zwischen 7 und 8 Uhr freigeschaltet, "
    "Termine für die nächste Woche zwischen 9 und 11 Uhr. Termine sechs Wochen im Voraus werden "
    "über Nacht freigeschaltet.</p>"
)
_INFO_FS = (
    "<p>Termine für den gleichen Tag werden zwischen 7 und 8 Uhr freigeschaltet, Termine 14 Tage "
    "im Voraus zwischen 7:30 und 8:30 Uhr.</p>"
)
_INFO_ABH = (
    "<p>Termine für den gleichen Tag werden Montag, Mittwoch und Freitag gegen 7 Uhr, Dienstag und "
    "Donnerstag gegen 8 Uhr freigeschaltet; Termine für die nächste Woche zwischen 9 und 13 Uhr; "
    "Termine drei Monate im Voraus nachts.</p>"
)
_INFO_NOTFALL = (
    "<p>Notfalltermine werden Montag, Mittwoch und Freitag um 6:30 Uhr, Dienstag und Donnerstag um "
    "7:30 Uhr freigeschaltet.</p>"
)
_INFO_KFZ = "<p>Termine werden 7 Tage im Voraus Montag bis Freitag zwischen 7 und 8 Uhr freigeschaltet.</p>"

SCOPE_SETTINGS: dict[OfficeGroup, ScopeSettings] = {
    OfficeGroup.BUERGERBUERO: ScopeSettings(
        captcha=True,
        reservation_min=15,
        activation_min=30,
        appointments_per_mail="3",
        custom1_activated=True,
        custom1_label="Zusätzliche Bemerkungen",
        info_for_all=_INFO_BB,
    ),
    OfficeGroup.FUEHRERSCHEIN: ScopeSettings(
        captcha=False,
        reservation_min=15,
        activation_min=60,
        appointments_per_mail=None,
        custom1_activated=True,
        custom1_required=True,
        custom1_label="Geburtsdatum",
        info_for_all=_INFO_FS,
    ),
    OfficeGroup.AUSLAENDER: ScopeSettings(
        captcha=False,
        reservation_min=15,
        activation_min=60,
        appointments_per_mail=None,
        info_for_all=_INFO_ABH,
    ),
    OfficeGroup.AUSLAENDER_NOTFALL: ScopeSettings(
        captcha=True,
        reservation_min=10,
        activation_min=15,
        appointments_per_mail=None,
        info_for_all=_INFO_NOTFALL,
    ),
    OfficeGroup.EINBUERGERUNG: ScopeSettings(
        captcha=False,
        reservation_min=5,
        activation_min=15,
        appointments_per_mail="4",
        custom1_activated=True,
        custom1_required=True,
        custom1_label="Fallnummer und Name des Sachbearbeiters",
    ),
    OfficeGroup.KFZ: ScopeSettings(
        captcha=False,
        reservation_min=15,
        activation_min=60,
        appointments_per_mail=None,
        info_for_all=_INFO_KFZ,
    ),
    OfficeGroup.OTHER: ScopeSettings(
        captcha=False,
        reservation_min=15,
        activation_min=60,
        appointments_per_mail=None,
    ),
}

NOTFALL_OFFICE_IDS = frozenset({10187259, 10461})
EINBUERGERUNG_OFFICE_ID = 10471
_AUSLAENDER_NAMES = ("Ausländerbehörde", "Studenten", "Schnellschalter", "Dokumentenausgabe")

PRIORITIES = {10489: 100, 102522: 90, 54261: 80, 102524: 70, 102523: 60, 102526: 50}
SHARED_BOOKING_GROUP = (10489, 10503, 10500, 10491)
DISABLED_SERVICES_MIX_GROUP = (10489, 10491, 10500, 10502)
EXCLUSIVE_NAME_PREFIXES = ("Standesamt", "Sozial")
EXCLUSIVE_OFFICE_IDS = frozenset({54285})

_UNIT_RE = re.compile(r"\(([^()]*)\)\s*$")


def office_group(office_id: int, display_name: str) -> OfficeGroup:
    """Which scope settings an office gets, from its id and DLDB display name."""
    if office_id == EINBUERGERUNG_OFFICE_ID:
        return OfficeGroup.EINBUERGERUNG
    if office_id in NOTFALL_OFFICE_IDS:
        return OfficeGroup.AUSLAENDER_NOTFALL
    if display_name.startswith("Bürgerbüro"):
        return OfficeGroup.BUERGERBUERO
    if display_name.startswith("Führerscheinstelle"):
        return OfficeGroup.FUEHRERSCHEIN
    if display_name.startswith("Servicestelle für Zuwanderung") or display_name in _AUSLAENDER_NAMES:
        return OfficeGroup.AUSLAENDER
    if display_name.lower().startswith("kfz"):
        return OfficeGroup.KFZ
    return OfficeGroup.OTHER


@dataclass(frozen=True)
class Office:
    id: int
    name: str
    """The public name (DLDB ``displayName``)."""
    internal_name: str
    public: bool
    street: str
    house_number: str
    postal_code: str
    city: str
    lat: str
    lon: str
    organization_unit: str
    service_ids: tuple[int, ...]
    group: OfficeGroup
    scope_id: int

    @property
    def scope(self) -> ScopeSettings:
        return SCOPE_SETTINGS[self.group]

    @property
    def short_name(self) -> str:
        match = _UNIT_RE.search(self.internal_name)
        return match.group(1) if match else self.name


@dataclass(frozen=True)
class Service:
    id: int
    name: str
    public: bool
    max_quantity: int
    duration_min: int
    show_on_start_page: bool
    combinable: tuple[int, ...]


def default_catalog_path() -> Path:
    """The catalogue copy shipped as package data in ``shared/data``."""
    return Path(str(resources.files("shared").joinpath("data/munich-catalog.json")))


class Catalog:
    """Offices, services and public relations, and the API payload built from them."""

    def __init__(self, offices: dict[int, Office], services: dict[int, Service]) -> None:
        self.offices = offices
        self.services = services
        self._slots: dict[tuple[int, int], int] = {}
        for office in offices.values():
            if not office.public:
                continue
            for sid in office.service_ids:
                service = services.get(sid)
                if service is None or not service.public:
                    continue
                if not offered_at(office.id, sid):
                    continue
                self._slots[(office.id, sid)] = max(1, math.ceil(service.duration_min / SLOT_MINUTES))

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        raw = json.loads((path or default_catalog_path()).read_text(encoding="utf-8"))
        services = {
            int(s["id"]): Service(
                id=int(s["id"]),
                name=s["name"],
                public=bool(s["public"]),
                max_quantity=int(s.get("maxQuantity") or 1),
                duration_min=int(s.get("duration") or SLOT_MINUTES),
                show_on_start_page=bool(s.get("showOnStartPage", True)),
                combinable=tuple(int(c) for c in s.get("combinable") or ()),
            )
            for s in raw["services"]
        }
        # a relation is listed on either side of the export; take the union
        by_office: dict[int, set[int]] = {
            int(o["id"]): {int(x) for x in o["serviceIds"]} for o in raw["offices"]
        }
        for s in raw["services"]:
            for oid in s.get("locationIds") or ():
                by_office.setdefault(int(oid), set()).add(int(s["id"]))
        offices: dict[int, Office] = {}
        for index, o in enumerate(sorted(raw["offices"], key=lambda o: int(o["id"]))):
            oid = int(o["id"])
            address = o.get("address") or {}
            geo = o.get("geo") or {}
            offices[oid] = Office(
                id=oid,
                name=o.get("displayName") or o["name"],
                internal_name=o["name"],
                public=bool(o["public"]),
                street=address.get("street", ""),
                house_number=str(address.get("house_number", "")),
                postal_code=str(address.get("postal_code", "")),
                city=address.get("city", "München"),
                lat=str(geo.get("lat", "")),
                lon=str(geo.get("lon", "")),
                organization_unit=o.get("organizationUnit") or "Kreisverwaltungsreferat",
                service_ids=tuple(sorted(by_office.get(oid, ()))),
                group=office_group(oid, o.get("displayName") or o["name"]),
                scope_id=100 + index,
            )
        return cls(offices, services)

    # --- lookups ---------------------------------------------------------------------------------
    def offers(self, office_id: int, service_id: int) -> bool:
        """Whether the office publicly offers the service (a public relation exists)."""
        return (office_id, service_id) in self._slots

    def relation_slots(self, office_id: int, service_id: int) -> int:
        """Slot units one unit of the service takes at the office (1 if not offered)."""
        return self._slots.get((office_id, service_id), 1)

    def units_needed(self, office_id: int, service_ids: list[int], counts: list[int]) -> int:
        """Consecutive slot units a booking of these services and counts occupies."""
        return sum(self.relation_slots(office_id, s) * c for s, c in zip(service_ids, counts, strict=False))

    def public_office(self, office_id: int) -> Office | None:
        office = self.offices.get(office_id)
        return office if office is not None and office.public else None

    def requires_captcha(self, office_ids: list[int]) -> bool:
        return any(
            (office := self.public_office(oid)) is not None and office.scope.captcha for oid in office_ids
        )

    def shared_group(self, office_id: int) -> tuple[int, ...] | None:
        return SHARED_BOOKING_GROUP if office_id in SHARED_BOOKING_GROUP else None

    def offices_offering(self, service_id: int) -> list[int]:
        return sorted(oid for (oid, sid) in self._slots if sid == service_id)

    # --- payload ---------------------------------------------------------------------------------
    def thinned_scope(self, office_id: int) -> dict[str, Any]:
        """The office's ThinnedScope (spec §2.3)."""
        office = self.offices[office_id]
        scope = office.scope
        return {
            "id": office.scope_id,
            "provider": {
                "id": office.id,
                "name": office.internal_name,
                "displayName": office.name,
                "lat": float(office.lat) if office.lat else None,
                "lon": float(office.lon) if office.lon else None,
                "source": "dldb",
                "contact": {
                    "city": office.city,
                    "country": "Germany",
                    "name": office.name,
                    "postalCode": office.postal_code,
                    "region": office.city,
                    "street": office.street,
                    "streetNumber": office.house_number,
                },
            },
            "shortName": office.short_name,
            "emailFrom": "terminvereinbarung@muenchen.de",
            "emailRequired": scope.email_required,
            "telephoneActivated": scope.telephone_activated,
            "telephoneRequired": scope.telephone_required,
            "customTextfieldActivated": scope.custom1_activated,
            "customTextfieldRequired": scope.custom1_required,
            "customTextfieldLabel": scope.custom1_label,
            "customTextfield2Activated": scope.custom2_activated,
            "customTextfield2Required": scope.custom2_required,
            "customTextfield2Label": scope.custom2_label,
            "captchaActivatedRequired": scope.captcha,
            "infoForAppointment": None,
            "infoForAllAppointments": scope.info_for_all,
            "slotsPerAppointment": None,
            "appointmentsPerMail": scope.appointments_per_mail,
            "whitelistedMails": None,
            "reservationDuration": scope.reservation_min,
            "activationDuration": scope.activation_min,
            "hint": None,
        }

    def office_payload(self, office: Office) -> dict[str, Any]:
        exclusive = office.id in EXCLUSIVE_OFFICE_IDS or office.name.startswith(EXCLUSIVE_NAME_PREFIXES)
        return {
            "id": office.id,
            "name": office.name,
            "address": {
                "street": office.street,
                "house_number": office.house_number,
                "postal_code": office.postal_code,
                "city": office.city,
                "hint": None,
            },
            "showAlternativeLocations": not exclusive,
            "displayNameAlternatives": [],
            "organization": "Landeshauptstadt München",
            "organizationUnit": office.organization_unit,
            "slotTimeInMinutes": SLOT_MINUTES,
            "geo": {"lat": office.lat, "lon": office.lon},
            "disabledByServices": [],
            "priority": PRIORITIES.get(office.id, 1),
            "scope": self.thinned_scope(office.id),
            "slotsPerAppointment": None,
            "parentId": None,
            "allowDisabledServicesMix": (
                list(DISABLED_SERVICES_MIX_GROUP) if office.id in DISABLED_SERVICES_MIX_GROUP else None
            ),
            "sharedBookingOfficeIds": list(SHARED_BOOKING_GROUP)
            if office.id in SHARED_BOOKING_GROUP
            else None,
        }

    def _combinable(self, service: Service) -> dict[str, dict[str, list[int]]] | list[Any]:
        """``{"<sid>": {"<sid>": [offices offering both]}}``, or ``[]`` (PHP's empty array)."""
        own = set(self.offices_offering(service.id))
        result: dict[str, dict[str, list[int]]] = {}
        for other in service.combinable:
            both = sorted(own & set(self.offices_offering(other)))
            if both:
                result[str(other)] = {str(other): both}
        return result or []

    def service_payload(self, service: Service) -> dict[str, Any]:
        return {
            "id": service.id,
            "name": service.name,
            "maxQuantity": service.max_quantity,
            "combinable": self._combinable(service),
            "parentId": None,
            "variantId": None,
            "rootParentId": service.id,
            "showOnStartPage": service.show_on_start_page,
        }

    @cached_property
    def _payload(self) -> str:
        offices = [
            self.office_payload(o) for o in sorted(self.offices.values(), key=lambda o: o.id) if o.public
        ]
        listed_services = {sid for (_oid, sid) in self._slots}
        services = [self.service_payload(self.services[sid]) for sid in sorted(listed_services)]
        relations = [
            {
                "officeId": oid,
                "serviceId": sid,
                "slots": slots,
                "public": True,
                "maxQuantity": self.services[sid].max_quantity,
            }
            for (oid, sid), slots in sorted(self._slots.items())
        ]
        return json.dumps({"offices": offices, "services": services, "relations": relations})

    def payload(self) -> dict[str, Any]:
        """The ``offices-and-services`` response body (a fresh copy)."""
        result: dict[str, Any] = json.loads(self._payload)
        return result
