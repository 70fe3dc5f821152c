"""Scheduled backups: the scheduler writes them into MTA_DATA_DIR/backups, keeps the newest N, and
a restore drill brings the data back (readable with the key, which is not in the backup)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select

from shared.backup import restore_database, scheduled_backup, scheduled_backups
from shared.db.database import open_database
from shared.db.models import BookingProfile, Subscription, User
from shared.settings import load_settings
from tests.support.farm import wait_until


def test_backups_on_a_schedule_keep_n_and_restore(tmp_path: Path) -> None:
    """Arranged: a person with a subscription and an encrypted profile. Injected: backups asked
    for at t0, t0+1 h, t0+25 h and t0+50 h with a 24 h interval and keep=2; then every person
    deleted; then the newest backup restored. Asserted: the 1 h call writes nothing (not due), the
    folder holds exactly the two newest, folder 0700 and files 0600; after the restore the person,
    the subscription and the decrypted profile are back. (Tried: without the pruning three files
    remain and this fails.)"""
    settings = load_settings(data_dir=tmp_path / "data", env="test")
    db = open_database(settings, migrate=True)
    try:
        with db.transaction() as session:
            session.add(User(id=42, language="de"))
            session.flush()
            session.add(Subscription(user_id=42, service_id=1063475, office_ids=[102522]))
            session.add(BookingProfile(user_id=42, first_name="Erika", email="erika@example.org"))
        url, folder = settings.effective_database_url, settings.backup_dir
        t0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
        day_s = 24 * 3600
        first = scheduled_backup(url, folder, every_s=day_s, keep=2, now=t0)
        assert first is not None
        assert scheduled_backup(url, folder, every_s=day_s, keep=2, now=t0 + timedelta(hours=1)) is None
        second = scheduled_backup(url, folder, every_s=day_s, keep=2, now=t0 + timedelta(hours=25))
        third = scheduled_backup(url, folder, every_s=day_s, keep=2, now=t0 + timedelta(hours=50))
        assert second is not None and third is not None
        assert scheduled_backups(folder) == [second.path, third.path]
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in scheduled_backups(folder))

        with db.transaction() as session:
            session.execute(delete(User))
        restore_database(url, third.path)
        with db.transaction() as session:
            profile = session.scalars(select(BookingProfile)).one()
            assert profile.first_name == "Erika" and profile.email == "erika@example.org"
            assert session.scalars(select(Subscription.user_id)).all() == [42]
    finally:
        db.close()


def test_the_scheduler_runs_the_backups(tmp_path: Path, redis_url: str) -> None:
    """A real `mta scheduler` with a backup interval of 1.8 s writes scheduled backups into
    MTA_DATA_DIR/backups by itself, and keeps no more than MTA_BACKUP_KEEP. (Tried: without the
    job in the scheduler's list no file appears and this times out.)"""
    data = tmp_path / "data"
    open_database(load_settings(data_dir=data, env="test"), migrate=True).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTA_")}
    env.update(
        MTA_DATA_DIR=str(data),
        MTA_ENV="test",
        MTA_REDIS_URL=redis_url,
        MTA_BACKUP_INTERVAL_H="0.0005",
        MTA_BACKUP_KEEP="2",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mta", "scheduler"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "scheduler.log").open("wb"),
    )
    try:
        names: set[str] = set()

        def seen_three() -> bool:
            names.update(p.name for p in scheduled_backups(data / "backups"))
            return len(names) >= 3

        wait_until(seen_three, 60, "three scheduled backups")
        assert len(scheduled_backups(data / "backups")) <= 2
    finally:
        process.terminate()
        process.wait(20)
    assert process.returncode == 0, (tmp_path / "scheduler.log").read_text()[-2000:]
