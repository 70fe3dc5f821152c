"""The worker farm as real OS processes, for end-to-end and fault tests.

``Farm`` starts ``mta worker`` and ``mta scheduler`` from the venv as subprocesses (each in its own
session, so a test can signal one process group), all pointing at one private Redis, one SQLite
file in a temp folder and one replica. The test process opens the same database to arrange
subscriptions and to count rows. Nothing here fakes a part: the processes are the production
commands with test-sized settings (no pacing, short heartbeats and leases, a one-second interval).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from datetime import time as clock_time
from pathlib import Path
from typing import Any, TypeVar

import redis
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from shared.db.database import Database, open_database
from shared.db.models import Check, Notification, NotificationKind, Slot, Subscription, Target, User
from shared.settings import Settings, load_settings
from worker import heartbeat

MTA = str(Path(sys.executable).with_name("mta"))
T = TypeVar("T")

FARM_ENV: dict[str, str] = {
    "MTA_ENV": "test",
    "MTA_LOG_FORMAT": "json",
    "MTA_LOG_LEVEL": "INFO",
    "MTA_PACER": "none",
    "MTA_TRACE_ON_FAILURE": "false",
    "MTA_CHECK_JITTER_S": "0",
    "MTA_CHECK_MIN_INTERVAL_S": "1",
    "MTA_RELEASE_AWARE": "false",  # the same pace whatever the hour (see tests/worker/test_release_plan.py)
    "MTA_SITE_BUDGET_PER_MINUTE": "120",
    "MTA_SITE_REQUESTS_BEFORE_PAUSE": "0",
    "MTA_WORKER_HEARTBEAT_TIMEOUT_MS": "3000",
    "MTA_SCHEDULER_LEASE_MS": "2000",
    "MTA_BROWSER_WARM_SESSIONS": "3",
}


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (read from /proc; the worker's Playwright driver and Chromium)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class FarmProcess:
    """One ``mta ...`` subprocess and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    terminated: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, event: str) -> list[dict[str, Any]]:
        """JSON log lines whose ``event`` is ``event``."""
        found = []
        for line in self.log().splitlines():
            if f'"{event}"' not in line:
                continue
            with suppress(ValueError):
                record = json.loads(line[line.index("{") :])
                if record.get("event") == event:
                    found.append(record)
        return found

    def signal_group(self, sig: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def terminate(self) -> None:
        """SIGTERM once (a second SIGTERM makes Dramatiq kill its workers mid-message)."""
        if self.popen.poll() is None and not self.terminated:
            self.terminated = True
            with suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 20) -> int | None:
        """SIGTERM, then SIGKILL for the whole group if it does not stop in time."""
        if self.popen.poll() is None:
            self.terminate()
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(10)
        self.signal_group(signal.SIGKILL)  # stragglers of a process killed earlier
        return self.popen.returncode


@dataclass
class Farm:
    """Processes, database and Redis of one test."""

    root: Path
    redis_url: str
    site_url: str
    settings: Settings
    db: Database
    env: dict[str, str]
    processes: list[FarmProcess] = field(default_factory=list)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def _spawn(self, name: str, args: list[str]) -> FarmProcess:
        log_path = self.root / f"{name}-{len(self.processes)}.log"
        with log_path.open("wb") as log_file:
            popen = subprocess.Popen(
                [MTA, *args],
                env=self.env,
                cwd=self.root,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = FarmProcess(name, popen, log_path)
        self.processes.append(process)
        return process

    def start_worker(
        self, *, processes: int = 1, threads: int = 1, queues: str = "checks", wait: bool = True
    ) -> FarmProcess:
        before = {w["id"] for w in self.workers()}
        worker = self._spawn(
            "worker",
            ["worker", "--processes", str(processes), "--threads", str(threads), "--queues", queues],
        )
        if wait:
            wait_until(
                lambda: (
                    len({w["id"] for w in self.workers() if w.get("browser") == "ready"} - before)
                    >= processes
                    or worker.popen.poll() is not None
                ),
                90,
                "the worker's heartbeat",
            )
            assert worker.popen.poll() is None, f"worker exited:\n{worker.log()[-3000:]}"
        return worker

    def start_scheduler(self) -> FarmProcess:
        return self._spawn("scheduler", ["scheduler"])

    def start(self, *, threads: int = 1) -> tuple[FarmProcess, FarmProcess]:
        """A scheduler and a worker, started side by side (both take seconds to import); returns
        once the worker beats."""
        scheduler = self.start_scheduler()
        return self.start_worker(threads=threads), scheduler

    def workers(self) -> list[dict[str, Any]]:
        return heartbeat.live(self.redis, "worker")

    def schedulers(self) -> list[dict[str, Any]]:
        return heartbeat.live(self.redis, "scheduler")

    def leader(self) -> str | None:
        value = self.redis.get(heartbeat.LEADER_KEY)
        return value.decode() if isinstance(value, bytes) else value

    def stop(self) -> None:
        """SIGTERM to every process at once (each shuts down in parallel), then wait for each."""
        for process in self.processes:
            process.terminate()
        for process in reversed(self.processes):
            process.stop()

    def report(self, tail_chars: int = 4000) -> str:
        """The end of every process's log (pytest shows what a fixture printed when a test fails)."""
        return "\n".join(f"--- {p.name} {p.pid} ---\n{p.log()[-tail_chars:]}" for p in self.processes)

    # --- the database --------------------------------------------------------------------------
    def subscribe(
        self,
        user_id: int,
        service_id: int,
        offices: list[int],
        *,
        date_from: date | None = None,
        weekdays: list[int] | None = None,
        time_from: clock_time | None = None,
        time_to: clock_time | None = None,
    ) -> int:
        with self.db.transaction() as session:
            if session.get(User, user_id) is None:
                session.add(User(id=user_id, language="de"))
            sub = Subscription(
                user_id=user_id,
                service_id=service_id,
                office_ids=offices,
                date_from=date_from,
                weekdays=weekdays or [],
                time_from=time_from,
                time_to=time_to,
            )
            session.add(sub)
            session.flush()
            return sub.id

    def subscribe_many(self, plans: list[tuple[int, int, int]]) -> list[int]:
        """(user id, service, office) subscriptions in one transaction; returns their ids."""
        with self.db.transaction() as session:
            subs = []
            for user_id, service_id, office in plans:
                session.add(User(id=user_id, language="de"))
                subs.append(Subscription(user_id=user_id, service_id=service_id, office_ids=[office]))
            session.add_all(subs)
            session.flush()
            return [s.id for s in subs]

    def count(self, model: Any, *where: Any) -> int:
        with self.db.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def slots(self) -> list[tuple[int, int, int]]:
        """(office, start epoch s, episode) of every slot row."""
        with self.db.transaction() as session:
            return sorted(
                (s.office_id, int(s.start_at.timestamp()), s.episode) for s in session.scalars(select(Slot))
            )

    def alerts(
        self, kind: NotificationKind = NotificationKind.SLOT
    ) -> list[tuple[int | None, int | None, int]]:
        """(subscription, slot, episode) of every outbox row of ``kind``."""
        with self.db.transaction() as session:
            rows = session.scalars(select(Notification).where(Notification.kind == kind))
            return sorted((n.subscription_id, n.slot_id, n.episode or 0) for n in rows)

    def checks(self) -> list[Check]:
        with self.db.transaction() as session:
            rows = list(session.scalars(select(Check).order_by(Check.id)))
            session.expunge_all()
            return rows

    def target(self, target_id: int) -> Target:
        with self.db.transaction() as session:
            row = session.get(Target, target_id)
            assert row is not None
            session.expunge(row)
            return row

    def end_backoff(self, target_id: int) -> None:
        """Let a backing-off target's back-off run out now instead of in 30 s or more: its
        ``backoff_until`` (which the scheduler re-reads every second) and the worker's in-flight mark
        held until then (``worker.scheduler.mark_done``) are set to what they are once it has passed.
        How long a back-off is, is tested in ``tests/shared/test_recording.py``; a fault test only
        needs the farm to come back once it is over."""
        from datetime import UTC, datetime

        from shared.contracts import INFLIGHT_PREFIX

        with self.db.transaction() as session:
            row = session.get(Target, target_id)
            assert row is not None and row.backoff_until is not None, "the target is not backing off"
            row.backoff_until = datetime.now(UTC)
        key = f"{INFLIGHT_PREFIX}{target_id}"
        with self.redis as client:
            if client.get(key) == b"backoff":
                client.delete(key)

    def targets(self) -> list[Target]:
        with self.db.transaction() as session:
            rows = list(session.scalars(select(Target).where(Target.active.is_(True)).order_by(Target.id)))
            session.expunge_all()
            return rows


@contextmanager
def running_farm(root: Path, redis_url: str, site_url: str, **env: str) -> Iterator[Farm]:
    """A migrated SQLite database in ``root`` and the environment for ``mta`` processes; stops every
    process started through the farm on the way out."""
    root.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{(root / 'mta.db').resolve()}"
    key = Fernet.generate_key().decode()
    overrides = {**FARM_ENV, **env}
    process_env = {k: v for k, v in os.environ.items() if not k.startswith(("MTA_", "dramatiq_"))}
    process_env.update(
        {
            **overrides,
            "MTA_DATA_DIR": str(root),
            "MTA_DATABASE_URL": database_url,
            "MTA_REDIS_URL": redis_url,
            "MTA_SITE_URL": site_url,
            "MTA_ENCRYPTION_KEY": key,
        }
    )
    settings = load_settings(
        data_dir=root, database_url=database_url, redis_url=redis_url, encryption_key=key, env="test"
    )
    db = open_database(settings, migrate=True)
    farm = Farm(root, redis_url, site_url, settings, db, process_env)
    try:
        yield farm
    finally:
        farm.stop()
        print(farm.report())
        db.close()


__all__ = [
    "FARM_ENV",
    "Farm",
    "FarmProcess",
    "alive",
    "command_name",
    "descendants",
    "parent_of",
    "running_farm",
    "wait_until",
]
