"""``mta api``: the status service in one or several server processes sharing one port.

One Python process answers on one core; a host's other cores serve only through more processes.
With ``MTA_API_WORKERS`` above one (0: one per core, at most ``MAX_AUTO_WORKERS``) this process binds
the port, starts that many server processes (spawned: each builds its app from the same environment
this one read its settings from), starts a new one for any that dies, and stops them all on SIGTERM
or SIGINT. Each server process keeps its own dashboard feed and prepared answers, and they share
each answer's build through a private folder this process creates for them and removes at the end
(``api.answer_folder``): one process builds an answer per refresh, the others take its bytes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn._subprocess import get_subprocess
from uvicorn.config import STARTUP_FAILURE

from api.app import ApiServer, create_app
from api.wire import OneWriteHttpProtocol
from shared.logging import configure_logging, get_logger
from shared.settings import Settings, get_settings

log = get_logger("mta.api.serve")

MAX_AUTO_WORKERS = 8
GIL_SWITCH_INTERVAL_S = 0.0002
"""How long a server process's threads hold the GIL before another may take it (CPython: 5 ms).
Answers are built in worker threads while the event loop sends ready ones; the loop gives up the
GIL on every socket call, and with the default it then waited up to 5 ms to get it back whenever
a build was running: under 1,000 clients that stalled the loop for much of each refresh (py-spy;
mix p95 at 1,000 clients about halved with 0.2 ms)."""
GRACEFUL_S = 5
"""How long a stopping server process lets open requests finish."""


def worker_count(settings: Settings, cpus: int | None = None) -> int:
    """Server processes to run: ``MTA_API_WORKERS``, or one per core (capped) when it is 0."""
    if settings.api_workers:
        return settings.api_workers
    return max(1, min(cpus if cpus is not None else (os.cpu_count() or 1), MAX_AUTO_WORKERS))


def app_from_environment(answers_dir: Path | None = None) -> FastAPI:
    """The app of one spawned server process (uvicorn's ``factory``): settings read from its
    environment; ``answers_dir`` the folder it shares prepared answers through."""
    settings = get_settings()
    configure_logging(settings, role="api")
    return create_app(settings, refresh_s=settings.api_refresh_s, answers_dir=answers_dir)


def serve(server: ApiServer, sockets: list[socket.socket] | None = None) -> None:
    """Run ``server`` in this process, which serves and does nothing else (hence the GIL setting)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    server.run(sockets=sockets)


def _config(settings: Settings, app: FastAPI | Callable[[], FastAPI], workers: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        factory=not isinstance(app, FastAPI),
        host=settings.api_host,
        port=settings.api_port,
        workers=workers,
        # asyncio's loop, not uvloop: under 1,000 connections uvloop left hundreds of them waiting
        # in the accept queue for seconds (p99 3 s, timeouts) where asyncio's loop accepted at once
        loop="asyncio",
        http=OneWriteHttpProtocol,  # head and body of an answer in one socket write (api.wire)
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_S,
    )


def listeners(config: uvicorn.Config, count: int) -> list[socket.socket]:
    """``count`` sockets bound to the one port, one per server process. With ``SO_REUSEPORT`` the
    kernel spreads new connections evenly over the listening ones; on one shared socket whichever
    process woke first took a whole burst (650 against 350 of 1,000 connections here), and its
    clients waited longer. The port is first bound once without it, so a port another program (or
    another ``mta api``) holds is refused as before. A socket listens once its process serves: until
    then, and while a dead process is replaced, its share waits in its queue."""
    probe = config.bind_socket()
    if not hasattr(socket, "SO_REUSEPORT"):
        return [probe] * count
    family = probe.family
    probe.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((config.host, config.port))
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Supervisor:
    """Keeps ``workers`` server processes alive, each on its socket of the port, until told to stop."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], workers: int) -> None:
        self.config = config
        self.sockets = sockets
        self.workers = workers
        self.stop = threading.Event()
        self.processes: list[SpawnProcess] = []

    def _spawn(self, index: int) -> SpawnProcess:
        process = get_subprocess(
            self.config, target=partial(serve, ApiServer(self.config)), sockets=[self.sockets[index]]
        )
        process.start()
        return process

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop.set()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0, or ``STARTUP_FAILURE`` when a process could not start."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.processes = [self._spawn(index) for index in range(self.workers)]
        log.info("api_workers_started", workers=self.workers, pids=[p.pid for p in self.processes])
        code = 0
        while not self.stop.wait(0.5):
            for index, process in enumerate(self.processes):
                if process.is_alive():
                    continue
                process.join()
                if process.exitcode == STARTUP_FAILURE:  # the app cannot start: a restart would not help
                    log.error("api_worker_failed_to_start", pid=process.pid)
                    code = STARTUP_FAILURE
                    self.stop.set()
                    break
                log.warning("api_worker_died", pid=process.pid, exitcode=process.exitcode)
                self.processes[index] = self._spawn(index)
        self._stop_all()
        return code

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(GRACEFUL_S + 10)
            if process.is_alive():
                process.kill()
                process.join()


def run(settings: Settings) -> None:
    """Serve on ``MTA_API_HOST``:``MTA_API_PORT`` with ``worker_count(settings)`` processes."""
    workers = worker_count(settings)
    if workers == 1:
        serve(ApiServer(_config(settings, create_app(settings, refresh_s=settings.api_refresh_s), 1)))
        return
    answers_dir = Path(tempfile.mkdtemp(prefix="mta-api-answers-"))  # 0700: this user's processes only
    try:  # removed however this ends, a busy port (SystemExit) included
        config = _config(settings, partial(app_from_environment, answers_dir), workers)
        sockets = listeners(config, workers)
        try:
            code = Supervisor(config, sockets, workers).run()
        finally:
            for sock in set(sockets):
                sock.close()
    finally:
        shutil.rmtree(answers_dir, ignore_errors=True)
    if code:
        raise SystemExit(code)


__all__ = [
    "GIL_SWITCH_INTERVAL_S",
    "MAX_AUTO_WORKERS",
    "Supervisor",
    "app_from_environment",
    "listeners",
    "run",
    "serve",
    "worker_count",
]
