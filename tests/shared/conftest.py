"""Database fixtures: a migrated SQLite file per test, and a fresh PostgreSQL database per test
(migrated ones are copies of the session's migrated template, ``tests.support.databases``; the
migration tests start from empty ones).

PostgreSQL: the server named by ``MTA_TEST_POSTGRES_URL`` (default: local trust auth). Each test
gets its own uniquely named database, dropped afterwards. Without a server the PostgreSQL variants
are skipped with the reason shown, unless ``CI`` is true and ``MTA_REQUIRE_POSTGRES=1``: then they
fail, so CI cannot go green without having run them.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from shared.crypto import Cipher, configure_cipher, generate_key
from shared.db.engine import make_engine, make_session_factory
from tests.support.databases import MigratedTemplates

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REQUIRE_POSTGRES = IN_CI and os.environ.get("MTA_REQUIRE_POSTGRES", "") == "1"


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
def _forget_logging_config() -> Iterator[None]:
    """Tests here configure structlog onto pytest's captured stderr, which closes after the test:
    put the defaults back so later log calls (anywhere in the suite) don't write to a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The admin URL of a PostgreSQL server that answers, or a skip (a failure in CI if required)."""
    import psycopg

    url = os.environ.get("MTA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"no PostgreSQL server at {make_url(url).render_as_string()} ({type(exc).__name__}: {exc})"
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " — required: CI=true and MTA_REQUIRE_POSTGRES=1")
        pytest.skip(reason + "; set MTA_TEST_POSTGRES_URL to run the PostgreSQL variants")
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database of its own on the test server; dropped after the test."""
    import psycopg

    name = f"mta_test_{uuid.uuid4().hex[:16]}"
    admin = _libpq(postgres_server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(postgres_server_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def migrated_postgres_url(postgres_server_url: str, migrated_templates: MigratedTemplates) -> Iterator[str]:
    """A database of its own on the test server, made from the session's migrated template
    (``tests.support.databases``); dropped after the test."""
    import psycopg

    name = migrated_templates.postgres_database(postgres_server_url)
    try:
        yield (
            make_url(postgres_server_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(_libpq(postgres_server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'mta.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each backend (not migrated)."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def migrated_db_url(request: pytest.FixtureRequest, migrated_templates: MigratedTemplates) -> str:
    """A migrated database of each backend: a copy of the session's template."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("migrated_postgres_url"))
    url = str(request.getfixturevalue("sqlite_url"))
    assert migrated_templates.copy_sqlite(url), url
    return url


@pytest.fixture
def cipher() -> Iterator[Cipher]:
    """A fresh key as the process-wide cipher, cleared afterwards."""
    cipher = Cipher(generate_key(), origin="test key")
    configure_cipher(cipher)
    yield cipher
    configure_cipher(None)


@dataclass
class Database:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def backend(self) -> str:
        return self.engine.dialect.name


@pytest.fixture
def db(migrated_db_url: str, cipher: Cipher) -> Iterator[Database]:
    """A migrated database of each backend, with a cipher configured."""
    engine = make_engine(migrated_db_url)
    try:
        yield Database(url=migrated_db_url, engine=engine, sessions=make_session_factory(engine))
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_db(sqlite_url: str, cipher: Cipher, migrated_templates: MigratedTemplates) -> Iterator[Database]:
    """A migrated SQLite file (for tests about SQLite itself)."""
    assert migrated_templates.copy_sqlite(sqlite_url), sqlite_url
    engine = make_engine(sqlite_url)
    try:
        yield Database(url=sqlite_url, engine=engine, sessions=make_session_factory(engine))
    finally:
        engine.dispose()
