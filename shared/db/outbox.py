"""Insert-once writes to the notification outbox.

Every alert is an outbox row; its unique keys ((subscription, slot, episode, kind) or
``dedup_key``) make a repeated insert a silent no-op, so a re-recorded observation or a retried
job never alerts twice. Uses the dialect's ``INSERT ... ON CONFLICT DO NOTHING`` (no conflict
target: any unique key counts), which also holds under concurrent writers on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db.models import Base, Notification

_FIELDS = frozenset(c.key for c in Notification.__table__.columns) - {"id"}


def insert_ignoring_duplicates(session: Session, model: type[Base]) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` for ``model`` in the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing()
    raise NotImplementedError(f"no insert-or-ignore for the {dialect} dialect")


def _check(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - _FIELDS
    if unknown:
        raise TypeError(f"unknown notification fields: {', '.join(sorted(unknown))}")
    if "kind" not in fields:
        raise TypeError("a notification needs a kind")


def enqueue_notification(session: Session, **fields: Any) -> bool:
    """Insert one outbox row; False (and nothing written) when an equal row already exists."""
    _check(fields)
    stmt = insert_ignoring_duplicates(session, Notification).values(**fields).returning(Notification.id)
    return session.execute(stmt).first() is not None


def enqueue_notifications(session: Session, rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """Insert many outbox rows at once; returns the ids of those that were new."""
    by_shape: dict[frozenset[str], list[Mapping[str, Any]]] = {}
    for row in rows:
        _check(row)
        by_shape.setdefault(frozenset(row), []).append(row)
    inserted: list[int] = []
    for same_keys in by_shape.values():
        stmt = insert_ignoring_duplicates(session, Notification).returning(Notification.id)
        inserted.extend(session.scalars(stmt, [dict(r) for r in same_keys]).all())
    return inserted


__all__ = ["enqueue_notification", "enqueue_notifications", "insert_ignoring_duplicates"]
