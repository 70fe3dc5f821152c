"""`mta up`: the whole farm as child processes, and its supervisor.

The end-to-end test runs the real command (`mta up --replica demo`) in a temporary data folder: a
real redis-server, SQLite, the replica, scheduler, a worker with Chromium and the api. It waits for
a slot of the demo scenario to reach the database (and the console), then presses Ctrl-C (SIGINT)
and checks that no process the farm started is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mta import procs
from mta.up import (
    Farm,
    FarmError,
    Supervisor,
    demo_wishes,
    descendants,
    farm_lock,
)
from shared.settings import load_settings
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(240)

STARTUP_TIMEOUT_S = 150
SLOT_TIMEOUT_S = 150


class Output:
    """Collects a child's stdout lines in a thread, so the test can wait for one."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout_s: float, process: subprocess.Popen[str]) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            if process.poll() is not None:
                return needle in self.text()
            time.sleep(0.2)
        return False


def _count(db_path: Path, table: str) -> int:
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.fixture
def farm_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTA_")}
    env.update(
        MTA_DATA_DIR=str(tmp_path / "data"),
        MTA_ENV="test",
        MTA_PACER="none",
        MTA_API_PORT=str(free_port()),
        MTA_REPLICA_PORT=str(free_port()),
        MTA_REPLICA_CAPTCHA_COST="50",
        MTA_SITE_BUDGET_PER_MINUTE="60",
        MTA_CHECK_JITTER_S="0",
    )
    return env


@pytest.fixture
def farm(tmp_path: Path, farm_env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "mta", "up", "--replica", "demo"],
        cwd=tmp_path,  # no stray .env from the checkout
        env=farm_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process.stdout)
    try:
        yield process, output
    finally:
        if process.poll() is None:  # the test failed half-way: do not leave a farm behind
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                for pid, _ in descendants(process.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.kill()
                process.wait(10)


def _alive(pid: int, started: float) -> bool:
    return procs.alive((pid, started))


@pytest.mark.slow
@pytest.mark.browser
def test_up_replica_demo_reaches_the_database_and_stops_cleanly(
    tmp_path: Path, farm: tuple[subprocess.Popen[str], Output], farm_env: dict[str, str]
) -> None:
    """`mta up --replica demo` from nothing: every role starts, a demo slot becomes a slot row and a
    notification (printed on the console, no Telegram token), and Ctrl-C leaves no process behind.
    The api is asserted like every role, unconditionally: tried with its port held by a socket that
    never answers, the /healthz request fails the test."""
    process, output = farm
    assert output.wait_for("Press Ctrl-C", STARTUP_TIMEOUT_S, process), output.text()
    text = output.text()
    for role in ("redis", "database", "replica", "scheduler", "worker", "api"):
        assert any(line.strip().startswith(role) and "ready" in line for line in text.splitlines()), text
    assert "skipped (no MTA_TELEGRAM_TOKEN)" in text
    assert "alerts are shown on the dashboard and on this console" in text

    base = f"http://127.0.0.1:{farm_env['MTA_API_PORT']}"
    assert httpx.get(base + "/healthz", timeout=10).status_code == 200
    assert f"Dashboard: {base}/" in text

    db_path = tmp_path / "data" / "mta.db"
    deadline = time.monotonic() + SLOT_TIMEOUT_S
    while time.monotonic() < deadline and not (_count(db_path, "slots") and _count(db_path, "notifications")):
        assert process.poll() is None, output.text()
        time.sleep(1)
    assert _count(db_path, "slots") > 0, output.text()
    assert _count(db_path, "notifications") > 0, output.text()
    assert output.wait_for("🔔", 30, process), output.text()

    tree = descendants(process.pid)
    assert len(tree) >= 5, tree  # redis, replica, scheduler, worker (+ its processes, Chromium), api
    process.send_signal(signal.SIGINT)
    assert process.wait(120) == 0, output.text()
    assert "mta up: stopped." in output.text()
    left = [pid for pid, started in tree if _alive(pid, started)]
    assert not left, f"processes left behind: {left}"


def test_a_role_that_is_not_built_is_skipped(tmp_path: Path) -> None:
    """Injected: a role command that says "not built yet" and exits 2. Asserted: reported as
    skipped, the farm goes on (no FarmError), nothing is left running."""
    lines: list[str] = []
    farm = Farm(load_settings(data_dir=tmp_path), echo=lines.append)
    farm.env = dict(os.environ)
    argv = [sys.executable, "-c", "import sys; print('mta bot: this role is not built yet'); sys.exit(2)"]
    child = farm._start_role("bot", argv, lambda _child: False, timeout_s=60, required=False)
    assert child is None
    assert farm.results[-1].status == "skipped"
    farm.supervisor.stop_all()


def test_a_required_role_that_fails_stops_the_start(tmp_path: Path) -> None:
    """Injected: a required role that exits 1 at once. Asserted: FarmError naming its log, and the
    log's last lines shown."""
    lines: list[str] = []
    farm = Farm(load_settings(data_dir=tmp_path), echo=lines.append)
    farm.env = dict(os.environ)
    argv = [sys.executable, "-c", "import sys; print('address already in use'); sys.exit(1)"]
    with pytest.raises(FarmError, match=r"replica did not start .*replica\.log"):
        farm._start_role("replica", argv, lambda _child: False, timeout_s=60, required=True)
    assert any("address already in use" in line for line in lines)
    farm.supervisor.stop_all()


def test_stop_kills_a_child_that_ignores_sigterm_and_its_detached_grandchild(tmp_path: Path) -> None:
    """Injected: a child that ignores SIGTERM and starts a grandchild in a session of its own (as
    Chromium does). Asserted: after the grace period both are gone."""
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    supervisor = Supervisor(tmp_path / "logs")
    child = supervisor.spawn("stubborn", [sys.executable, "-c", script], dict(os.environ), grace_s=1.0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not descendants(child.process.pid):
        time.sleep(0.1)
    tree = [(child.process.pid, _start_time(child.process.pid)), *descendants(child.process.pid)]
    assert len(tree) == 2
    supervisor.stop_all()
    assert child.process.poll() is not None
    assert not [pid for pid, started in tree if started and _alive(pid, started)]


FAKE_UP = """
import os, sys, time
from pathlib import Path
from mta.up import Supervisor
stubborn = (
    "import signal, subprocess, sys, time\\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\\n"
    "time.sleep(600)\\n"
)
supervisor = Supervisor(Path(sys.argv[1]))
supervisor.start_watchdog(dict(os.environ))
supervisor.spawn("calm", [sys.executable, "-c", "import time; time.sleep(600)"], dict(os.environ), grace_s=1)
supervisor.spawn("stubborn", [sys.executable, "-c", stubborn], dict(os.environ), grace_s=1)
print("ready", flush=True)
time.sleep(600)
"""


def test_killed_supervisor_leaves_no_role_behind(tmp_path: Path) -> None:
    """Injected: `mta up`'s supervisor killed with SIGKILL (no clean-up code runs) while a calm
    role, a role that ignores SIGTERM and that role's detached grandchild run. Asserted: the
    watchdog stops all of them."""
    process = subprocess.Popen(
        [sys.executable, "-c", FAKE_UP, str(tmp_path / "logs")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        tree = descendants(process.pid)
        while time.monotonic() < deadline and len(tree) < 4:  # watchdog, calm, stubborn, grandchild
            time.sleep(0.1)
            tree = descendants(process.pid)
        assert len(tree) >= 4, tree
    finally:
        process.kill()
        process.wait(10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and [p for p, s in tree if _alive(p, s)]:
        time.sleep(0.2)
    assert not [p for p, s in tree if _alive(p, s)], (tmp_path / "logs" / "watchdog.log").read_text()


def _start_time(pid: int) -> float:
    found = procs.identify(pid)
    assert found is not None
    return found[1]


def test_one_farm_per_data_folder(tmp_path: Path) -> None:
    """A second `mta up` on the same data folder is refused with a clear message."""
    with (
        farm_lock(tmp_path),
        pytest.raises(FarmError, match="another `mta up` is running"),
        farm_lock(tmp_path),
    ):
        pass


@pytest.mark.parametrize("scenario", ["demo", "quiet-day", "morning-release", "contested-slot"])
def test_demo_subscriptions_watch_what_the_site_offers(scenario: str) -> None:
    """The seeded subscriptions name services the replica's site offers at those offices in one
    slot unit (a hidden service would only produce layout errors)."""
    from replica.catalog import Catalog
    from replica.scenarios import resolve_scenario

    site = Catalog.load()
    wishes = demo_wishes(resolve_scenario(scenario))
    assert wishes
    for service_id, offices in wishes:
        assert offices
        for office in offices:
            assert site.offers(office, service_id)
            assert site.relation_slots(office, service_id) == 1


def test_unknown_scenario_stops_before_anything_starts(tmp_path: Path, farm_env: dict[str, str]) -> None:
    """Bad input: `mta up --replica nosuch` names the shipped scenarios, exits 1, starts nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "mta", "up", "--replica", "nosuch"],
        cwd=tmp_path,
        env=farm_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "--replica: no scenario 'nosuch'; shipped: " in done.stdout and "demo" in done.stdout
    assert not (tmp_path / "data" / "mta.db").exists()
