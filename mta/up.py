"""`mta up`: the whole farm on one machine, as child processes of this one.

Start order: a local ``redis-server`` (when ``MTA_REDIS_URL`` is empty), the database migration
(``mta db upgrade``), then together the replica (``--replica SCENARIO``; the farm's ``MTA_SITE_URL``
then points at it and a demo user gets subscriptions for the scenario's offices), scheduler,
workers, bot (only with a Telegram token; otherwise a console printer shows new alerts) and api.
Each role is waited for until it is healthy (its heartbeat in Redis, or its HTTP answer), with a
line of progress per role. A role whose command says "not built yet" is reported as skipped and
the rest of the farm runs on. Every role's output goes to ``<data_dir>/logs/<role>.log``.

Ctrl-C, SIGTERM or SIGHUP stops the children in reverse order: SIGTERM, a grace period, then
SIGKILL for the child's process group and anything it started. Should this process die without
doing so (SIGKILL), a watchdog process learns it from the kernel (``PR_SET_PDEATHSIG``) and stops
the roles the same way, so no role outlives its supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("mta.up")

NOT_BUILT_MARKER = "not built yet"
DEMO_USER_ID = 1
"""The demo subscriptions' owner when no operator chat id is configured (no real Telegram user)."""
MAX_DEMO_SUBSCRIPTIONS = 4
PREFERRED_SERVICES = (1063475, 1063441, 10339027, 1064361, 1071854, 1063426)
"""Popular short services, picked first for the demo subscriptions (Wohnsitzanmeldung, Personalausweis,
Notfall-Hilfe Aufenthaltstitel, Führerschein-Verlängerung, Internationaler Führerschein, Beglaubigung)."""
DEFAULT_GRACE_S = 10.0
WORKER_GRACE_S = 15.0
"""Dramatiq lets the running check finish (``--worker-shutdown-timeout``, 8 s) and closes Chromium."""
PR_SET_PDEATHSIG = 1


class FarmError(Exception):
    """A role the farm cannot run without failed to start; the message says which and why."""


# --- processes -------------------------------------------------------------------------------------
def _watch_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM this child when ``mta up`` dies (Linux; a no-op elsewhere), with
    SIGTERM blocked until the child has its handler (``watchdog`` unblocks it): a signal during
    the child's start would otherwise kill it on the spot."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live process from a reused pid); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields and fields[0] == "Z":  # a zombie has finished; its parent reaps it
        return None
    return fields[19] if len(fields) > 19 else None


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every live process below ``pid`` as (pid, start time), read from /proc (empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[tuple[int, str]] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        started = _proc_start_time(child)
        if started is not None:
            found.append((child, started))
        todo.extend(children.get(child, []))
    return found


def _alive(pid: int, started: str) -> bool:
    return _proc_start_time(pid) == started


@dataclass
class Child:
    """One role's process; its output goes to ``log_path``."""

    role: str
    process: subprocess.Popen[bytes]
    log_path: Path
    grace_s: float = DEFAULT_GRACE_S
    reported_exit: bool = False

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def said_not_built(self) -> bool:
        return NOT_BUILT_MARKER in self.log_tail(40)


@dataclass
class Supervisor:
    """Starts children in their own sessions and stops them in reverse order, leaving none behind.

    A watchdog process (``watchdog``) runs beside the roles: should this process die without
    stopping them (SIGKILL, a crash), the kernel tells the watchdog, which stops the roles in the
    same order. The roles themselves are not told directly: all at once, Redis would go before the
    workers that still need it to shut down.
    """

    log_dir: Path
    children: list[Child] = field(default_factory=list)
    registry: Path | None = None
    """Where the roles' pids are written for the watchdog (``<log_dir>/../up.pids.json``)."""
    watchdog_process: subprocess.Popen[bytes] | None = None

    def start_watchdog(self, env: dict[str, str]) -> None:
        self.registry = self.log_dir.parent / "up.pids.json"
        self._write_registry()
        code = "import sys; from mta.up import watchdog; watchdog(sys.argv[1], int(sys.argv[2]))"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / "watchdog.log").open("ab") as out:
            self.watchdog_process = subprocess.Popen(
                [sys.executable, "-c", code, str(self.registry), str(os.getpid())],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_watch_parent if sys.platform == "linux" else None,
            )

    def _write_registry(self) -> None:
        if self.registry is None:
            return
        entries = [
            {
                "role": c.role,
                "pid": c.process.pid,
                "start": _proc_start_time(c.process.pid),
                "grace_s": c.grace_s,
            }
            for c in self.children
        ]
        temp = self.registry.with_suffix(".tmp")
        temp.write_text(json.dumps(entries))
        temp.replace(self.registry)

    def spawn(
        self, role: str, argv: list[str], env: dict[str, str], *, grace_s: float = DEFAULT_GRACE_S
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{role}.log"
        with log_path.open("ab") as out:
            out.write(
                f"\n--- mta up: starting {role} at {datetime.now().isoformat(timespec='seconds')}\n".encode()
            )
            out.flush()
            # a session of its own: the terminal's Ctrl-C reaches only us, and we stop roles in order
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(role, process, log_path, grace_s)
        self.children.append(child)
        self._write_registry()
        return child

    def forget(self, child: Child) -> None:
        """``child`` ran to its end (a one-shot step); it is no role to stop."""
        self.children.remove(child)
        self._write_registry()

    def stop_all(self, report: Callable[[str], None] | None = None) -> None:
        """SIGTERM each child (last started first), wait its grace period, then kill what is left."""
        for child in reversed(self.children):
            if report is not None and child.running:
                report(child.role)
            stop_process(child.process.pid, child.grace_s)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(1)
        self.children.clear()
        self._write_registry()
        if self.watchdog_process is not None:
            self.watchdog_process.kill()
            self.watchdog_process.wait(10)
            self.watchdog_process = None
        if self.registry is not None:
            self.registry.unlink(missing_ok=True)


def _wait_gone(processes: list[tuple[int, str]], timeout_s: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout_s
    left = [(p, s) for p, s in processes if _alive(p, s)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [(p, s) for p, s in left if _alive(p, s)]
    return left


def stop_process(pid: int, grace_s: float, *, started: str | None = None) -> None:
    """SIGTERM ``pid`` and wait ``grace_s``; then SIGKILL its process group; then end whatever it
    started that is still alive (Chromium leaves the group), SIGTERM first, SIGKILL after 3 s."""
    started = started or _proc_start_time(pid)
    if started is None:
        return
    tree = descendants(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:  # a zombie counts as gone: its parent reaps it
        if not _alive(pid, started):
            break
        time.sleep(0.05)
    else:
        log.warning("role_killed", pid=pid, grace_s=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _wait_gone([(pid, started)], 5)
    leftovers = [(p, s) for p, s in tree if _alive(p, s)]
    for p, _ in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    leftovers = _wait_gone(leftovers, 3)
    for p, _ in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    _wait_gone(leftovers, 2)  # SIGKILL is not instant either


def watchdog(registry: str, parent_pid: int) -> None:
    """Beside the roles: once ``mta up`` (``parent_pid``) is gone, stop the roles it listed in
    ``registry``, last started first. The kernel's SIGTERM (``PR_SET_PDEATHSIG``) wakes it; a
    check of the parent every second covers a parent that died before that was set up."""
    wake = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: wake.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked by _watch_parent
    while not wake.wait(1.0):
        if os.getppid() != parent_pid:
            break
    try:
        entries = json.loads(Path(registry).read_text())
    except (OSError, ValueError):
        return
    for entry in reversed(entries):
        if entry.get("start"):
            print(f"mta up is gone: stopping {entry['role']} (pid {entry['pid']})", flush=True)
            stop_process(int(entry["pid"]), float(entry["grace_s"]), started=str(entry["start"]))
    with contextlib.suppress(OSError):
        Path(registry).unlink()


# --- small helpers ---------------------------------------------------------------------------------
def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if nobody listens there, else any free port (a second farm, a busy 8000)."""
    return preferred if port_is_free(preferred, host) else free_port(host)


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(_redis_client(url).ping())
    except (redis.RedisError, OSError):
        return False


def _redis_has(url: str, pattern: str) -> bool:
    import redis

    try:
        return next(iter(_redis_client(url).scan_iter(match=pattern, count=100)), None) is not None
    except (redis.RedisError, OSError):
        return False


@contextlib.contextmanager
def farm_lock(data_dir: Path) -> Iterator[None]:
    """One farm per data folder: two would share one SQLite file and fight over ports."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "up.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FarmError(f"another `mta up` is running with the data folder {data_dir}") from None
        yield


# --- the demo's subscriptions ----------------------------------------------------------------------
def demo_wishes(scenario_path: Path, *, limit: int = MAX_DEMO_SUBSCRIPTIONS) -> list[tuple[int, list[int]]]:
    """(service, offices) pairs that will see the scenario's releases, one per group of offices.

    For each release in the scenario, the service that the replica's site offers at most of its
    offices in one slot unit wins (popular services first among equals); wishes for the same
    service are merged. The site's view matters: it hides some services at some offices.
    """
    import yaml

    from replica.catalog import Catalog

    site = Catalog.load()
    data = yaml.safe_load(scenario_path.read_text(encoding="utf-8")) or {}
    wishes: dict[int, list[int]] = {}
    for event in data.get("events") or []:
        release = event.get("release") if isinstance(event, dict) else None
        if not isinstance(release, dict) or release.get("services", "all") != "all":
            continue
        offices = [int(o) for o in (release.get("offices") or [release.get("office")]) if o is not None]
        best: tuple[tuple[int, int, int], int, list[int]] | None = None
        for service_id in sorted(site.services):
            covered = [
                o
                for o in offices
                if site.offers(o, service_id) and site.units_needed(o, [service_id], [1]) == 1
            ]
            if not covered:
                continue
            rank = PREFERRED_SERVICES.index(service_id) if service_id in PREFERRED_SERVICES else 99
            score = (len(covered), -rank, -service_id)
            if best is None or score > best[0]:
                best = (score, service_id, covered)
        if best is not None:
            merged = wishes.setdefault(best[1], [])
            merged.extend(o for o in best[2] if o not in merged)
    return [(service_id, sorted(offices)) for service_id, offices in wishes.items()][:limit]


def seed_demo_subscriptions(settings: Settings, scenario_path: Path) -> int:
    """Give the demo user subscriptions matching the scenario, once; returns how many were added."""
    from sqlalchemy import select

    from shared.db.database import open_database
    from shared.db.models import Subscription, SubscriptionState, User

    user_id = settings.operator_chat_ids[0] if settings.operator_chat_ids else DEMO_USER_ID
    db = open_database(settings)
    try:
        with db.transaction() as session:
            if session.get(User, user_id) is None:
                session.add(User(id=user_id, language="de"))
                session.flush()
            existing = session.scalars(
                select(Subscription).where(
                    Subscription.user_id == user_id, Subscription.state == SubscriptionState.ACTIVE
                )
            ).all()
            if existing:
                return 0
            wishes = demo_wishes(scenario_path)
            for service_id, offices in wishes:
                session.add(Subscription(user_id=user_id, service_id=service_id, office_ids=offices))
            return len(wishes)
    finally:
        db.close()


# --- alerts on the console -------------------------------------------------------------------------
def describe_notification(kind: str, payload: dict[str, Any], text: str | None) -> str:
    """One console line for an outbox row: what, where, when; never who."""
    from shared.catalog import get_catalog
    from shared.domain import SITE_TIMEZONE

    if kind == "operator":
        return f"operator: {text or payload.get('reason', 'see the dashboard')}"
    catalog = get_catalog()
    service = catalog.service(int(payload.get("service_id", 0)))
    office = catalog.office(int(payload.get("office_id", 0)))
    when = str(payload.get("start", "?"))
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(when).astimezone(SITE_TIMEZONE).strftime("%a %d.%m. %H:%M")
    what = service.name if service else f"service {payload.get('service_id')}"
    where = office.name if office else f"office {payload.get('office_id')}"
    label = {"slot": "free slot", "gone": "gone again"}.get(kind, kind)
    return f"{label}: {what} — {where} — {when}"


class ConsoleAlerts:
    """Prints every new outbox row (no personal data) while no Telegram bot sends them."""

    def __init__(
        self, settings: Settings, echo: Callable[[str], None], *, poll_s: float = 1.0, site_url: str = ""
    ) -> None:
        self.settings = settings
        self.echo = echo
        self.poll_s = poll_s
        self.site_url = site_url
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.printed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        from sqlalchemy import func, select

        from shared.db.database import open_database
        from shared.db.models import Notification

        db = open_database(self.settings)
        try:
            with db.transaction() as session:
                last_id = session.scalar(select(func.max(Notification.id))) or 0
            while not self._stop.wait(self.poll_s):
                try:
                    with db.transaction() as session:
                        rows = session.execute(
                            select(
                                Notification.id, Notification.kind, Notification.payload, Notification.text
                            )
                            .where(Notification.id > last_id)
                            .order_by(Notification.id)
                            .limit(50)
                        ).all()
                except Exception as exc:  # a locked or missing DB must not kill the farm's console
                    log.warning("console_alerts_failed", error=str(exc))
                    continue
                for row_id, kind, payload, text in rows:
                    last_id = max(last_id, row_id)
                    stamp = datetime.now().strftime("%H:%M:%S")
                    self.echo(f"[{stamp}] 🔔 {describe_notification(str(kind), payload or {}, text)}")
                    self.printed += 1
        finally:
            db.close()


# --- the farm --------------------------------------------------------------------------------------
@dataclass
class RoleResult:
    role: str
    status: str
    """ready | skipped | failed | slow"""
    detail: str = ""


@dataclass
class RoleSpec:
    """How to start one role and how to tell that it is up."""

    role: str
    argv: list[str]
    ready: Callable[[], bool]
    timeout_s: float
    required: bool = False
    detail: str = ""
    grace_s: float = DEFAULT_GRACE_S


class Farm:
    """Brings the roles up and down again; ``run_farm`` is what ``mta up`` calls.

    Roles that do not need each other start together (replica, scheduler, workers, bot, api: each
    reads Redis and the database, none waits for another), which halves the start on a small box.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        replica_scenario: str | None = None,
        workers: int = 1,
        echo: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
        self.replica_scenario = replica_scenario
        self.workers = workers
        self.echo = echo or _echo
        self.stop = stop or threading.Event()
        self.supervisor = Supervisor(self.settings.data_dir / "logs")
        self.env: dict[str, str] = {}
        self.results: list[RoleResult] = []
        self.console: ConsoleAlerts | None = None
        self.dashboard_url: str | None = None
        self.scenario_path: Path | None = None

    # --- output ------------------------------------------------------------------------------------
    def _line(self, role: str, text: str) -> None:
        self.echo(f"  {role:<10} {text}")

    def _end(self, result: RoleResult) -> None:
        self.results.append(result)
        words = {"ready": "ready", "skipped": "skipped", "failed": "FAILED", "slow": "still starting"}
        self._line(result.role, words[result.status] + (f" ({result.detail})" if result.detail else ""))

    # --- roles -------------------------------------------------------------------------------------
    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mta", *args]

    def _start_group(self, specs: list[RoleSpec]) -> dict[str, Child | None]:
        """Start ``specs`` at once and wait until each is ready, gone, or out of time.

        A role that exits saying it is "not built yet" is skipped; another exit or a timeout is
        reported, and raises ``FarmError`` for a required role. Returns the running children.
        """
        started: dict[str, tuple[RoleSpec, Child, float]] = {}
        for spec in specs:
            child = self.supervisor.spawn(spec.role, spec.argv, self.env, grace_s=spec.grace_s)
            started[spec.role] = (spec, child, time.monotonic() + spec.timeout_s)
            self._line(spec.role, "starting…")
        running: dict[str, Child | None] = {}
        pending = dict(started)
        while pending:
            if self.stop.is_set():
                for role, (_, child, _) in pending.items():
                    running[role] = child
                    self._end(RoleResult(role, "failed", "interrupted"))
                return running
            for role, (spec, child, deadline) in list(pending.items()):
                if spec.ready():
                    self._end(RoleResult(role, "ready", spec.detail))
                elif not child.running:
                    child.reported_exit = True
                    running[role] = None
                    del pending[role]
                    self._exited(spec, child)
                    continue
                elif time.monotonic() > deadline:
                    detail = f"not healthy after {spec.timeout_s:.0f}s; log: {child.log_path}"
                    self._end(RoleResult(role, "slow", detail))
                    if spec.required:
                        raise FarmError(
                            f"{role} did not become ready in {spec.timeout_s:.0f}s (see {child.log_path})"
                        )
                else:
                    continue
                running[role] = child
                del pending[role]
            self.stop.wait(0.2)
        return running

    def _exited(self, spec: RoleSpec, child: Child) -> None:
        if child.said_not_built():
            self._end(RoleResult(spec.role, "skipped", "not built yet"))
            return
        code = child.process.returncode
        self._end(RoleResult(spec.role, "failed", f"exited with code {code}; log: {child.log_path}"))
        tail = child.log_tail()
        if tail:
            self.echo("    " + tail.replace("\n", "\n    "))
        if spec.required:
            raise FarmError(f"{spec.role} did not start (see {child.log_path})")

    def _start_role(
        self, role: str, argv: list[str], ready: Callable[[], bool], **options: Any
    ) -> Child | None:
        return self._start_group([RoleSpec(role, argv, ready, **options)])[role]

    def start(self) -> None:
        cfg = self.settings
        data = cfg.data_dir
        data.mkdir(parents=True, exist_ok=True)
        # stale per-process metric files from an earlier run would be summed with the new ones
        shutil.rmtree(cfg.metrics_dir, ignore_errors=True)
        cfg.metrics_dir.mkdir(parents=True, exist_ok=True)
        if self.replica_scenario:
            from replica.scenarios import Scenario, ScenarioError, resolve_scenario

            try:  # a bad scenario stops everything before anything starts
                self.scenario_path = resolve_scenario(self.replica_scenario)
                Scenario.load(self.scenario_path)
            except ScenarioError as exc:
                raise FarmError(f"--replica: {exc}") from None
        self.env = {**os.environ, "MTA_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
        self.echo(f"mta up: starting the farm (data folder {data}, logs in {self.supervisor.log_dir})")
        self.supervisor.start_watchdog(self.env)

        # redis
        redis_url = cfg.redis_url
        if not redis_url:
            binary = shutil.which("redis-server")
            if binary is None:
                raise FarmError(
                    "MTA_REDIS_URL is empty and redis-server is not installed: run scripts/setup.sh"
                )
            port = free_port()
            redis_url = f"redis://127.0.0.1:{port}/0"
            (data / "redis").mkdir(exist_ok=True)
            argv = [
                binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data / "redis"),
                "--save", "", "--appendonly", "no", "--protected-mode", "yes",
            ]  # fmt: skip
            url = redis_url
            self._start_role("redis", argv, lambda: _redis_ping(url), timeout_s=20, required=True, detail=url)
        elif not _redis_ping(redis_url):
            raise FarmError("MTA_REDIS_URL does not answer PING")
        else:
            self._end(RoleResult("redis", "ready", "MTA_REDIS_URL"))
        self.env["MTA_REDIS_URL"] = redis_url
        cfg = self.settings = cfg.model_copy(update={"redis_url": redis_url})
        if self.stop.is_set():
            return

        # database: `mta db upgrade`, its output in the log folder like every role's
        self._line("database", "migrating…")
        migrate = self.supervisor.spawn("database", self._argv("db", "upgrade"), self.env)
        try:
            code = migrate.process.wait(180)
        except subprocess.TimeoutExpired:
            migrate.process.kill()
            code = migrate.process.wait()
        self.supervisor.forget(migrate)
        if code != 0:
            self._end(RoleResult("database", "failed", f"`mta db upgrade` exited with {code}"))
            self.echo("    " + migrate.log_tail().replace("\n", "\n    "))
            raise FarmError(f"the database migration failed (see {migrate.log_path})")
        db_label = "SQLite " + str(data / "mta.db") if not cfg.database_url else "MTA_DATABASE_URL"
        self._end(RoleResult("database", "ready", db_label))
        if self.stop.is_set():
            return

        specs: list[RoleSpec] = []
        # the replica, and the farm pointed at it
        if self.scenario_path is not None:
            from replica.config import PAGE_PATH

            host = "127.0.0.1"  # a secure context for the captcha widget's WebCrypto
            port = pick_port(cfg.replica_port, host)
            page_url = f"http://{host}:{port}{PAGE_PATH}"
            argv = self._argv(
                "replica",
                "--host",
                host,
                "--port",
                str(port),
                "--scenario",
                str(self.scenario_path),
                "--control",
            )
            detail = f"{page_url}, scenario {self.replica_scenario}"
            specs.append(RoleSpec("replica", argv, lambda: _http_ok(page_url), 60, True, detail))
            self.env["MTA_SITE_URL"] = page_url
            cfg = self.settings = cfg.model_copy(update={"site_url": page_url})
            added = seed_demo_subscriptions(cfg, self.scenario_path)
            if added:
                self._line("demo", f"{added} subscriptions watch the scenario's offices")

        specs.append(
            RoleSpec(
                "scheduler",
                self._argv("scheduler"),
                lambda: _redis_has(redis_url, "mta:heartbeat:scheduler:*"),
                timeout_s=90,
            )
        )

        def worker_ready() -> bool:  # each worker process beats once its browser pool is up
            return _redis_has(redis_url, "mta:heartbeat:worker:*")

        plural = "es" if self.workers != 1 else ""
        specs.append(
            RoleSpec(
                "worker",
                self._argv("worker", "--processes", str(self.workers)),
                worker_ready,
                timeout_s=120,
                detail=f"{self.workers} process{plural}, one Chromium each",
                grace_s=WORKER_GRACE_S,
            )
        )
        if cfg.telegram_token is not None and cfg.telegram_token.get_secret_value():
            specs.append(
                RoleSpec("bot", self._argv("bot"), lambda: _redis_has(redis_url, "mta:heartbeat:bot*"), 90)
            )
        else:
            self._end(RoleResult("bot", "skipped", "no MTA_TELEGRAM_TOKEN"))
            self._line("", "alerts are shown on the dashboard and on this console")
            self.console = ConsoleAlerts(cfg, self.echo)

        api_host = cfg.api_host
        local_host = "127.0.0.1" if api_host in ("0.0.0.0", "::") else api_host
        api_port = pick_port(cfg.api_port, local_host)
        base = f"http://{local_host}:{api_port}"
        self.env["MTA_API_PORT"] = str(api_port)
        specs.append(RoleSpec("api", self._argv("api"), lambda: _http_ok(base + "/healthz"), 90, detail=base))

        running = self._start_group(specs)
        if running.get("api") is not None and any(
            r.role == "api" and r.status == "ready" for r in self.results
        ):
            self.dashboard_url = base + "/"
        if self.console is not None:
            self.console.start()  # after every fork: no thread runs while children are spawned

    def watch(self) -> None:
        """Until stopped: report roles that exit on their own."""
        while not self.stop.wait(1.0):
            for child in self.supervisor.children:
                if not child.running and not child.reported_exit:
                    child.reported_exit = True
                    self.echo(
                        f"  {child.role} exited with code {child.process.returncode}; log: {child.log_path}"
                    )

    def shutdown(self) -> None:
        if self.console is not None:
            self.console.stop()
        if self.supervisor.children:
            self.echo("mta up: stopping…")
        self.supervisor.stop_all(report=lambda role: self.echo(f"  {role:<10} stopping"))
        self.echo("mta up: stopped.")

    def summary(self) -> None:
        if self.dashboard_url:
            self.echo(f"\nDashboard: {self.dashboard_url}")
        else:
            self.echo("\nNo dashboard: the api role did not start.")
        if self.console is not None:
            self.echo("Alerts print below as they are queued.")
        self.echo("Press Ctrl-C to stop everything.")


def _echo(text: str) -> None:
    print(text, flush=True)


def run_farm(settings: Settings, *, replica_scenario: str | None = None, workers: int = 1) -> int:
    """``mta up``: start, watch until Ctrl-C/SIGTERM, stop. Returns the exit code."""
    stop = threading.Event()
    interrupts = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal interrupts
        interrupts += 1
        stop.set()
        if interrupts > 2:  # the third Ctrl-C: the user really wants out
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    farm = Farm(settings, replica_scenario=replica_scenario, workers=workers, stop=stop)
    code = 0
    try:
        with farm_lock(farm.settings.data_dir):
            try:
                farm.start()
                if not stop.is_set():
                    farm.summary()
                    farm.watch()
            except FarmError as exc:
                _echo(f"\nmta up: {exc}")
                code = 1
            finally:
                farm.shutdown()
    except FarmError as exc:
        _echo(f"mta up: {exc}")
        code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


__all__ = [
    "Child",
    "ConsoleAlerts",
    "Farm",
    "FarmError",
    "Supervisor",
    "demo_wishes",
    "descendants",
    "describe_notification",
    "run_farm",
    "seed_demo_subscriptions",
]
