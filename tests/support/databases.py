"""Migrated test databases without running every migration for every test.

Hundreds of tests each want a fresh, migrated database. Alembic's upgrade costs ~0.3 s on SQLite and
more on PostgreSQL (a new database, then every migration), and grows with each migration. The
session migrates one template per backend with the production upgrade (``shared.db.migrate``) and
each test gets its own copy: a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL.
The copy is the migrated schema, byte for byte; tests still never share a database. The migrations
themselves run on empty databases in ``tests/shared/test_db_migrations.py``, which does not use
these templates.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from shared.db.database import Database, open_database
from shared.db.migrate import upgrade
from shared.settings import Settings


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other backends and in-memory databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


@dataclass
class MigratedTemplates:
    """This session's migrated templates, made on first use (``migrated_templates`` fixture)."""

    folder: Path
    _sqlite: Path | None = None
    _postgres: dict[str, str] = field(default_factory=dict)
    """Admin URL -> name of the migrated template database on that server."""

    def sqlite_file(self) -> Path:
        if self._sqlite is None:
            path = self.folder / "template.db"
            upgrade(f"sqlite:///{path}")
            leftovers = [p for p in (path.with_name(path.name + "-wal"),) if p.exists() and p.stat().st_size]
            assert not leftovers, f"the template was not checkpointed: {leftovers}"
            self._sqlite = path
        return self._sqlite

    def copy_sqlite(self, url: str) -> bool:
        """Put a migrated copy at ``url``'s file when nothing is there yet; False when ``url`` is not
        a SQLite file or the file exists (the caller migrates it as usual)."""
        path = sqlite_path(url)
        if path is None or path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.sqlite_file(), path)
        path.chmod(0o600)
        return True

    def postgres_database(self, admin_url: str) -> str:
        """A new database on the server of ``admin_url`` made from the migrated template; its name.
        The caller drops it."""
        import psycopg

        admin = _libpq(admin_url)
        template = self._postgres.get(admin_url)
        if template is None:
            template = f"mta_template_{uuid.uuid4().hex[:16]}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{template}"')
            self._postgres[admin_url] = template  # dropped by close() even if the upgrade fails
            upgrade(
                make_url(admin_url)
                .set(drivername="postgresql+psycopg", database=template)
                .render_as_string(hide_password=False)
            )
        name = f"mta_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def close(self) -> None:
        import psycopg

        for admin_url, template in self._postgres.items():
            with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        self._postgres.clear()


def open_migrated(settings: Settings, templates: MigratedTemplates) -> Database:
    """``open_database(settings, migrate=True)``, with the migrations copied from the template when
    the settings' database is a SQLite file that does not exist yet."""
    if templates.copy_sqlite(settings.effective_database_url):
        return open_database(settings)
    return open_database(settings, migrate=True)


__all__ = ["MigratedTemplates", "open_migrated", "sqlite_path"]
