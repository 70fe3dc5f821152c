"""Engine set-up: SQLite pragmas, BEGIN IMMEDIATE under several processes, URL mapping, UTC times."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from shared.db.engine import make_engine, make_session_factory, normalize_url, session_scope
from shared.db.migrate import upgrade
from shared.db.models import Check, Target
from shared.domain import CheckOutcome

from .conftest import Database

PROCESSES = 4
TRANSACTIONS_PER_PROCESS = 100


def test_postgresql_urls_map_to_psycopg() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_sqlite_engine_creates_folder_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "mta.db"
    engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert path.is_file()
    finally:
        engine.dispose()


def test_session_scope_commits_and_rolls_back(sqlite_db: Database) -> None:
    with session_scope(sqlite_db.sessions) as session:
        session.add(Target(service_id=1, service_count=1, office_key="1"))
    with pytest.raises(RuntimeError), session_scope(sqlite_db.sessions) as session:
        session.add(Target(service_id=2, service_count=1, office_key="2"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(sqlite_db.sessions) as session:
        assert session.scalars(select(Target.service_id)).all() == [1]


def test_read_only_sessions_do_not_wait_for_writers(sqlite_url: str, cipher: object) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url, busy_timeout_ms=200)
    try:
        writer = make_session_factory(engine)
        with session_scope(writer) as session:
            session.add(Target(service_id=1, service_count=1, office_key="1"))
        with session_scope(writer) as busy:
            busy.add(Target(service_id=2, service_count=1, office_key="2"))
            busy.flush()  # holds the write lock until the end of this block
            with session_scope(make_session_factory(engine, read_only=True)) as reader:
                assert reader.scalars(select(Target.service_id)).all() == [1]  # snapshot, no wait
            with pytest.raises(OperationalError, match="locked"), session_scope(writer) as other:
                other.scalars(select(Target.service_id)).all()  # a writer session would have to wait
    finally:
        engine.dispose()


def test_datetimes_come_back_aware_utc(db: Database) -> None:
    berlin_winter = timezone(timedelta(hours=1))
    when = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=berlin_winter)
    with session_scope(db.sessions) as session:
        target = Target(service_id=1, service_count=1, office_key="1", last_check_at=when)
        session.add(target)
        session.flush()
        target_id = target.id
    with session_scope(db.sessions) as session:
        loaded = session.get(Target, target_id)
        assert loaded is not None and loaded.last_check_at is not None
        assert loaded.last_check_at.tzinfo is UTC
        assert loaded.last_check_at == when
        assert loaded.last_check_at.hour == 9
        # comparisons in SQL agree with Python's
        assert (
            session.scalar(select(func.count()).where(Target.last_check_at > when - timedelta(seconds=1)))
            == 1
        )


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive"), session_scope(db.sessions) as session:
        session.add(Target(service_id=1, service_count=1, office_key="1", last_check_at=datetime(2026, 1, 1)))
        session.flush()


def _read_then_write(url: str, target_id: int, worker: int, start: object) -> None:
    """Child process: read the counter, then write it back incremented, many times."""
    start.wait()  # type: ignore[attr-defined]
    engine = make_engine(url, busy_timeout_ms=30_000)
    sessions = make_session_factory(engine)
    try:
        for i in range(TRANSACTIONS_PER_PROCESS):
            with session_scope(sessions) as session:
                target = session.get(Target, target_id)
                assert target is not None
                seen = target.consecutive_failures  # read ...
                target.consecutive_failures = seen + 1  # ... then write
                session.add(
                    Check(
                        target_id=target_id,
                        started_at=datetime.now(UTC),
                        outcome=CheckOutcome.OK,
                        worker_id=f"p{worker}-{i}",
                    )
                )
    finally:
        engine.dispose()


@pytest.mark.slow
def test_concurrent_processes_lose_no_transactions(sqlite_db: Database) -> None:
    with session_scope(sqlite_db.sessions) as session:
        target = Target(service_id=1, service_count=1, office_key="1")
        session.add(target)
        session.flush()
        target_id = target.id
    sqlite_db.engine.dispose()

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_read_then_write, args=(sqlite_db.url, target_id, n, start))
        for n in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    with session_scope(sqlite_db.sessions) as session:
        final = session.get(Target, target_id)
        assert final is not None
        expected = PROCESSES * TRANSACTIONS_PER_PROCESS
        assert final.consecutive_failures == expected
        assert session.scalar(select(func.count()).select_from(Check)) == expected
        assert session.scalar(select(func.count(func.distinct(Check.worker_id)))) == expected
        assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
