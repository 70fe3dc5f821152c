"""Supervision for ``mta up``: start the roles, restart one that dies, stop them all in order.

A role that exits on its own, or that its probe calls wedged (a worker whose heartbeat stopped
or that holds a check without finishing one), is started again after a back-off (1 s, 2 s, 4 s …
up to ``RestartPolicy.backoff_max_s``); the others run on. A role that dies ``crash_limit`` times
within ``crash_window_s`` is given up (a crash loop: its log says why). Each restart is told on the
console and leaves a dated event for the dashboard (``shared.events``) once the role is healthy
again, with how long it was down.

A watchdog process (``watchdog``) runs beside the roles: should ``mta up`` die without stopping
them (SIGKILL, a crash), the kernel tells the watchdog, which stops the roles in the same order.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from mta import procs
from mta.logs import LogRotation
from shared.events import FarmEvent
from shared.logging import get_logger

log = get_logger("mta.up")

NOT_BUILT_MARKER = "not built yet"
DEFAULT_GRACE_S = 10.0
WORKER_GRACE_S = 15.0
"""Dramatiq lets the running check finish (``--worker-shutdown-timeout``, 8 s) and closes Chromium."""


@dataclass(frozen=True)
class RestartPolicy:
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    crash_window_s: float = 300.0
    crash_limit: int = 5
    """Exits within ``crash_window_s`` after which a role is given up."""

    def delay_s(self, recent_exits: int) -> float:
        """Back-off before the next start, after ``recent_exits`` exits in the window (>= 1)."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, recent_exits - 1))


@dataclass
class Child:
    """One role's process; its output goes to ``log_path``. Restarts keep the same ``Child``."""

    role: str
    process: subprocess.Popen[bytes]
    log_path: Path
    grace_s: float = DEFAULT_GRACE_S
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    reported_exit: bool = False
    started: float | None = None
    """The process's create time (with its pid, names it even after the pid is reused)."""
    tree: list[procs.Proc] = field(default_factory=list)
    """Its descendants as last seen: what to end once it died (orphans lose their parent)."""
    supervised: bool = False
    """Restarted when it dies (set once the farm is up; a one-shot step never is)."""
    exits: list[float] = field(default_factory=list)
    """Monotonic times of its unplanned exits, for the crash-loop limit."""
    restart_at: float | None = None
    down_since: datetime | None = None
    down_reason: str = ""
    awaiting_ready_until: float | None = None
    given_up: bool = False
    restarts: int = 0

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

    def processes(self) -> list[procs.Proc]:
        """Its own process and every descendant alive now or seen earlier."""
        own = [(self.process.pid, self.started)] if self.started is not None else []
        return own + [p for p in self.tree if p[0] != self.process.pid]


Probe = Callable[[Child], bool]
Stall = Callable[[Child], str | None]


@dataclass
class Supervisor:
    """Starts children in their own sessions, restarts the supervised ones that die, and stops
    them in reverse order, leaving none behind."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)
    registry: Path | None = None
    """Where the roles' pids are written for the watchdog (``<log_dir>/../up.pids.json``)."""
    watchdog_process: subprocess.Popen[bytes] | None = None
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    rotation: LogRotation | None = None
    say: Callable[[str], None] = print
    """One console line (what happened to a role)."""
    record: Callable[[FarmEvent], None] = lambda event: None
    """Keeps a farm event (``shared.events.EventLog.record`` under ``mta up``)."""
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- the watchdog ----------------------------------------------------------------------------
    def start_watchdog(self, env: dict[str, str]) -> None:
        self.registry = self.log_dir.parent / "up.pids.json"
        self._write_registry()
        code = "import sys; from mta.supervisor import watchdog; watchdog(sys.argv[1], int(sys.argv[2]))"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with _open_log(self.log_dir / "watchdog.log") as out:
            self.watchdog_process = subprocess.Popen(
                [sys.executable, "-c", code, str(self.registry), str(os.getpid())],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=procs.watch_parent if sys.platform == "linux" else None,
            )

    def _write_registry(self) -> None:
        if self.registry is None:
            return
        entries = [
            {"role": c.role, "pid": c.process.pid, "start": c.started, "grace_s": c.grace_s}
            for c in self.children
            if c.running
        ]
        temp = self.registry.with_suffix(".tmp")
        temp.write_text(json.dumps(entries))
        temp.replace(self.registry)

    # --- starting --------------------------------------------------------------------------------
    def _popen(
        self, role: str, argv: list[str], env: dict[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with _open_log(log_path) as out:
            out.write(
                f"\n--- mta up: starting {role} at {datetime.now().isoformat(timespec='seconds')}\n".encode()
            )
            out.flush()
            # a session of its own: the terminal's Ctrl-C reaches only us, and we stop roles in order
            return subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def spawn(
        self, role: str, argv: list[str], env: dict[str, str], *, grace_s: float = DEFAULT_GRACE_S
    ) -> Child:
        log_path = self.log_dir / f"{role}.log"
        with self._lock:
            process = self._popen(role, argv, env, log_path)
            child = Child(role, process, log_path, grace_s, list(argv), dict(env))
            child.started = _create_time(process.pid)
            self.children.append(child)
            self._write_registry()
        return child

    def forget(self, child: Child) -> None:
        """``child`` ran to its end (a one-shot step); it is no role to stop."""
        with self._lock:
            self.children.remove(child)
            self._write_registry()

    # --- tending ---------------------------------------------------------------------------------
    def tend(self, ready: Mapping[str, Probe], stalled: Mapping[str, Stall] | None = None) -> None:
        """One round of care (called about once a second): remember the trees, rotate logs,
        notice dead or wedged roles, start again those whose back-off is over, and report a
        restarted role once ``ready`` says it is healthy."""
        now = time.monotonic()
        with self._lock:
            for child in list(self.children):
                if child.given_up:
                    continue
                if child.running:
                    child.tree = procs.descendants(child.process.pid) or child.tree
                    reason = (
                        (stalled or {}).get(child.role, lambda _c: None)(child) if child.supervised else None
                    )
                    if reason is not None:
                        self.say(f"  {child.role:<10} wedged ({reason}): replacing it")
                        procs.stop_process(
                            child.process.pid, child.grace_s, started=child.started, known=child.tree
                        )
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            child.process.wait(5)
                        self._died(child, now, f"wedged: {reason}")
                    elif child.awaiting_ready_until is not None:
                        self._maybe_ready(child, ready.get(child.role), now)
                elif child.restart_at is None and child.supervised:
                    self._died(child, now, f"exited with code {child.process.returncode}")
                if child.restart_at is not None and now >= child.restart_at:
                    self._restart(child, now)
            if self.rotation is not None:
                for child in self.children:
                    self.rotation.rotate(child.log_path)

    def _died(self, child: Child, now: float, reason: str) -> None:
        """``child`` is gone: end what it left, and plan its restart (or give it up)."""
        child.reported_exit = True
        procs.kill_group(child.process.pid)
        procs.end_all(child.tree, grace_s=1.0)
        child.tree = []
        child.exits = [t for t in child.exits if now - t < self.policy.crash_window_s] + [now]
        if child.down_since is None:
            child.down_since = datetime.now(UTC)
            child.down_reason = reason
        child.awaiting_ready_until = None
        if len(child.exits) >= self.policy.crash_limit:
            child.given_up = True
            text = (
                f"{child.role} died {len(child.exits)} times in {self.policy.crash_window_s:.0f} s"
                f" ({reason}): given up; log: {child.log_path}"
            )
            self.say(f"  {child.role:<10} {text.split(' ', 1)[1]}")
            self.record(FarmEvent(at=child.down_since, kind="role_given_up", text=text, role=child.role))
            self._write_registry()
            return
        delay_s = self.policy.delay_s(len(child.exits))
        child.restart_at = now + delay_s
        self.say(f"  {child.role:<10} {reason}; restarting in {delay_s:.0f} s; log: {child.log_path}")
        log.warning("role_died", role=child.role, reason=reason, restart_in_s=delay_s)

    def _restart(self, child: Child, now: float) -> None:
        child.restart_at = None
        child.restarts += 1
        child.process = self._popen(child.role, child.argv, child.env, child.log_path)
        child.started = _create_time(child.process.pid)
        child.reported_exit = False
        child.awaiting_ready_until = now + 180.0
        self._write_registry()
        self.say(f"  {child.role:<10} restarted (restart {child.restarts}, pid {child.process.pid})")

    def _maybe_ready(self, child: Child, probe: Probe | None, now: float) -> None:
        healthy = probe(child) if probe is not None else True
        if not healthy and now < (child.awaiting_ready_until or now):
            return
        down_since = child.down_since or datetime.now(UTC)
        down_s = (datetime.now(UTC) - down_since).total_seconds()
        state = "healthy again" if healthy else "restarted but not healthy yet"
        text = f"{child.role} {child.down_reason}; restarted by mta up, {state}"
        self.say(f"  {child.role:<10} {state} after {down_s:.1f} s down")
        self.record(
            FarmEvent(
                at=down_since, kind="role_restarted", text=text, role=child.role, duration_s=round(down_s, 1)
            )
        )
        child.awaiting_ready_until = None
        child.down_since = None

    # --- stopping --------------------------------------------------------------------------------
    def stop_all(self, report: Callable[[str], None] | None = None) -> None:
        """SIGTERM each child (last started first), wait its grace period, then kill what is left."""
        with self._lock:
            for child in reversed(self.children):
                child.supervised = False
                if report is not None and child.running:
                    report(child.role)
                procs.stop_process(child.process.pid, child.grace_s, started=child.started, known=child.tree)
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


def _create_time(pid: int) -> float | None:
    found = procs.identify(pid)
    return found[1] if found is not None else None


def _open_log(path: Path) -> BinaryIO:
    """The log file for appending, private (0600: a role's output may name a subscriber's chat)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(fd, "ab")


def watchdog(registry: str, parent_pid: int) -> None:
    """Beside the roles: once ``mta up`` (``parent_pid``) is gone, stop the roles it listed in
    ``registry``, last started first. The kernel's SIGTERM (``PR_SET_PDEATHSIG``) wakes it; a
    check of the parent every second covers a parent that died before that was set up."""
    wake = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: wake.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked by watch_parent
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
            procs.stop_process(int(entry["pid"]), float(entry["grace_s"]), started=float(entry["start"]))
    with contextlib.suppress(OSError):
        Path(registry).unlink()


__all__ = [
    "DEFAULT_GRACE_S",
    "NOT_BUILT_MARKER",
    "WORKER_GRACE_S",
    "Child",
    "RestartPolicy",
    "Supervisor",
    "watchdog",
]
