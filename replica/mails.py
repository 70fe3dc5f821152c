"""The e-mails the site sends, delivered to the replica's mailbox instead of the internet.

Link formats follow the city (spec §4.2): the activation link is
``<page URL>#/appointment/confirm/<hash>`` with the text "Termin aktivieren", the manage link
``<page URL>#/appointment/<hash>`` with "Termin ändern/stornieren"; ``<hash>`` is base64 of
``{"id":<processId>,"authKey":"<key>"}``.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from replica.clock import BERLIN


def process_hash(process_id: int, auth_key: str) -> str:
    """base64 of ``{"id":<processId>,"authKey":"<key>"}``, as in the city's mail links."""
    raw = json.dumps({"id": process_id, "authKey": auth_key}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def activation_link(page_url: str, process_id: int, auth_key: str) -> str:
    return f"{page_url}#/appointment/confirm/{process_hash(process_id, auth_key)}"


def manage_link(page_url: str, process_id: int, auth_key: str) -> str:
    return f"{page_url}#/appointment/{process_hash(process_id, auth_key)}"


@dataclass
class Mail:
    id: int
    sent_at: datetime
    kind: str
    """activation | confirmation | cancellation"""
    to: str
    subject: str
    body: str
    links: list[dict[str, str]] = field(default_factory=list)
    process_id: int = 0
    ics: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sentAt": self.sent_at.isoformat(),
            "kind": self.kind,
            "to": self.to,
            "subject": self.subject,
            "body": self.body,
            "html": self.html(),
            "links": self.links,
            "processId": self.process_id,
            "ics": self.ics,
        }

    def html(self) -> str:
        text = html.escape(self.body)
        for link in self.links:
            anchor = f'<a href="{html.escape(link["url"])}">{html.escape(link["text"])}</a>'
            text = text.replace(html.escape(link["url"]), anchor)
        return "<p>" + text.replace("\n\n", "</p><p>").replace("\n", "<br>") + "</p>"


@dataclass(frozen=True)
class AppointmentFacts:
    """What a mail says about an appointment."""

    process_id: int
    auth_key: str
    family_name: str
    email: str
    office_name: str
    address: str
    services: str
    timestamp: int
    activation_min: int | None


def _when(ts: int) -> tuple[str, str]:
    local = datetime.fromtimestamp(ts, BERLIN)
    return local.strftime("%d.%m.%Y"), local.strftime("%H:%M")


def activation_mail(facts: AppointmentFacts, page_url: str) -> tuple[str, str, list[dict[str, str]]]:
    """Subject, body and links of the ``mail_preconfirmed`` message."""
    day, time = _when(facts.timestamp)
    minutes = facts.activation_min or 30
    link = activation_link(page_url, facts.process_id, facts.auth_key)
    body = (
        f"Guten Tag {facts.family_name},\n\n"
        f"Sie haben einen Termin am {day} um {time} Uhr bei {facts.office_name} ({facts.address}) "
        f"für {facts.services} reserviert.\n\n"
        f"Bitte aktivieren Sie Ihren Termin innerhalb von {minutes} Minuten. Wenn Sie den Termin nicht "
        f"innerhalb von {minutes} Minuten aktivieren, verfällt Ihre Reservierung.\n\n"
        f"Termin aktivieren: {link}\n\n"
        "Mit freundlichen Grüßen\nIhre Landeshauptstadt München"
    )
    return "Bitte aktivieren Sie Ihren Termin", body, [{"text": "Termin aktivieren", "url": link}]


def confirmation_mail(facts: AppointmentFacts, page_url: str) -> tuple[str, str, list[dict[str, str]]]:
    """Subject, body and links of the ``mail_confirmation`` message."""
    day, time = _when(facts.timestamp)
    link = manage_link(page_url, facts.process_id, facts.auth_key)
    body = (
        f"Guten Tag {facts.family_name},\n\n"
        f"Ihr Termin am {day} um {time} Uhr bei {facts.office_name} ({facts.address}) "
        f"für {facts.services} ist gebucht. Ihre Vorgangsnummer: {facts.process_id}.\n\n"
        f"Termin ändern/stornieren: {link}\n\n"
        "Mit freundlichen Grüßen\nIhre Landeshauptstadt München"
    )
    return "Terminbestätigung", body, [{"text": "Termin ändern/stornieren", "url": link}]


def cancellation_mail(facts: AppointmentFacts) -> tuple[str, str, list[dict[str, str]]]:
    day, time = _when(facts.timestamp)
    body = (
        f"Guten Tag {facts.family_name},\n\n"
        f"Ihr Termin am {day} um {time} Uhr bei {facts.office_name} wurde abgesagt.\n\n"
        "Mit freundlichen Grüßen\nIhre Landeshauptstadt München"
    )
    return "Terminabsage", body, []


def ics_content(facts: AppointmentFacts, duration_min: int, now: datetime) -> str:
    start = datetime.fromtimestamp(facts.timestamp, BERLIN)
    end = datetime.fromtimestamp(facts.timestamp + duration_min * 60, BERLIN)
    fmt = "%Y%m%dT%H%M%S"
    return "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//MTA replica//Terminvereinbarung//DE",
            "BEGIN:VEVENT",
            f"UID:{facts.process_id}@replica.mta",
            f"DTSTAMP:{now.strftime('%Y%m%dT%H%M%SZ')}",
            f"DTSTART;TZID=Europe/Berlin:{start.strftime(fmt)}",
            f"DTEND;TZID=Europe/Berlin:{end.strftime(fmt)}",
            f"SUMMARY:{facts.services}",
            f"LOCATION:{facts.office_name}\\, {facts.address}",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )
