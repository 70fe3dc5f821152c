"""Fixtures shared by every test: free ports, our own Redis, Chromium for pytest-playwright.

Tests never touch a shared Redis or database: each fixture starts its own server on a free port
(or its own PostgreSQL database) and stops it afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shared.chromium import LAUNCH_ARGS, find_chromium

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.support.databases import MigratedTemplates
    from tests.support.farm import Farm
    from tests.support.replica import Replica

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def start(self) -> None:
        """(Re)start on the same port, e.g. after a test killed it."""
        self.process = _spawn_redis(self.port, self.workdir)


def _spawn_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run scripts/setup.sh")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return proc


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port for the whole session."""
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server missing in CI: scripts/setup.sh should have installed it")
        pytest.skip("redis-server is not installed (scripts/setup.sh installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="mta-redis-"))
    port = free_port()
    server = RedisServer(port=port, process=_spawn_redis(port, workdir), workdir=workdir)
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The private Redis, flushed before each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def chromium_executable() -> str | None:
    try:
        return find_chromium(os.environ.get("MTA_CHROMIUM_PATH", ""))
    except FileNotFoundError as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def browser_type_launch_args(
    browser_type_launch_args: dict[str, Any], chromium_executable: str | None
) -> dict[str, Any]:
    """pytest-playwright: use the system Chromium when Playwright's own is missing."""
    args = {k: v for k, v in browser_type_launch_args.items() if k != "channel"}
    if chromium_executable:
        args["executable_path"] = chromium_executable
    args["args"] = [*args.get("args", []), *LAUNCH_ARGS]
    return args


@pytest.fixture(scope="module")
def browser_context_args(base_url: str | None) -> dict[str, Any]:
    """The site formats times in Europe/Berlin; so does every page under test.

    Replaces pytest-playwright's own (session-scoped, tied to its driver: see below)."""
    args: dict[str, Any] = {"timezone_id": "Europe/Berlin", "locale": "de-DE"}
    if base_url:
        args["base_url"] = base_url
    return args


@pytest.fixture(scope="session")
def replica_server() -> Iterator[str]:
    """The real replica app (control API on, cheap captcha) for the whole session; its base URL."""
    from tests.support.replica import serve_replica

    with serve_replica() as base_url:
        yield base_url


@pytest.fixture
def replica(replica_server: str) -> Iterator[Replica]:
    """The session's replica, reset to a clean state for this test (real time, no slots, no faults)."""
    import httpx

    from tests.support.replica import Replica

    with httpx.Client(base_url=replica_server, timeout=10) as client:
        handle = Replica(base_url=replica_server, client=client)
        handle.reset()
        yield handle


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    """Migrated template databases, made once per session; tests get copies
    (``tests.support.databases.open_migrated``)."""
    from tests.support.databases import MigratedTemplates

    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.close()


@pytest.fixture
def make_farm(tmp_path: Path, redis_url: str, replica: Replica) -> Iterator[Callable[..., Farm]]:
    """Build the worker farm as real processes (SQLite in ``tmp_path``, the private Redis, the
    replica) with extra ``MTA_*`` settings; every process it started is stopped afterwards, killed
    if need be."""
    from contextlib import ExitStack

    from tests.support.farm import running_farm

    with ExitStack() as stack:

        def make(**env: str) -> Farm:
            return stack.enter_context(running_farm(tmp_path / "farm", redis_url, replica.page_url, **env))

        yield make


# --- pytest-playwright, scoped per module ------------------------------------------------------
# The sync Playwright API marks its event loop as the thread's running loop between calls, so while
# pytest-playwright's session-wide driver lives, no pytest-asyncio test can start a loop of its own
# ("Runner.run() cannot be called from a running event loop"). These overrides give each module
# that uses ``page`` its own driver and browser, and clear the thread's loop when it ends.


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    import asyncio

    from playwright.sync_api import sync_playwright

    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()
        asyncio.events._set_running_loop(None)


@pytest.fixture(scope="module")
def browser_type(playwright: Any, browser_name: str) -> Any:
    return getattr(playwright, browser_name)


@pytest.fixture(scope="module")
def launch_browser(browser_type_launch_args: dict[str, Any], browser_type: Any) -> Any:
    def launch(**kwargs: Any) -> Any:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="module")
def browser(launch_browser: Any) -> Iterator[Any]:
    launched = launch_browser()
    yield launched
    launched.close()


# --- hypothesis ---------------------------------------------------------------------------------
# Fixed examples in the test command, so that a run is repeatable; MTA_HYPOTHESIS_RANDOM=1 explores.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
_hypothesis_settings.register_profile("explore", deadline=None)
_EXPLORE = os.environ.get("MTA_HYPOTHESIS_RANDOM") == "1"
_hypothesis_settings.load_profile("explore" if _EXPLORE else "repeatable")
