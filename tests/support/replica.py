"""A running replica of the city's site for tests of any package (browser, worker, bot, booking).

``replica_server`` runs the real replica app (``replica.app.create_app``, control API on) with uvicorn
in a thread on a free port of 127.0.0.1 for the whole session: 127.0.0.1 is a secure context, which
the captcha widget's WebCrypto needs. ``replica`` hands each test the same server reset to a clean
state (no slots, appointments, mails, faults; fresh rate-limit counters; real time), with helpers over
the ``/_replica/`` control API.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from replica.app import serve_in_thread
from replica.clock import BERLIN
from replica.config import API_PREFIX, PAGE_PATH, ReplicaConfig
from tests.conftest import free_port

CAPTCHA_COST = 50
"""Keeps the proof of work at a few milliseconds (the city's cost is ~1000)."""

# Offices and services used by the browser tests (spec §5).
ORLEANSPLATZ = 102522
LEONRODSTRASSE = 102523
"""Bürgerbüro Orleansplatz: captcha required, telephone field."""
WOHNSITZANMELDUNG = 1063475
FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE = 10308174
"""Führerscheinstelle (KVR-II/44211): no captcha, required custom field "Geburtsdatum"."""
FUEHRERSCHEIN_UMSCHREIBUNG = 1071896


@dataclass
class Replica:
    """A running replica plus helpers over its control API (all synchronous)."""

    base_url: str
    client: httpx.Client = field(repr=False)

    @property
    def page_url(self) -> str:
        """The booking page, as on stadt.muenchen.de."""
        return self.base_url + PAGE_PATH

    @property
    def api_url(self) -> str:
        """The citizen API base, as on www48.muenchen.de."""
        return self.base_url + API_PREFIX

    def deep_link(self, service_id: int, office_id: int | None = None, *, exclusive: bool = False) -> str:
        """The page opened on ``#/services/<sid>[/locations/<oid>][?exclusiveLocation=1]``."""
        route = f"#/services/{service_id}"
        if office_id is not None:
            route += f"/locations/{office_id}"
        if exclusive:
            route += "?exclusiveLocation=1"
        return self.page_url + route

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, "/_replica" + path, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self.control("POST", "/reset")

    def add_slots(
        self,
        office: int,
        timestamps: list[int] | None = None,
        *,
        day: date | None = None,
        times: list[str] | None = None,
        services: list[int] | None = None,
    ) -> list[int]:
        """Release free slots (epoch seconds, or a Berlin ``day`` with ``times``); returns the new ones."""
        body: dict[str, Any] = {"office": office, "services": services}
        if timestamps is not None:
            body["timestamps"] = timestamps
        else:
            body["date"] = (day or datetime.now(BERLIN).date()).isoformat()
            body["times"] = times
        added: list[int] = self.control("POST", "/slots", json=body)["added"]
        return added

    def remove_slots(
        self, office: int | None = None, timestamps: list[int] | None = None
    ) -> list[dict[str, int]]:
        removed: list[dict[str, int]] = self.control(
            "POST", "/slots/remove", json={"office": office, "timestamps": timestamps}
        )["removed"]
        return removed

    def take(self, office: int, timestamp: int, units: int = 1) -> bool:
        """A competing booker takes the slot."""
        return bool(
            self.control(
                "POST", "/slots/take", json={"office": office, "timestamp": timestamp, "units": units}
            )["taken"]
        )

    def faults(self, **change: Any) -> dict[str, Any]:
        """POST /_replica/faults, e.g. ``storm_s=0`` (429 until cleared), ``maintenance=True``,
        ``error_500_s=0``, ``garbage_s=0``, ``layout_variant="renamed-timeslot-ids"``, ``clear=["all"]``."""
        result: dict[str, Any] = self.control("POST", "/faults", json=change)
        return result

    def mail(self, *, kind: str | None = None, to: str | None = None) -> list[dict[str, Any]]:
        """The mailbox (oldest first); ``kind`` is activation, confirmation or cancellation."""
        params = {k: v for k, v in {"kind": kind, "to": to}.items() if v is not None}
        mails: list[dict[str, Any]] = self.control("GET", "/mail", params=params)
        return mails

    def activation_link(self, to: str | None = None) -> str:
        """The "Termin aktivieren" link of the newest activation mail."""
        mails = self.mail(kind="activation", to=to)
        assert mails, "no activation mail in the replica's mailbox"
        return str(next(link["url"] for link in mails[-1]["links"] if "/appointment/confirm/" in link["url"]))

    def processes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", "/processes")
        return result


def units(start: int, count: int = 2) -> list[int]:
    """Consecutive 15-minute units from ``start`` (a Führerschein-Umschreibung needs two)."""
    return [start + i * 900 for i in range(count)]


def api_requests(replica: Replica, since: datetime | None = None) -> list[dict[str, Any]]:
    """The replica's log of citizen-API requests (each with ``status`` and ``durationMs``)."""
    params: dict[str, Any] = {"limit": 20_000}
    if since is not None:
        params["since"] = since.isoformat()
    records: list[dict[str, Any]] = replica.control("GET", "/requests", params=params)["requests"]
    return [r for r in records if r["path"].startswith(API_PREFIX)]


def endpoint(record: dict[str, Any]) -> str:
    """The API endpoint name of a request-log record (``available-calendar`` ...)."""
    return str(record["path"].rstrip("/").rsplit("/", 1)[-1])


def berlin_slot(days_ahead: int, hour: int, minute: int = 0) -> int:
    """Epoch seconds of a Berlin wall-clock time ``days_ahead`` days from today."""
    day = datetime.now(BERLIN).date() + timedelta(days=days_ahead)
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN).timestamp())


@contextmanager
def serve_replica(config: ReplicaConfig | None = None) -> Iterator[str]:
    """Serve the real replica app in a thread on a free port (control API on); yields its base URL."""
    config = dataclasses.replace(
        config or ReplicaConfig(captcha_cost=CAPTCHA_COST), port=free_port(), control_enabled=True
    )
    with serve_in_thread(config) as (base_url, _app):
        yield base_url
