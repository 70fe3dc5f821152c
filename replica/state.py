"""The replica's in-memory site: free slots, appointments, mailbox, request log, faults.

Slot model (kept simple, deterministic and documented):

- Each office has *slot units* of ``SLOT_MINUTES`` (15) minutes, keyed by their start as Unix epoch
  seconds. A free unit may be restricted to a set of services (``None`` = any service the office
  offers).
- A booking of services ``S`` with counts ``C`` at office ``O`` needs
  ``n = sum(count * relation.slots)`` consecutive free units starting at the booked timestamp
  (``t, t + 15 min, ...``), each of which fits every service in ``S``. Every free unit that starts
  such a run is an appointment time the calendar shows.
- Only timestamps later than the replica clock's ``now`` are visible or bookable; the local date
  of a timestamp is its Europe/Berlin date.
- A reservation takes its ``n`` units. When it expires (scope ``reservationDuration``) or its
  preconfirmation expires (``activationDuration``) the units are free again at once; a cancelled
  appointment's units come back only ``cancel_holdback_s`` after the cancellation.

All mutation happens under one re-entrant lock: uvicorn serves from one event loop, but tests and
the scenario ticker touch the state from other threads.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from replica import mails
from replica.captcha import CaptchaService
from replica.catalog import SLOT_MINUTES, Catalog
from replica.clock import BERLIN, Clock
from replica.config import ReplicaConfig
from replica.errors import ApiError
from replica.ratelimit import RateLimiter

UNIT_S = SLOT_MINUTES * 60


class NamedScenario(Protocol):
    @property
    def name(self) -> str: ...


class RunningScenario(Protocol):
    """What the state and the control API use of a running scenario (``replica.scenarios.
    ScenarioRunner``, which imports this module: the state names the runner only by this shape)."""

    @property
    def scenario(self) -> NamedScenario: ...

    def apply_due(self, now: datetime | None = None) -> list[dict[str, Any]]: ...

    def status(self) -> dict[str, Any]: ...


PLACEHOLDER_EMAIL = "test@muenchen.de"
"""The backend keeps a placeholder address on a process until the customer data arrive."""
FIRST_PROCESS_ID = 101002
REQUEST_LOG_MAX = 200_000

LAYOUT_DEFAULT = "default"
LAYOUT_VARIANTS = ("default", "renamed-timeslot-ids", "renamed-buttons", "no-shadow-dom", "renamed-day-tiles")
"""Known page variants; the pages read ``ReplicaState.layout_variant`` and decide what changes."""
CALENDAR_ENDPOINT = "available-calendar"

FAULT_NAMES = ("storm", "maintenance", "slow", "error_500", "garbage")


class ProcessStatus(StrEnum):
    RESERVED = "reserved"
    PRECONFIRMED = "preconfirmed"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    """Reservation or activation window ran out; ``expired_from`` says which."""


@dataclass
class Process:
    process_id: int
    auth_key: str
    office_id: int
    service_ids: tuple[int, ...]
    service_counts: tuple[int, ...]
    timestamp: int
    units: tuple[int, ...]
    status: ProcessStatus
    created_at: datetime
    expires_at: datetime | None
    client_ip: str = ""
    expired_from: ProcessStatus | None = None
    family_name: str = ""
    email: str = PLACEHOLDER_EMAIL
    email_set: bool = False
    telephone: str = ""
    custom_textfield: str = ""
    custom_textfield2: str = ""
    display_number: str | None = None
    ics: str | None = None
    history: list[tuple[str, str]] = field(default_factory=list)
    restrictions: tuple[frozenset[int] | None, ...] = ()
    """The service restriction each held unit had while free, restored when it is freed."""

    def restriction(self, index: int) -> frozenset[int] | None:
        return self.restrictions[index] if index < len(self.restrictions) else None

    def summary(self) -> dict[str, Any]:
        """For the control API; no personal data beyond what the tests typed in."""
        return {
            "processId": self.process_id,
            "authKey": self.auth_key,
            "officeId": self.office_id,
            "serviceIds": list(self.service_ids),
            "serviceCounts": list(self.service_counts),
            "timestamp": self.timestamp,
            "units": list(self.units),
            "status": self.status.value,
            "expiredFrom": self.expired_from.value if self.expired_from else None,
            "createdAt": self.created_at.isoformat(),
            "expiresAt": self.expires_at.isoformat() if self.expires_at else None,
            "email": self.email,
            "history": [{"at": at, "event": ev} for at, ev in self.history],
        }


@dataclass(frozen=True)
class RequestRecord:
    time: datetime
    client_ip: str
    method: str
    path: str
    query: str
    status: int
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "clientIp": self.client_ip,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "durationMs": round(self.duration_ms, 3),
        }


@dataclass
class FaultWindow:
    """An active fault: until when (None = until cleared), which endpoints, and a value (ms)."""

    until: datetime | None = None
    endpoints: tuple[str, ...] | None = None
    value: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "until": self.until.isoformat() if self.until else None,
            "endpoints": list(self.endpoints) if self.endpoints else None,
            "value": self.value,
        }


def berlin_date(ts: int) -> date:
    return datetime.fromtimestamp(ts, BERLIN).date()


def berlin_ts(day: date, hour: int, minute: int = 0) -> int:
    """Epoch seconds of a Berlin wall-clock time."""
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN).timestamp())


class ReplicaState:
    """Everything that changes while the replica runs."""

    def __init__(
        self, config: ReplicaConfig, catalog: Catalog | None = None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.catalog = catalog or Catalog.load()
        self.clock = clock or Clock(config.start_time, frozen=config.freeze_clock)
        self.lock = threading.RLock()
        self.ratelimiter = RateLimiter(self.clock, config.rate_limit, config.rate_window_s)
        self.captcha = CaptchaService(
            self.clock,
            config.captcha_secret,
            cost=config.captcha_cost,
            challenge_ttl_s=config.captcha_challenge_ttl_s,
            token_ttl_s=config.captcha_token_ttl_s,
        )
        self.scenario: RunningScenario | None = None
        self._init_mutable()

    def _init_mutable(self) -> None:
        cfg = self.config
        self.free: dict[int, dict[int, frozenset[int] | None]] = {}
        self.held: dict[tuple[int, int], int] = {}
        self.holdback: list[tuple[datetime, int, int, frozenset[int] | None]] = []
        self.processes: dict[int, Process] = {}
        self.next_process_id = FIRST_PROCESS_ID
        self.mailbox: list[mails.Mail] = []
        self.request_log: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_MAX)
        self.faults: dict[str, FaultWindow] = {}
        if cfg.maintenance:
            self.faults["maintenance"] = FaultWindow()
        self.legacy_api = cfg.legacy_api
        self.captcha_enabled = cfg.captcha_enabled
        self.cancel_holdback_s = cfg.cancel_holdback_s
        self.page_url = cfg.page_url
        self.layout_variant = LAYOUT_DEFAULT
        self.calendar_path = CALENDAR_ENDPOINT
        self.renamed_fields: dict[str, dict[str, str]] = {}
        """Endpoint -> {answer field: new name}: a site release that renamed a field of its answers."""
        self.rng = random.Random(cfg.seed)
        self.events: list[dict[str, Any]] = []
        """What happened to slots (released, taken, expired ...), for tests and the demo."""

    def reset(self) -> None:
        """Forget everything that happened; the clock goes back to its configured start."""
        with self.lock:
            self._init_mutable()
            self.scenario = None
            self.ratelimiter.limit = self.config.rate_limit
            self.ratelimiter.reset()
            self.captcha.reset()
            self.clock.reset()
            if self.config.freeze_clock:
                self.clock.freeze()
            if self.config.start_time is not None:
                self.clock.set(self.config.start_time)

    # --- time ------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock.now()

    def tick(self) -> None:
        """Apply due scenario events, then expire reservations and release held-back slots."""
        with self.lock:
            if self.scenario is not None:
                self.scenario.apply_due()
            self._expire(self.now())

    def _expire(self, now: datetime) -> None:
        for process in self.processes.values():
            if (
                process.status in (ProcessStatus.RESERVED, ProcessStatus.PRECONFIRMED)
                and process.expires_at is not None
                and process.expires_at <= now
            ):
                process.expired_from = process.status
                process.status = ProcessStatus.EXPIRED
                process.history.append(
                    (process.expires_at.isoformat(), f"expired ({process.expired_from.value})")
                )
                self._release_units(process)
                self._event(process.expires_at, "expired", process.office_id, process.units)
        if self.holdback:
            due = [h for h in self.holdback if h[0] <= now]
            self.holdback = [h for h in self.holdback if h[0] > now]
            for release_at, office_id, ts, restriction in due:
                self.free.setdefault(office_id, {})[ts] = restriction
                self._event(release_at, "released-after-cancel", office_id, (ts,))

    def _event(self, at: datetime, kind: str, office_id: int, timestamps: Iterable[int]) -> None:
        self.events.append(
            {"at": at.isoformat(), "kind": kind, "officeId": office_id, "timestamps": list(timestamps)}
        )
        if len(self.events) > 10_000:
            del self.events[:1_000]

    # --- slots -----------------------------------------------------------------------------------
    def add_slots(
        self, office_id: int, timestamps: Iterable[int], services: Iterable[int] | None = None
    ) -> list[int]:
        """Make units free (a release); units held by an appointment stay held. Returns those added."""
        restriction = frozenset(services) if services is not None else None
        added: list[int] = []
        with self.lock:
            units = self.free.setdefault(office_id, {})
            for ts in sorted(set(int(t) for t in timestamps)):
                if (office_id, ts) in self.held:
                    continue
                if ts not in units:
                    added.append(ts)
                units[ts] = restriction
            if added:
                self._event(self.now(), "released", office_id, added)
        return added

    def remove_slots(
        self, office_id: int | None = None, timestamps: Iterable[int] | None = None, day: date | None = None
    ) -> list[tuple[int, int]]:
        """Remove free units (they vanish; held units are untouched). Returns (office, ts) removed."""
        wanted = set(int(t) for t in timestamps) if timestamps is not None else None
        removed: list[tuple[int, int]] = []
        with self.lock:
            offices = [office_id] if office_id is not None else list(self.free)
            for oid in offices:
                units = self.free.get(oid, {})
                for ts in sorted(units):
                    if wanted is not None and ts not in wanted:
                        continue
                    if day is not None and berlin_date(ts) != day:
                        continue
                    del units[ts]
                    removed.append((oid, ts))
            for oid in {o for o, _ in removed}:
                self._event(self.now(), "removed", oid, [t for o, t in removed if o == oid])
        return removed

    def take(self, office_id: int, timestamp: int, units: int = 1) -> bool:
        """A competing booker takes ``units`` consecutive units from ``timestamp`` if all are free."""
        with self.lock:
            free = self.free.get(office_id, {})
            needed = [timestamp + i * UNIT_S for i in range(units)]
            if not all(ts in free for ts in needed):
                return False
            for ts in needed:
                del free[ts]
            self._event(self.now(), "taken", office_id, needed)
            return True

    def _fits(
        self, free: dict[int, frozenset[int] | None], ts: int, needed: int, services: frozenset[int]
    ) -> bool:
        for i in range(needed):
            unit = ts + i * UNIT_S
            if unit not in free:
                return False
            restriction = free[unit]
            if restriction is not None and not services <= restriction:
                return False
        return True

    def free_starts(
        self, office_id: int, service_ids: list[int], counts: list[int], *, day: date | None = None
    ) -> list[int]:
        """Bookable appointment times (epoch s, future only, sorted) for this request at one office."""
        now_ts = self.clock.timestamp()
        needed = self.catalog.units_needed(office_id, service_ids, counts)
        wanted = frozenset(service_ids)
        with self.lock:
            free = self.free.get(office_id, {})
            return [
                ts
                for ts in sorted(free)
                if ts > now_ts
                and (day is None or berlin_date(ts) == day)
                and self._fits(free, ts, needed, wanted)
            ]

    def availability(
        self, office_ids: list[int], service_ids: list[int], counts: list[int]
    ) -> dict[date, dict[int, list[int]]]:
        """Berlin date -> office -> free appointment times, for every office that offers all services."""
        result: dict[date, dict[int, list[int]]] = {}
        for oid in dict.fromkeys(office_ids):
            if not all(self.catalog.offers(oid, sid) for sid in service_ids):
                continue
            for ts in self.free_starts(oid, service_ids, counts):
                result.setdefault(berlin_date(ts), {}).setdefault(oid, []).append(ts)
        return result

    def slot_list(self, office_id: int | None = None, day: date | None = None) -> list[dict[str, Any]]:
        """Every unit the replica knows (free, held, held back), for the control API."""
        rows: list[dict[str, Any]] = []
        with self.lock:
            for oid, units in self.free.items():
                for ts, restriction in units.items():
                    rows.append(
                        {
                            "officeId": oid,
                            "timestamp": ts,
                            "state": "free",
                            "services": sorted(restriction) if restriction is not None else None,
                        }
                    )
            for (oid, ts), pid in self.held.items():
                rows.append({"officeId": oid, "timestamp": ts, "state": "held", "processId": pid})
            for release_at, oid, ts, _r in self.holdback:
                rows.append(
                    {
                        "officeId": oid,
                        "timestamp": ts,
                        "state": "holdback",
                        "releaseAt": release_at.isoformat(),
                    }
                )
        rows = [
            r
            for r in rows
            if (office_id is None or r["officeId"] == office_id)
            and (day is None or berlin_date(r["timestamp"]) == day)
        ]
        for r in rows:
            r["local"] = datetime.fromtimestamp(r["timestamp"], BERLIN).isoformat()
        return sorted(rows, key=lambda r: (r["officeId"], r["timestamp"]))

    # --- appointments ----------------------------------------------------------------------------
    def _release_units(self, process: Process) -> None:
        for index, ts in enumerate(process.units):
            self.held.pop((process.office_id, ts), None)
            self.free.setdefault(process.office_id, {})[ts] = process.restriction(index)

    def reserve(
        self, office_id: int, service_ids: list[int], counts: list[int], timestamp: int, client_ip: str
    ) -> Process:
        """Hold the slot if ``timestamp`` is exactly a free appointment time, else appointmentNotAvailable."""
        office = self.catalog.offices[office_id]
        needed = self.catalog.units_needed(office_id, service_ids, counts)
        with self.lock:
            now = self.now()
            free = self.free.get(office_id, {})
            if timestamp <= now.timestamp() or not self._fits(
                free, timestamp, needed, frozenset(service_ids)
            ):
                raise ApiError("appointmentNotAvailable")
            units = tuple(timestamp + i * UNIT_S for i in range(needed))
            restrictions = tuple(free.pop(ts) for ts in units)
            pid = self.next_process_id
            self.next_process_id += 1
            process = Process(
                process_id=pid,
                auth_key=secrets.token_hex(32),
                office_id=office_id,
                service_ids=tuple(service_ids),
                service_counts=tuple(counts),
                timestamp=timestamp,
                units=units,
                status=ProcessStatus.RESERVED,
                created_at=now,
                expires_at=now + timedelta(minutes=office.scope.reservation_min),
                client_ip=client_ip,
                restrictions=restrictions,
            )
            process.history.append((now.isoformat(), "reserved"))
            for ts in units:
                self.held[(office_id, ts)] = pid
            self.processes[pid] = process
            self._event(now, "reserved", office_id, units)
            return process

    def lookup(self, process_id: int, auth_key: str) -> Process:
        """The process, or appointmentNotFound (unknown, cancelled) / authKeyMismatch."""
        with self.lock:
            process = self.processes.get(process_id)
            if process is None or process.status is ProcessStatus.CANCELLED:
                raise ApiError("appointmentNotFound")
            if not secrets.compare_digest(process.auth_key, auth_key):
                raise ApiError("authKeyMismatch")
            return process

    def readable(self, process_id: int, auth_key: str) -> Process:
        """For GET appointment: expired processes are gone (appointmentNotFound)."""
        process = self.lookup(process_id, auth_key)
        if process.status is ProcessStatus.EXPIRED:
            raise ApiError("appointmentNotFound")
        return process

    def update(
        self,
        process_id: int,
        auth_key: str,
        *,
        family_name: str,
        email: str,
        telephone: str,
        custom_textfield: str,
        custom_textfield2: str,
    ) -> Process:
        with self.lock:
            process = self.lookup(process_id, auth_key)
            if process.status is not ProcessStatus.RESERVED:
                raise ApiError("processNotReservedAnymore")
            office = self.catalog.offices[process.office_id]
            limit = office.scope.appointments_per_mail
            if limit and email and int(limit) > 0:
                same = sum(
                    1
                    for p in self.processes.values()
                    if p.process_id != process.process_id
                    and p.email_set
                    and p.email.lower() == email.lower()
                    and self.catalog.offices[p.office_id].scope_id == office.scope_id
                    and p.status
                    in (ProcessStatus.RESERVED, ProcessStatus.PRECONFIRMED, ProcessStatus.CONFIRMED)
                )
                if same >= int(limit):
                    raise ApiError("tooManyAppointmentsWithSameMail")
            process.family_name = family_name
            if email:
                process.email = email
                process.email_set = True
            process.telephone = telephone
            process.custom_textfield = custom_textfield
            process.custom_textfield2 = custom_textfield2
            process.history.append((self.now().isoformat(), "updated"))
            return process

    def _facts(self, process: Process) -> mails.AppointmentFacts:
        office = self.catalog.offices[process.office_id]
        names = [self.catalog.services[s].name for s in process.service_ids if s in self.catalog.services]
        return mails.AppointmentFacts(
            process_id=process.process_id,
            auth_key=process.auth_key,
            family_name=process.family_name,
            email=process.email,
            office_name=office.name,
            address=f"{office.street} {office.house_number}, {office.postal_code} {office.city}",
            services=", ".join(names),
            timestamp=process.timestamp,
            activation_min=office.scope.activation_min,
        )

    def _send(self, kind: str, process: Process, content: tuple[str, str, list[dict[str, str]]]) -> None:
        subject, body, links = content
        self.mailbox.append(
            mails.Mail(
                id=len(self.mailbox) + 1,
                sent_at=self.now(),
                kind=kind,
                to=process.email,
                subject=subject,
                body=body,
                links=links,
                process_id=process.process_id,
                ics=process.ics if kind == "confirmation" else None,
            )
        )

    def preconfirm(self, process_id: int, auth_key: str, page_url: str) -> Process:
        with self.lock:
            process = self.lookup(process_id, auth_key)
            if process.status is not ProcessStatus.RESERVED:
                raise ApiError("processNotReservedAnymore")
            now = self.now()
            office = self.catalog.offices[process.office_id]
            process.status = ProcessStatus.PRECONFIRMED
            process.expires_at = now + timedelta(minutes=office.scope.activation_min or 60)
            process.history.append((now.isoformat(), "preconfirmed"))
            self._send("activation", process, mails.activation_mail(self._facts(process), page_url))
            return process

    def confirm(self, process_id: int, auth_key: str, page_url: str) -> Process:
        with self.lock:
            process = self.lookup(process_id, auth_key)
            if process.status is ProcessStatus.EXPIRED and process.expired_from is ProcessStatus.PRECONFIRMED:
                raise ApiError("preconfirmationExpired")
            if process.status is not ProcessStatus.PRECONFIRMED:
                raise ApiError("processNotPreconfirmedAnymore")
            now = self.now()
            process.status = ProcessStatus.CONFIRMED
            process.expires_at = None
            process.display_number = str(process.process_id)[-4:]
            duration = sum(
                self.catalog.relation_slots(process.office_id, s) * c * SLOT_MINUTES
                for s, c in zip(process.service_ids, process.service_counts, strict=False)
            )
            process.ics = mails.ics_content(self._facts(process), duration, now)
            process.history.append((now.isoformat(), "confirmed"))
            self._send("confirmation", process, mails.confirmation_mail(self._facts(process), page_url))
            return process

    def cancel(self, process_id: int, auth_key: str) -> Process:
        with self.lock:
            process = self.lookup(process_id, auth_key)
            if process.status is ProcessStatus.EXPIRED:
                raise ApiError("appointmentNotFound")
            now = self.now()
            if process.timestamp <= now.timestamp():
                raise ApiError("appointmentCanNotBeCanceled")
            was = process.status
            process.status = ProcessStatus.CANCELLED
            process.expires_at = None
            process.history.append((now.isoformat(), "cancelled"))
            release_at = now + timedelta(seconds=self.cancel_holdback_s)
            for index, ts in enumerate(process.units):
                self.held.pop((process.office_id, ts), None)
                self.holdback.append((release_at, process.office_id, ts, process.restriction(index)))
            self._event(now, "cancelled", process.office_id, process.units)
            if was is not ProcessStatus.RESERVED:
                self._send("cancellation", process, mails.cancellation_mail(self._facts(process)))
            return process

    # --- faults ----------------------------------------------------------------------------------
    def set_fault(
        self,
        name: str,
        *,
        duration_s: float | None = None,
        endpoints: Iterable[str] | None = None,
        value: int = 0,
        start: datetime | None = None,
    ) -> FaultWindow:
        """Switch a fault on for ``duration_s`` from ``start`` (default now), or until cleared."""
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
        until = (start or self.now()) + timedelta(seconds=duration_s) if duration_s is not None else None
        window = FaultWindow(until=until, endpoints=tuple(endpoints) if endpoints else None, value=value)
        with self.lock:
            self.faults[name] = window
        return window

    def clear_fault(self, name: str | None = None) -> None:
        with self.lock:
            if name is None:
                self.faults.clear()
            else:
                self.faults.pop(name, None)

    def fault(self, name: str, endpoint: str | None = None) -> FaultWindow | None:
        """The fault if active now and (when it names endpoints) for this endpoint."""
        with self.lock:
            window = self.faults.get(name)
            if window is None:
                return None
            if window.until is not None and window.until <= self.now():
                del self.faults[name]
                return None
            if window.endpoints and endpoint not in window.endpoints:
                return None
            return window

    # --- request log -----------------------------------------------------------------------------
    def log_request(self, record: RequestRecord) -> None:
        self.request_log.append(record)

    def request_stats(self, since: datetime | None = None) -> dict[str, Any]:
        records = [r for r in list(self.request_log) if since is None or r.time >= since]
        return {
            "total": len(records),
            "byClientIp": dict(Counter(r.client_ip for r in records)),
            "byPath": dict(Counter(r.path for r in records)),
            "byStatus": {str(k): v for k, v in Counter(r.status for r in records).items()},
            "first": records[0].time.isoformat() if records else None,
            "last": records[-1].time.isoformat() if records else None,
        }
