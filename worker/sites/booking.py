"""What a booking takes and gives, for every site: the slot, the contact details, the city's hold
and the outcomes (``SiteBooker`` in ``worker.sites.base``; the Munich booker fills them in).

Outcomes are values, site trouble is a ``CheckFailure``: a slot lost to someone faster is
``SlotTaken``, a profile the site refuses ``Refused``, a reservation that ran out ``HoldLost``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain import ensure_utc

_ALIASES_BY_LABEL = (
    ("geburtsdatum", ("date_of_birth", "geburtsdatum", "birth_date", "birthdate")),
    ("fallnummer", ("case_reference", "fallnummer")),
)
"""Profile keys (``shared.profile_rules.CustomFieldKind`` and plain names) for the labels the
offices give their custom field (spec §5: Führerscheinstelle, Einbürgerung)."""


# --- what goes in --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlotToBook:
    """One appointment start at one office, for ``service_count`` units of one service."""

    office_id: int
    service_id: int
    start: datetime
    service_count: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, "SlotToBook.start"))

    @property
    def timestamp(self) -> int:
        return int(self.start.timestamp())


STANDBY_DATA_KEY = "standby"
"""``BrowserSession.site_data`` key under which a prepared session keeps its ``Standby``."""


@dataclass(frozen=True)
class Standby:
    """A booking page kept ready for one target: the site, service, office and count it was
    walked for. Only a slot of exactly this target can be booked from it."""

    site: str
    service_id: int
    office_id: int
    service_count: int = 1

    @property
    def key(self) -> str:
        """The browser pool's key for the standby session."""
        return f"standby:{self.site}:{self.service_id}:{self.office_id}:{self.service_count}"

    def fits(self, slot: SlotToBook) -> bool:
        return (slot.service_id, slot.office_id, slot.service_count) == (
            self.service_id,
            self.office_id,
            self.service_count,
        )


@dataclass(frozen=True)
class Contact:
    """The decrypted booking profile; its repr never shows personal data."""

    first_name: str
    last_name: str
    email: str
    phone: str | None = None
    custom_fields: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Contact(fields={sorted(k for k, v in self._values().items() if v)!r})"

    def _values(self) -> dict[str, str | None]:
        return {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "phone": self.phone,
            **dict(self.custom_fields),
        }

    def custom_value(self, key: str, label: str | None) -> str | None:
        """The value for the office's custom field ``key`` (customTextfield/customTextfield2) shown
        with ``label``: by key, then by label (case-insensitive), then known aliases (Geburtsdatum)."""
        fields = {k.casefold(): v for k, v in self.custom_fields.items() if v}
        if key.casefold() in fields:
            return fields[key.casefold()]
        if label:
            wanted = label.casefold().strip()
            if wanted in fields:
                return fields[wanted]
            for marker, aliases in _ALIASES_BY_LABEL:
                if marker in wanted:
                    for alias in aliases:
                        if alias in fields:
                            return fields[alias]
        return None


@dataclass(frozen=True)
class CityHold:
    """The city's reservation: what the reserve response gave us."""

    process_id: str
    auth_key: str
    reservation_minutes: int

    def __repr__(self) -> str:  # the auth key is a credential
        return f"CityHold(process_id={self.process_id!r})"


OnReserved = Callable[[CityHold], Awaitable[None]]


# --- what comes out ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preconfirmed:
    """The city e-mailed the activation link; the hold lasts ``activation_minutes``."""

    hold: CityHold
    activation_minutes: int
    page_confirmed: bool
    """The page showed "Aktivieren Sie Ihren Termin." as well as the API saying preconfirmed."""


@dataclass(frozen=True)
class SlotTaken:
    """Someone else was faster (``appointmentNotAvailable``, or the slot is no longer shown)."""

    code: str
    detail: str = ""


@dataclass(frozen=True)
class Refused:
    """The site refused the profile: which field and why. Never retried with the same profile."""

    field: str
    code: str
    reason: str
    hold: CityHold | None = None
    """The reservation still held at the city (the caller cancels it)."""


@dataclass(frozen=True)
class HoldLost:
    """The reservation ran out before the walk finished (``processNotReservedAnymore``)."""

    hold: CityHold
    code: str


BookingResult = Preconfirmed | SlotTaken | Refused | HoldLost


@dataclass(frozen=True)
class AppointmentState:
    """What the site says about a process now: ``found`` False means unknown, expired or cancelled."""

    found: bool
    status: str | None = None
    code: str | None = None
    office_id: int | None = None
    service_id: int | None = None
    service_count: int = 1
    start: datetime | None = None
    """Where, what and when (read for an appointment booked elsewhere: an earlier date)."""


@dataclass(frozen=True)
class CancelResult:
    cancelled: bool
    already_gone: bool = False
    code: str | None = None


__all__ = [
    "STANDBY_DATA_KEY",
    "AppointmentState",
    "BookingResult",
    "CancelResult",
    "CityHold",
    "Contact",
    "HoldLost",
    "OnReserved",
    "Preconfirmed",
    "Refused",
    "SlotTaken",
    "SlotToBook",
    "Standby",
]
