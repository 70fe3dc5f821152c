"""Alerts on ``mta up``'s console while no Telegram bot sends them (no token: the demo).

Not behind one ``Notifier`` protocol with the Telegram sender (``bot/sender.py``): the sender is a
role of its own (an asyncio loop in the bot process that claims outbox rows, retries, edits and
records delivery), while this printer is a read-only thread of ``mta up`` that claims nothing and
marks nothing sent; a shared protocol would have one real implementation and one that ignores
most of it. What they share is the outbox, which is the contract.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("mta.up")


def describe_notification(kind: str, payload: dict[str, Any], text: str | None) -> str:
    """One console line for an outbox row: what, where, when; never who."""
    from shared.catalog import get_catalog
    from shared.domain import SITE_TIMEZONE

    if kind == "operator":
        return f"operator: {text or payload.get('reason', 'see the dashboard')}"
    catalog = get_catalog()
    service = catalog.service(int(payload.get("service_id", 0)))
    office = catalog.office(int(payload.get("office_id", 0)))
    when = str(payload.get("start", "?"))
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(when).astimezone(SITE_TIMEZONE).strftime("%a %d.%m. %H:%M")
    what = service.name if service else f"service {payload.get('service_id')}"
    where = office.name if office else f"office {payload.get('office_id')}"
    label = {"slot": "free slot", "gone": "gone again"}.get(kind, kind)
    return f"{label}: {what} — {where} — {when}"


class ConsoleAlerts:
    """Prints every new outbox row (no personal data) while no Telegram bot sends them."""

    def __init__(
        self, settings: Settings, echo: Callable[[str], None], *, poll_s: float = 1.0, site_url: str = ""
    ) -> None:
        self.settings = settings
        self.echo = echo
        self.poll_s = poll_s
        self.site_url = site_url
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.printed = 0
        self.after_id: int | None = None
        """Print rows newer than this; None: newer than the newest when the thread starts."""

    def mark_start(self) -> None:
        """From now on: alerts queued while the roles start are printed too (the thread starts
        only once every role is up)."""
        from sqlalchemy import func, select

        from shared.db.database import open_database
        from shared.db.models import Notification

        db = open_database(self.settings)
        try:
            with db.transaction() as session:
                self.after_id = int(session.scalar(select(func.max(Notification.id))) or 0)
        finally:
            db.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        from sqlalchemy import func, select

        from shared.db.database import open_database
        from shared.db.models import Notification

        db = open_database(self.settings)
        try:
            if self.after_id is not None:
                last_id = self.after_id
            else:
                with db.transaction() as session:
                    last_id = session.scalar(select(func.max(Notification.id))) or 0
            while not self._stop.wait(self.poll_s):
                try:
                    with db.transaction() as session:
                        rows = session.execute(
                            select(
                                Notification.id, Notification.kind, Notification.payload, Notification.text
                            )
                            .where(Notification.id > last_id)
                            .order_by(Notification.id)
                            .limit(50)
                        ).all()
                except Exception as exc:  # a locked or missing DB must not kill the farm's console
                    log.warning("console_alerts_failed", error=str(exc))
                    continue
                for row_id, kind, payload, text in rows:
                    last_id = max(last_id, row_id)
                    stamp = datetime.now().strftime("%H:%M:%S")
                    self.echo(f"[{stamp}] 🔔 {describe_notification(str(kind), payload or {}, text)}")
                    self.printed += 1
        finally:
            db.close()


__all__ = ["ConsoleAlerts", "describe_notification"]
