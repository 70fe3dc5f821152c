"""Migrations bring an empty SQLite or PostgreSQL database to head, once, and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from shared.db.engine import make_engine
from shared.db.migrate import MIGRATIONS_DIR, current_revision, downgrade, head_revision, upgrade
from shared.db.models import Base

EXPECTED_TABLES = {
    "users",
    "booking_profiles",
    "subscriptions",
    "targets",
    "checks",
    "slots",
    "notifications",
    "bookings",
    "site_states",
    "alembic_version",
}


def test_upgrade_fresh_database_to_head(empty_db_url: str) -> None:
    assert current_revision(empty_db_url) is None
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == head_revision()
    engine = make_engine(empty_db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert tables >= EXPECTED_TABLES
        index_names = {ix["name"] for ix in inspect(engine).get_indexes("bookings")}
        assert "uq_bookings_one_active_per_profile_service" in index_names
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_noop(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == head_revision()


def test_migrations_match_the_models(empty_db_url: str) -> None:
    """A model change without a migration shows up here."""
    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
    finally:
        engine.dispose()
    assert diff == []


def test_downgrade_to_base_and_up_again(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    downgrade(empty_db_url, "base")
    assert current_revision(empty_db_url) is None
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == head_revision()


def test_migrations_ship_as_packages() -> None:
    """setuptools only ships folders that are packages (or listed as package data)."""
    assert (MIGRATIONS_DIR / "__init__.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "__init__.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
