"""Plain types shared by the worker (which produces them) and the recording code (which stores them).

A check ends either in an ``Observation`` or in a ``CheckFailure``; each failure type carries the
``CheckOutcome`` it is recorded as, so the retry policy can be chosen by type alone.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

SITE_TIMEZONE = ZoneInfo("Europe/Berlin")
"""Munich's site formats days and times in this zone; subscription filters are evaluated in it."""
DEFAULT_SITE = "munich"


class CheckOutcome(enum.StrEnum):
    OK = "ok"
    NO_SLOTS = "no_slots"
    RATE_LIMITED = "rate_limited"
    CAPTCHA = "captcha"
    SITE_ERROR = "site_error"
    LAYOUT_CHANGED = "layout_changed"
    TIMEOUT = "timeout"


def ensure_utc(value: datetime, what: str = "datetime") -> datetime:
    """Aware UTC or a loud error: a naive time is ambiguous between Berlin and UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def office_key(office_ids: Iterable[int]) -> str:
    """Canonical text form of an office set: sorted, de-duplicated, comma-separated."""
    ids = sorted({int(i) for i in office_ids})
    return ",".join(str(i) for i in ids)


def parse_office_key(key: str) -> tuple[int, ...]:
    return tuple(int(p) for p in key.split(",") if p)


@dataclass(frozen=True, slots=True)
class TargetKey:
    """What one check asks the site about: one service (and count) at a set of offices."""

    site: str
    service_id: int
    service_count: int
    office_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "office_ids", parse_office_key(office_key(self.office_ids)))

    @property
    def office_key(self) -> str:
        return office_key(self.office_ids)


@dataclass(frozen=True, slots=True)
class SlotSeen:
    """One free appointment start as the site showed it."""

    office_id: int
    service_id: int
    start: datetime
    """Aware; normalised to UTC."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, "SlotSeen.start"))

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(SITE_TIMEZONE)


@dataclass(frozen=True)
class Observation:
    """The free slots one successful check saw for one target."""

    site: str
    service_id: int
    service_count: int
    office_ids: tuple[int, ...]
    observed_at: datetime
    slots: list[SlotSeen] = field(default_factory=list)
    source: str = "calendar"
    """How the slots were read, e.g. "calendar" (the page's own request), "dom", "har"."""
    covered_days: frozenset[date] | None = None
    """Local (Europe/Berlin) days whose free slots this observation lists completely; a listed day
    without slots had none free. Open slots on other days are left alone (neither seen nor gone),
    because the site returns slot times for one day per request. None: complete for every day."""
    observation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Recording the same id twice is a no-op (a redelivered message)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "observed_at", ensure_utc(self.observed_at, "Observation.observed_at"))
        object.__setattr__(self, "office_ids", parse_office_key(office_key(self.office_ids)))

    @property
    def key(self) -> TargetKey:
        return TargetKey(self.site, self.service_id, self.service_count, self.office_ids)

    def covers(self, start: datetime) -> bool:
        """Whether a slot starting at ``start`` would have been listed had it been free."""
        if self.covered_days is None:
            return True
        return start.astimezone(SITE_TIMEZONE).date() in self.covered_days


class CheckFailure(Exception):
    """A check that did not produce an observation; ``outcome`` is how it is recorded."""

    outcome: ClassVar[CheckOutcome] = CheckOutcome.SITE_ERROR


class RateLimited(CheckFailure):
    """The site answered 429; ``reset_at`` is when its window resets, if it said so."""

    outcome = CheckOutcome.RATE_LIMITED

    def __init__(self, message: str = "rate limited", *, reset_at: datetime | None = None) -> None:
        super().__init__(message)
        self.reset_at = ensure_utc(reset_at, "reset_at") if reset_at is not None else None


class CaptchaRequired(CheckFailure):
    """The captcha could not be passed or its token was refused."""

    outcome = CheckOutcome.CAPTCHA


class SiteUnavailable(CheckFailure):
    """5xx, maintenance page, connection refused."""

    outcome = CheckOutcome.SITE_ERROR

    def __init__(self, message: str = "site unavailable", *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LayoutChanged(CheckFailure):
    """The page or API no longer looks as the adapter expects."""

    outcome = CheckOutcome.LAYOUT_CHANGED


class CheckTimeout(CheckFailure):
    """The check did not finish in time."""

    outcome = CheckOutcome.TIMEOUT


__all__ = [
    "DEFAULT_SITE",
    "SITE_TIMEZONE",
    "CaptchaRequired",
    "CheckFailure",
    "CheckOutcome",
    "CheckTimeout",
    "LayoutChanged",
    "Observation",
    "RateLimited",
    "SiteUnavailable",
    "SlotSeen",
    "TargetKey",
    "ensure_utc",
    "office_key",
    "parse_office_key",
    "utcnow",
]
