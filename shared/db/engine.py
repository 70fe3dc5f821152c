"""Engines and sessions for SQLite (default) and PostgreSQL.

SQLite is shared by several processes (workers, scheduler, bot, api), so every connection runs in
WAL mode and every transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up front,
so a read-then-write transaction waits on the busy timeout instead of failing with "database is
locked" half-way (measured: deferred BEGIN lost 347 of 1200 such transactions under 4 processes).
This uses SQLAlchemy's documented pysqlite recipe (driver BEGIN off, our own BEGIN on the "begin"
event), which also makes DDL transactional for the migrations.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

READ_ONLY_OPTION = "mta_read_only"


def normalize_url(url: str | URL) -> URL:
    """Map plain ``postgresql://`` (and ``postgres://``) onto psycopg 3, the driver we install."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite(url: str | URL) -> bool:
    return normalize_url(url).get_backend_name() == "sqlite"


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _private_file(path: Path) -> None:
    """The SQLite file exists and only its owner may read it (0600): it holds personal data.
    SQLite gives its -wal and -shm files the database file's mode; an empty file is a new database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        with contextlib.suppress(PermissionError):  # not ours to change: leave it as it is
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                os.chmod(path, 0o600)


def make_engine(url: str | URL, *, busy_timeout_ms: int = 10_000, foreign_keys: bool = True) -> Engine:
    """An engine for ``url``; for SQLite: WAL, BEGIN IMMEDIATE, busy timeout, foreign keys on.

    ``foreign_keys=False`` is for migrations only: SQLite's batch mode recreates tables, and a
    DROP TABLE with enforcement on would run the ON DELETE CASCADE actions.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)

    path = _sqlite_file(parsed)
    if path is not None:
        _private_file(path.expanduser().resolve())
    engine = create_engine(parsed, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # hand transaction control to SQLAlchemy (the "begin" hook below)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # readers in WAL mode never wait for the writer, so read-only sessions need no write lock
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (results are handed to other threads).

    ``read_only=True`` (dashboards, status pages): on SQLite the transaction starts deferred, so
    it reads a snapshot without queueing behind writers; it must not write (a write would need the
    lock mid-transaction, which is what BEGIN IMMEDIATE exists to avoid).
    """
    bind = engine.execution_options(**{READ_ONLY_OPTION: True}) if read_only else engine
    return sessionmaker(bind=bind, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def wal_checkpoint(engine: Engine, mode: str = "TRUNCATE") -> None:
    """Fold SQLite's write-ahead log into the main file (before a file copy, or to bound its size).

    Runs outside any transaction (SQLite refuses a checkpoint inside one); a no-op elsewhere.
    """
    if engine.dialect.name != "sqlite":
        return
    if mode not in {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}:
        raise ValueError(f"unknown checkpoint mode {mode!r}")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            busy, _, _ = cursor.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        finally:
            cursor.close()
    finally:
        raw.close()
    if busy:
        raise RuntimeError("WAL checkpoint could not finish: another connection is reading or writing")


__all__ = [
    "READ_ONLY_OPTION",
    "is_sqlite",
    "make_engine",
    "make_session_factory",
    "normalize_url",
    "session_scope",
    "wal_checkpoint",
]
