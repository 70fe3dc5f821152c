"""``mta db backup`` / ``mta db restore``: a consistent copy of the database while the farm runs.

SQLite: SQLite's online backup API copies a consistent snapshot page by page while other
processes keep writing (WAL); the copy is written next to the target and renamed into place, so
a crash never leaves half a backup, and it is a self-contained file (journal mode DELETE). A
restore checks the file first (SQLite, intact, an MTA schema), keeps a safety copy of the current
database, and writes the backup into the live file through the same API, so processes that hold
it open see the restored data on their next transaction.

PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore --clean``, if the client tools are
installed; otherwise a clear error says what to install.

Personal data is encrypted with the key in ``MTA_ENCRYPTION_KEY`` or ``<data_dir>/encryption.key``:
a backup is only useful together with that key.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from shared.db.engine import normalize_url

SQLITE_HEADER = b"SQLite format 3\x00"
PAGES_PER_STEP = 1024
"""Pages copied per step; between steps writers may proceed (their changes restart the copy)."""


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    backend: str
    size_bytes: int


@dataclass(frozen=True)
class RestoreResult:
    backend: str
    safety_copy: Path | None
    """The database as it was before the restore (SQLite), to undo a mistaken restore."""
    revision: str | None


def _sqlite_path(url: str) -> Path:
    parsed = normalize_url(url)
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        raise BackupError(f"cannot back up the SQLite database {parsed.database!r}: it is not a file")
    return Path(parsed.database).expanduser().resolve()


def _copy(source: sqlite3.Connection, dest: sqlite3.Connection) -> None:
    try:
        source.backup(dest, pages=PAGES_PER_STEP)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup failed: {exc}") from exc


def _connect(path: Path, timeout_s: float = 30.0) -> sqlite3.Connection:
    return sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)


def _check_sqlite_file(path: Path) -> str | None:
    """Refuse anything that is not an intact MTA database; returns its schema revision."""
    if not path.is_file():
        raise BackupError(f"{path} does not exist")
    with path.open("rb") as fh:
        if fh.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise BackupError(f"{path} is not an SQLite database")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()
        if not result or result[0] != "ok":
            raise BackupError(f"{path} is damaged: integrity check says {result[0] if result else '?'}")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "alembic_version" not in tables or "targets" not in tables:
            raise BackupError(f"{path} is an SQLite file but not an MTA database (no MTA tables)")
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row else None
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} cannot be read as a database: {exc}") from exc
    finally:
        conn.close()


def _sqlite_snapshot(live: Path, dest: Path) -> None:
    """A consistent, self-contained copy of ``live`` at ``dest`` (written aside, then renamed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        source = _connect(live)
        target = _connect(tmp)
        try:
            _copy(source, target)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
            source.close()
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def backup_database(url: str, dest: Path, *, overwrite: bool = False) -> BackupResult:
    """Write a consistent backup of the database at ``url`` to ``dest``."""
    dest = dest.expanduser().resolve()
    if dest.exists() and not overwrite:
        raise BackupError(f"{dest} exists already: choose a new file name, or pass --force to replace it")
    backend = normalize_url(url).get_backend_name()
    if backend == "sqlite":
        live = _sqlite_path(url)
        if not live.is_file():
            raise BackupError(f"no database at {live}: nothing to back up")
        if live == dest:
            raise BackupError("the backup file must not be the database itself")
        _sqlite_snapshot(live, dest)
    elif backend == "postgresql":
        _pg_run("pg_dump", url, ["--format=custom", "--no-owner", f"--file={dest}"])
    else:
        raise BackupError(f"backups of {backend} databases are not supported")
    return BackupResult(path=dest, backend=backend, size_bytes=dest.stat().st_size)


def restore_database(url: str, source: Path) -> RestoreResult:
    """Replace the database at ``url`` with the backup ``source`` (checked first)."""
    source = source.expanduser().resolve()
    if not source.is_file():
        raise BackupError(f"{source} does not exist")
    backend = normalize_url(url).get_backend_name()
    if backend == "postgresql":
        _pg_run(
            "pg_restore", url, ["--clean", "--if-exists", "--no-owner", "--single-transaction", str(source)]
        )
        return RestoreResult(backend=backend, safety_copy=None, revision=None)
    if backend != "sqlite":
        raise BackupError(f"restores of {backend} databases are not supported")
    revision = _check_sqlite_file(source)
    live = _sqlite_path(url)
    if live == source:
        raise BackupError("the backup file is the database itself")
    safety: Path | None = None
    if live.is_file():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        safety = live.with_name(f"{live.name}.before-restore-{stamp}")
        _sqlite_snapshot(live, safety)
    live.parent.mkdir(parents=True, exist_ok=True)
    backup_conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    target = _connect(live)
    try:
        _copy(backup_conn, target)
    finally:
        target.close()
        backup_conn.close()
    return RestoreResult(backend=backend, safety_copy=safety, revision=revision)


def _pg_run(tool: str, url: str, args: list[str]) -> None:
    binary = shutil.which(tool)
    if binary is None:
        raise BackupError(
            f"{tool} is not installed: install the PostgreSQL client tools (Debian: apt-get install "
            f"postgresql-client, matching the server's major version) and run the command again"
        )
    parsed = make_url(url).set(drivername="postgresql")
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)  # not on the command line, where ps would show it
    dsn = parsed.set(password=None).render_as_string(hide_password=False)
    result = subprocess.run([binary, f"--dbname={dsn}", *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackupError(f"{tool} failed (exit {result.returncode}): {last}")


# --- on a schedule -------------------------------------------------------------------------------
SCHEDULED_PREFIX = "mta-"
SCHEDULED_STAMP = "%Y%m%dT%H%M%SZ"


def scheduled_backups(folder: Path) -> list[Path]:
    """The scheduled backups in ``folder``, oldest first (their names sort by time)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.name.startswith(SCHEDULED_PREFIX) and p.suffix in {".db", ".dump"}
    )


def scheduled_backup(
    url: str, folder: Path, *, every_s: float, keep: int, now: datetime | None = None
) -> BackupResult | None:
    """A backup into ``folder`` if the newest one there is ``every_s`` old or older (a restarted
    scheduler does not back up again at once); then only the newest ``keep`` are kept. Files are
    private (0600, the folder 0700): a backup holds personal data, encrypted with the key that is
    NOT in it (``MTA_ENCRYPTION_KEY`` or ``<data_dir>/encryption.key``). Returns None when not due."""
    now = now or datetime.now(UTC)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    existing = scheduled_backups(folder)
    if existing:
        newest = datetime.strptime(existing[-1].stem[len(SCHEDULED_PREFIX) :], SCHEDULED_STAMP).replace(
            tzinfo=UTC
        )
        if (now - newest).total_seconds() < every_s:
            return None
    backend = normalize_url(url).get_backend_name()
    suffix = ".db" if backend == "sqlite" else ".dump"
    result = backup_database(url, folder / f"{SCHEDULED_PREFIX}{now.strftime(SCHEDULED_STAMP)}{suffix}")
    os.chmod(result.path, 0o600)
    for old in scheduled_backups(folder)[: -max(1, keep)]:
        old.unlink(missing_ok=True)
    return result


__all__ = [
    "BackupError",
    "BackupResult",
    "RestoreResult",
    "backup_database",
    "restore_database",
    "scheduled_backup",
    "scheduled_backups",
]
