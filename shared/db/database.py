"""One process's handle on the database: engine, session factory, and the cipher for personal data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.crypto import Cipher, configure_cipher
from shared.db.engine import make_engine, make_session_factory, session_scope
from shared.settings import Settings


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session] = field(init=False, repr=False)
    """Read-only sessions (``read``), built from ``engine``."""

    def __post_init__(self) -> None:
        self.readers = make_session_factory(self.engine, read_only=True)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with session_scope(self.sessions) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite it starts deferred and reads a snapshot, so it
        neither queues for nor takes the write lock. Writing in it is a bug."""
        with session_scope(self.readers) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_database(settings: Settings, *, migrate: bool = False) -> Database:
    """Engine and sessions for ``settings``; configures the process-wide cipher once."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_cipher(Cipher.from_settings(settings))
    url = settings.effective_database_url
    if migrate:
        from shared.db.migrate import upgrade

        upgrade(url)
    engine = make_engine(url, busy_timeout_ms=settings.db_busy_timeout_ms)
    return Database(engine=engine, sessions=make_session_factory(engine))
