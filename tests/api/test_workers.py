"""``mta api`` with several server processes on one port: each answers, a dead one is replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from api.serve import MAX_AUTO_WORKERS, worker_count
from shared.db.database import Database
from shared.settings import Settings
from tests.conftest import free_port, wait_for_port
from tests.support.farm import wait_until


def test_worker_count_follows_the_setting_and_the_cores(api_settings: Settings) -> None:
    """Asserted: 0 means one per core, capped; a set number is taken as it is."""
    auto = api_settings.model_copy(update={"api_workers": 0})
    assert worker_count(auto, cpus=2) == 2
    assert worker_count(auto, cpus=64) == MAX_AUTO_WORKERS
    assert worker_count(auto, cpus=1) == 1
    assert worker_count(api_settings.model_copy(update={"api_workers": 3}), cpus=1) == 3


def _two_process_env(api_settings: Settings, port: int) -> dict[str, str]:
    """The environment of an `mta api` with two server processes on ``port``."""
    return {
        **os.environ,
        "MTA_DATA_DIR": str(api_settings.data_dir),
        "MTA_REDIS_URL": api_settings.redis_url,
        "MTA_API_PORT": str(port),
        "MTA_API_WORKERS": "2",
        "MTA_ENV": "test",
    }


@pytest.fixture
def api_with_two_workers(
    api_settings: Settings, db: Database
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = _two_process_env(api_settings, port)
    proc = subprocess.Popen([sys.executable, "-m", "mta", "api"], env=env, cwd=Path.cwd())
    try:
        wait_for_port(port, timeout_s=60)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def _children(pid: int) -> set[int]:
    """The live server processes (not multiprocessing's resource tracker, not a dead one unreaped)."""
    found: set[int] = set()
    for child in psutil.Process(pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:  # gone meanwhile
            continue
    return found


def _get_healthz(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    data = b""
    while not data.endswith(b'{"status":"ok"}'):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def _server_pid(client_port: int, pids: set[int]) -> int | None:
    """Which server process holds the other end of the client's connection from ``client_port``."""
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == client_port:
                return pid
    return None


def test_mta_api_serves_from_several_processes(
    api_with_two_workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    """Tried: `mta api` with MTA_API_WORKERS=2; keep-alive connections opened one after another, each
    asked /healthz; then one server process killed (SIGKILL); then SIGTERM to `mta api`. Asserted:
    two server processes under `mta api`, and answers come from both (each connection's server end
    is held by one of them); the killed one is replaced by a new process that answers too; SIGTERM
    stops all of them. Seen failing with the supervisor not restarting dead processes, and with
    ``worker_count`` ignoring the setting (one process, no children)."""
    proc, port = api_with_two_workers
    workers = wait_until(lambda: c if len(c := _children(proc.pid)) == 2 else set(), 60, "two workers")

    def answering() -> set[int]:
        seen: set[int] = set()
        with ExitStack() as stack:
            for _ in range(100):
                sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
                assert b" 200 OK" in _get_healthz(sock).split(b"\r\n", 1)[0]
                owner = _server_pid(sock.getsockname()[1], workers)
                assert owner is not None, "no server process holds the connection"
                seen.add(owner)
                if seen == workers:
                    break
        return seen

    # a process answers once its app has started: until then the other one takes every connection
    wait_until(lambda: answering() == workers, 60, "answers from both processes")

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    workers = wait_until(
        lambda: c if len(c := _children(proc.pid)) == 2 and victim not in c else set(),
        60,
        "a replacement worker",
    )
    wait_until(lambda: answering() == workers, 60, "answers from the replacement too")

    proc.terminate()
    assert proc.wait(30) == 0
    assert not any(psutil.pid_exists(pid) for pid in workers)


def _get(sock: socket.socket, path: str) -> tuple[dict[str, str], bytes]:
    """One keep-alive GET on ``sock``: the answer's headers (lower-case names) and body."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in head.decode("latin-1").split("\r\n")[1:])
    )
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return headers, body


def test_server_processes_send_one_shared_answer_that_follows_the_data(
    api_settings: Settings, db: Database
) -> None:
    """Tried: `mta api` with two server processes (refresh 2 s) over a seeded database; a
    keep-alive connection to each; /api/v1/status (it carries the time it was built, so two builds
    never give the same bytes) read through both within one interval; then a slot written straight
    into the database, as a worker does. Asserted: both processes send the same status answer (one
    build, one ETag); after the write both show the new slot, again with one shared status answer
    under a new ETag. Seen failing with the processes not given the shared folder (each built its
    own: the ETags differed)."""
    import time

    from shared.db.models import Slot
    from tests.api.conftest import OFFICE_ID, SERVICE_ID, SITE, seed

    seeded = seed(db)
    port = free_port()
    env = {**_two_process_env(api_settings, port), "MTA_API_REFRESH_S": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "mta", "api"], env=env, cwd=Path.cwd())
    try:
        wait_for_port(port, timeout_s=60)
        workers = wait_until(lambda: c if len(c := _children(proc.pid)) == 2 else set(), 60, "two workers")
        with ExitStack() as stack:
            by_process: dict[int, socket.socket] = {}

            def one_per_process() -> bool:
                sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
                _get(sock, "/healthz")
                owner = _server_pid(sock.getsockname()[1], workers)
                if owner is not None:
                    by_process.setdefault(owner, sock)
                return len(by_process) == 2

            wait_until(one_per_process, 60, "a connection to each server process")
            socks = list(by_process.values())

            def statuses() -> list[tuple[str, bytes]]:
                return [(h["etag"], b) for h, b in (_get(s, "/api/v1/status") for s in socks)]

            def slot_totals() -> set[int]:
                import json

                return {json.loads(_get(s, "/api/v1/slots")[1])["total"] for s in socks}

            (total,) = slot_totals()
            started = time.monotonic()
            first = statuses()
            assert time.monotonic() - started < 2, "the machine stalled: the test cannot tell"
            assert first[0] == first[1]

            with db.transaction() as session:
                session.add(
                    Slot(
                        site=SITE,
                        office_id=OFFICE_ID,
                        service_id=SERVICE_ID,
                        start_at=seeded.now + timedelta(days=9),
                        first_seen_at=seeded.now,
                        last_seen_at=seeded.now,
                    )
                )
            wait_until(lambda: slot_totals() == {total + 1}, 60, "the new slot in both processes")

            def shared_new_status() -> bool:
                now = statuses()
                return now[0] == now[1] and now[0][0] != first[0][0]

            wait_until(shared_new_status, 60, "one new status answer from both processes")
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_second_mta_api_on_the_same_port_is_refused(
    api_with_two_workers: tuple[subprocess.Popen[bytes], int], api_settings: Settings
) -> None:
    """Tried: `mta api` with two processes serving (each on its own SO_REUSEPORT socket of the
    port), then a second `mta api` with two processes on the same port. Asserted: the second exits
    with an error instead of joining the port (the kernel would split connections between the
    two), and the first still answers. Seen failing with the port not bound once without
    SO_REUSEPORT first (the second ran)."""
    proc, port = api_with_two_workers
    workers = wait_until(lambda: c if len(c := _children(proc.pid)) == 2 else set(), 60, "two workers")
    env = _two_process_env(api_settings, port)
    second = subprocess.Popen([sys.executable, "-m", "mta", "api"], env=env, cwd=Path.cwd())
    try:
        assert second.wait(60) != 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        assert b" 200 OK" in _get_healthz(sock).split(b"\r\n", 1)[0]
        assert _server_pid(sock.getsockname()[1], workers) is not None
