"""Schema migrations, driven from code (``mta db upgrade``), no alembic.ini needed.

The whole upgrade runs in one transaction: on SQLite it starts with BEGIN IMMEDIATE, on
PostgreSQL it first takes an advisory lock, so several roles starting at once (``mta up``) migrate
the database exactly once and the others find it at head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from shared.db.engine import make_engine, normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x4D54_4100  # "MTA\0": any constant shared by all MTA processes


class MigrationError(RuntimeError):
    pass


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (for ``command.*`` calls)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # ConfigParser treats % as interpolation; URLs may contain %-escapes
        config.set_main_option(
            "sqlalchemy.url", normalize_url(url).render_as_string(hide_password=False).replace("%", "%%")
        )
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``; a no-op when it is there already."""
    engine = make_engine(url, foreign_keys=False)
    try:
        with engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            if conn.dialect.name == "sqlite":
                problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise MigrationError(f"migration left {len(problems)} dangling foreign keys")
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Step the schema back to ``revision`` (``"base"`` empties it); for development."""
    engine = make_engine(url, foreign_keys=False)
    try:
        with engine.connect() as conn, conn.begin():
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None for an empty (never migrated) database."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


__all__ = [
    "MIGRATIONS_DIR",
    "MigrationError",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]
