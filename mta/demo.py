"""The demo's subscriptions: who watches the replica's scenario under ``mta up --replica``.

The demo user (the first ``MTA_OPERATOR_CHAT_IDS`` chat, else the placeholder id ``DEMO_USER_ID``)
gets a few subscriptions for the offices where the scenario releases slots. They belong to the
demo: their ids are written to ``<data_dir>/demo.json`` when seeded, and ``end_demo`` ends them and
drops their alerts not yet sent, when the demo stops and again at the next start (a demo that was
killed cannot clean up after itself), so a later run, with a token or without the replica, never
sends anything about them.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("mta.up")

DEMO_USER_ID = 1
"""The demo subscriptions' owner when no operator chat id is configured (no real Telegram user)."""
MAX_DEMO_SUBSCRIPTIONS = 4
PREFERRED_SERVICES = (1063475, 1063441, 10339027, 1064361, 1071854, 1063426)
"""Popular short services, picked first for the demo subscriptions (Wohnsitzanmeldung, Personalausweis,
Notfall-Hilfe Aufenthaltstitel, Führerschein-Verlängerung, Internationaler Führerschein, Beglaubigung)."""
DEMO_FILE = "demo.json"
DEMO_ENDED = "the demo ended"


def _demo_file(settings: Settings) -> Path:
    return settings.data_dir / DEMO_FILE


def demo_wishes(scenario_path: Path, *, limit: int = MAX_DEMO_SUBSCRIPTIONS) -> list[tuple[int, list[int]]]:
    """(service, offices) pairs that will see the scenario's releases, one per group of offices.

    For each release in the scenario, the service that the replica's site offers at most of its
    offices in one slot unit wins (popular services first among equals); wishes for the same
    service are merged. The site's view matters: it hides some services at some offices.
    """
    import yaml

    from replica.catalog import Catalog

    site = Catalog.load()
    data = yaml.safe_load(scenario_path.read_text(encoding="utf-8")) or {}
    wishes: dict[int, list[int]] = {}
    for event in data.get("events") or []:
        release = event.get("release") if isinstance(event, dict) else None
        if not isinstance(release, dict) or release.get("services", "all") != "all":
            continue
        offices = [int(o) for o in (release.get("offices") or [release.get("office")]) if o is not None]
        best: tuple[tuple[int, int, int], int, list[int]] | None = None
        for service_id in sorted(site.services):
            covered = [
                o
                for o in offices
                if site.offers(o, service_id) and site.units_needed(o, [service_id], [1]) == 1
            ]
            if not covered:
                continue
            rank = PREFERRED_SERVICES.index(service_id) if service_id in PREFERRED_SERVICES else 99
            score = (len(covered), -rank, -service_id)
            if best is None or score > best[0]:
                best = (score, service_id, covered)
        if best is not None:
            merged = wishes.setdefault(best[1], [])
            merged.extend(o for o in best[2] if o not in merged)
    return [(service_id, sorted(offices)) for service_id, offices in wishes.items()][:limit]


def seed_demo_subscriptions(settings: Settings, scenario_path: Path) -> int:
    """Give the demo user subscriptions matching the scenario; returns how many were added.
    Their ids go to ``demo.json`` first (an id list that is too long harms no one; a subscription
    the file does not name would outlive the demo)."""
    from shared.db.database import open_database
    from shared.db.models import Subscription, User

    user_id = settings.operator_chat_ids[0] if settings.operator_chat_ids else DEMO_USER_ID
    wishes = demo_wishes(scenario_path)
    db = open_database(settings)
    try:
        with db.transaction() as session:
            if session.get(User, user_id) is None:
                session.add(User(id=user_id, language="de"))
                session.flush()
            subs = [Subscription(user_id=user_id, service_id=s, office_ids=o) for s, o in wishes]
            session.add_all(subs)
            session.flush()
            _write_ids(settings, [s.id for s in subs])
            return len(subs)
    finally:
        db.close()


def _write_ids(settings: Settings, ids: list[int]) -> None:
    path = _demo_file(settings)
    known = _read_ids(settings)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps({"subscriptions": sorted(set(known) | set(ids))}))
    temp.chmod(0o600)
    temp.replace(path)


def _read_ids(settings: Settings) -> list[int]:
    try:
        body = json.loads(_demo_file(settings).read_text())
        return [int(i) for i in body.get("subscriptions", [])]
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def end_demo(settings: Settings) -> tuple[int, int]:
    """End the demo's subscriptions and drop their unsent alerts; returns (subscriptions ended,
    alerts dropped). Idempotent; the demo file goes once the database says so."""
    from sqlalchemy import select, update

    from shared.db.database import open_database
    from shared.db.models import Notification, NotificationStatus, Subscription, SubscriptionState

    db = open_database(settings)
    try:
        with db.transaction() as session:
            ids = set(_read_ids(settings))
            # the placeholder user is nobody on Telegram: whatever it holds is the demo's
            ids |= set(session.scalars(select(Subscription.id).where(Subscription.user_id == DEMO_USER_ID)))
            if not ids:
                ended = dropped = 0
            else:
                ended_rows = session.execute(
                    update(Subscription)
                    .where(Subscription.id.in_(ids), Subscription.state != SubscriptionState.DONE)
                    .values(state=SubscriptionState.DONE)
                )
                dropped_rows = session.execute(
                    update(Notification)
                    .where(
                        Notification.subscription_id.in_(ids),
                        Notification.status.in_((NotificationStatus.PENDING, NotificationStatus.FAILED)),
                    )
                    .values(status=NotificationStatus.DEAD, last_error=DEMO_ENDED)
                )
                ended = int(getattr(ended_rows, "rowcount", 0) or 0)
                dropped = int(getattr(dropped_rows, "rowcount", 0) or 0)
    finally:
        db.close()
    _demo_file(settings).unlink(missing_ok=True)
    log.info("demo_ended", subscriptions=ended, alerts_dropped=dropped)
    return (ended, dropped)


__all__ = ["DEMO_USER_ID", "demo_wishes", "end_demo", "seed_demo_subscriptions"]
