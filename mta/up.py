"""`mta up`: the whole farm on one machine, as child processes of this one.

Start order: a local ``redis-server`` (when ``MTA_REDIS_URL`` is empty), the database migration
(``mta db upgrade``), then together the replica (``--replica SCENARIO``; the farm's ``MTA_SITE_URL``
then points at it and a demo user gets subscriptions for the scenario's offices, ``mta.demo``),
scheduler, workers, bot (only with a Telegram token; otherwise ``mta.notify`` prints new alerts)
and api. Each role is waited for until it is healthy (its heartbeat in Redis, or its HTTP answer),
with a line of progress per role. A role whose command says "not built yet" is reported as
skipped and the rest of the farm runs on. Every role's output goes to
``<data_dir>/logs/<role>.log``, rotated by size (``mta.logs``).

Once up, ``mta.supervisor`` restarts a role that dies or wedges (back-off, crash-loop limit) and
records it as a farm event. Ctrl-C, SIGTERM or SIGHUP stops the children in reverse order:
SIGTERM, a grace period, then SIGKILL for the child's process group and anything it started.
Should this process die without doing so (SIGKILL), a watchdog process learns it from the kernel
(``PR_SET_PDEATHSIG``) and stops the roles the same way, so no role outlives its supervisor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mta.demo import DEMO_USER_ID, demo_wishes, end_demo, seed_demo_subscriptions
from mta.logs import LogRotation
from mta.notify import ConsoleAlerts
from mta.probes import WorkerStall, role_heartbeat
from mta.procs import descendants
from mta.supervisor import DEFAULT_GRACE_S, WORKER_GRACE_S, Child, Supervisor
from shared.events import EventLog
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("mta.up")


class FarmError(Exception):
    """A role the farm cannot run without failed to start; the message says which and why."""


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
    ready: Callable[[Child], bool]
    """Healthy? Asked of the role's current process (a heartbeat must come from it, not from the
    process a restart replaced)."""
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
        self.supervisor = Supervisor(
            self.settings.data_dir / "logs",
            rotation=LogRotation.from_settings(self.settings),
            say=self.echo,
        )
        self.probes: dict[str, Callable[[Child], bool]] = {}
        self.events: EventLog | None = None
        self.worker_stall: WorkerStall | None = None
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
                if spec.ready(child):
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
                child.supervised = True  # from now on, restarted when it dies
                self.probes[role] = spec.ready
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
        # an optional role that failed may have met a passing trouble: it is tried again with
        # back-off, and given up after the crash-loop limit
        child.supervised = True
        self.probes[spec.role] = spec.ready

    def _start_role(
        self, role: str, argv: list[str], ready: Callable[[Child], bool], **options: Any
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
            self._start_role(
                "redis", argv, lambda _child: _redis_ping(url), timeout_s=20, required=True, detail=url
            )
        elif not _redis_ping(redis_url):
            raise FarmError("MTA_REDIS_URL does not answer PING")
        else:
            self._end(RoleResult("redis", "ready", "MTA_REDIS_URL"))
        self.env["MTA_REDIS_URL"] = redis_url
        cfg = self.settings = cfg.model_copy(update={"redis_url": redis_url})
        self.events = EventLog(lambda: _redis_client(redis_url))
        self.supervisor.record = self.events.record
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
        ended, dropped = end_demo(cfg)  # an earlier demo that was killed left its subscriptions
        if ended or dropped:
            self._line(
                "demo", f"ended {ended} subscriptions of an earlier demo ({dropped} unsent alerts dropped)"
            )
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
            specs.append(RoleSpec("replica", argv, lambda _child: _http_ok(page_url), 60, True, detail))
            self.env["MTA_SITE_URL"] = page_url
            cfg = self.settings = cfg.model_copy(update={"site_url": page_url})
            added = seed_demo_subscriptions(cfg, self.scenario_path)
            if added:
                self._line("demo", f"{added} subscriptions watch the scenario's offices")

        specs.append(
            RoleSpec(
                "scheduler",
                self._argv("scheduler"),
                lambda child: role_heartbeat(redis_url, "scheduler", child),
                timeout_s=90,
            )
        )

        def worker_ready(child: Child) -> bool:  # each worker process beats once its browser is up
            return role_heartbeat(redis_url, "worker", child)

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
                RoleSpec("bot", self._argv("bot"), lambda child: role_heartbeat(redis_url, "bot", child), 90)
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
        specs.append(
            RoleSpec("api", self._argv("api"), lambda _child: _http_ok(base + "/healthz"), 90, detail=base)
        )

        running = self._start_group(specs)
        if running.get("api") is not None and any(
            r.role == "api" and r.status == "ready" for r in self.results
        ):
            self.dashboard_url = base + "/"
        self.worker_stall = WorkerStall(redis_url, stall_s=cfg.worker_stall_s)
        if self.console is not None:
            self.console.start()  # after every fork: no thread runs while children are spawned

    def watch(self, tick_s: float = 0.5) -> None:
        """Until stopped: restart roles that die or wedge, rotate logs, write pending events.

        A restart forks while the console printer's thread runs; the child execs at once, so no
        lock that thread holds matters to it."""
        stalled = {"worker": self.worker_stall} if self.worker_stall is not None else {}
        while not self.stop.wait(tick_s):
            self.supervisor.tend(self.probes, stalled)
            if self.events is not None and self.events.pending:
                self.events.flush()

    def shutdown(self) -> None:
        if self.console is not None:
            self.console.stop()
        if self.supervisor.children:
            self.echo("mta up: stopping…")
        self.supervisor.stop_all(report=lambda role: self.echo(f"  {role:<10} stopping"))
        if self.scenario_path is not None:
            with contextlib.suppress(Exception):  # a database that is gone must not hide the stop
                ended, dropped = end_demo(self.settings)
                self._line("demo", f"ended {ended} subscriptions ({dropped} unsent alerts dropped)")
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
    "DEMO_USER_ID",
    "Child",
    "ConsoleAlerts",
    "Farm",
    "FarmError",
    "Supervisor",
    "demo_wishes",
    "descendants",
    "end_demo",
    "farm_lock",
    "run_farm",
    "seed_demo_subscriptions",
]
