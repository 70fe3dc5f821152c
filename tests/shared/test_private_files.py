"""Personal data at rest is private: the SQLite database (and its WAL files) and the key file are
created readable by their owner only (0600), whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.crypto import KEY_FILE_NAME
from shared.db.database import open_database
from shared.settings import load_settings


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A permissive umask (022 is common; 000 the worst case)."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_database_and_key_file_are_0600(tmp_path: Path, open_umask: None) -> None:
    """A fresh data folder under umask 000: after migrating and writing once, mta.db, its -wal
    and -shm files and encryption.key are 0600. (Tried: without ``_private_file`` mta.db is
    0666 here and this fails.)"""
    settings = load_settings(data_dir=tmp_path, env="test")
    db = open_database(settings, migrate=True)
    try:
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
        for name in ("mta.db", "mta.db-wal", "mta.db-shm", KEY_FILE_NAME):
            path = tmp_path / name
            assert path.exists(), name
            assert _mode(path) == 0o600, (name, oct(_mode(path)))
    finally:
        db.close()


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    """An mta.db left 0644 by an older version is narrowed to 0600 when opened."""
    settings = load_settings(data_dir=tmp_path, env="test")
    open_database(settings, migrate=True).close()
    os.chmod(tmp_path / "mta.db", 0o644)
    open_database(settings).close()
    assert _mode(tmp_path / "mta.db") == 0o600
