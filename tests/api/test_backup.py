"""`mta db backup` / `mta db restore` on SQLite: a round trip, a backup taken during writes, bad input."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from mta.cli import app as cli
from shared.backup import BackupError, backup_database, restore_database
from shared.db.database import Database, open_database
from shared.db.models import BookingProfile, Check, Slot
from shared.domain import CheckOutcome
from shared.settings import Settings, reset_settings_cache
from tests.api.conftest import PERSON, seed

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, api_settings: Settings) -> Iterator[Settings]:
    monkeypatch.setenv("MTA_DATA_DIR", str(api_settings.data_dir))
    monkeypatch.setenv("MTA_ENV", "test")
    reset_settings_cache()
    yield api_settings
    reset_settings_cache()


def _counts(db: Database) -> tuple[int, int]:
    with db.transaction() as s:
        return (
            s.scalar(select(func.count()).select_from(Check)) or 0,
            s.scalar(select(func.count()).select_from(Slot)) or 0,
        )


def test_backup_and_restore_round_trip(cli_env: Settings, db: Database, tmp_path: Path) -> None:
    seed(db)
    before = _counts(db)
    backup_file = tmp_path / "backups" / "mta-backup.db"

    made = runner.invoke(cli, ["db", "backup", str(backup_file)])
    assert made.exit_code == 0, made.output
    assert "encryption key" in made.output and backup_file.is_file()

    with db.transaction() as s:  # life goes on after the backup: rows deleted
        s.execute(delete(Check))
        s.execute(delete(Slot))
    assert _counts(db) == (0, 0)

    restored = runner.invoke(cli, ["db", "restore", str(backup_file)])
    assert restored.exit_code == 0, restored.output
    assert "before-restore" in restored.output
    assert _counts(db) == before  # the open engine sees the restored rows
    with db.transaction() as s:  # and personal data decrypts with the same key
        profile = s.scalars(select(BookingProfile)).one()
        assert profile.email == PERSON["email"]
    safety = next(cli_env.data_dir.glob("mta.db.before-restore-*"))
    with sqlite3.connect(safety) as conn:
        assert conn.execute("SELECT count(*) FROM checks").fetchone()[0] == 0


def test_backup_is_consistent_while_a_writer_runs(
    api_settings: Settings, db: Database, tmp_path: Path
) -> None:
    """Injected: another thread inserting checks during the backup. Asserted: an intact file holding
    a prefix of the writes (every row complete), and the writer lost nothing."""
    seed(db)
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        other = open_database(api_settings)
        try:
            while not stop.is_set():
                with other.transaction() as s:
                    check = Check(target_id=1, started_at=datetime.now(UTC), outcome=CheckOutcome.NO_SLOTS)
                    s.add(check)
                    s.flush()
                    written.append(check.id)
        finally:
            other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            stop.wait(0.01)
        results = [
            backup_database(api_settings.effective_database_url, tmp_path / f"b{i}.db") for i in range(3)
        ]
    finally:
        stop.set()
        thread.join(30)
    for result in results:
        with sqlite3.connect(result.path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            count = conn.execute("SELECT count(*) FROM checks").fetchone()[0]
            assert 13 <= count <= 13 + len(written)
    assert _counts(db)[0] == 13 + len(written)


def test_restore_refuses_what_is_not_an_mta_backup(cli_env: Settings, db: Database, tmp_path: Path) -> None:
    """Injected: a text file, a foreign SQLite file, a missing file. Asserted: exit 1, a reason, and
    the database untouched."""
    seed(db)
    before = _counts(db)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    for path, reason in (
        (text_file, "not an SQLite database"),
        (foreign, "not an MTA database"),
        (tmp_path / "missing.db", "does not exist"),
    ):
        result = runner.invoke(cli, ["db", "restore", str(path)])
        assert result.exit_code == 1, result.output
        assert reason in result.output
    assert _counts(db) == before


def test_backup_does_not_overwrite_without_force(cli_env: Settings, db: Database, tmp_path: Path) -> None:
    target = tmp_path / "exists.db"
    target.write_bytes(b"keep me")
    result = runner.invoke(cli, ["db", "backup", str(target)])
    assert result.exit_code == 1 and "--force" in result.output
    assert target.read_bytes() == b"keep me"
    assert runner.invoke(cli, ["db", "backup", str(target), "--force"]).exit_code == 0


def test_postgres_without_client_tools_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Injected: no pg_dump on PATH. Asserted: a BackupError naming the package to install."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackupError, match="postgresql-client"):
        backup_database("postgresql+psycopg://u:p@127.0.0.1:1/mta", tmp_path / "x.dump")
    with pytest.raises(BackupError, match="does not exist"):
        restore_database("postgresql+psycopg://u:p@127.0.0.1:1/mta", tmp_path / "x.dump")
