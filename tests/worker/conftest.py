"""Worker fixtures: a migrated SQLite database in a temp folder, settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.db.database import Database
from shared.settings import Settings, load_settings
from tests.support.databases import MigratedTemplates, open_migrated


@pytest.fixture
def worker_settings(tmp_path: Path, redis_url: str) -> Settings:
    return load_settings(data_dir=tmp_path, redis_url=redis_url, pacer="none", env="test")


@pytest.fixture
def db(worker_settings: Settings, migrated_templates: MigratedTemplates) -> Iterator[Database]:
    database = open_migrated(worker_settings, migrated_templates)
    yield database
    database.close()
