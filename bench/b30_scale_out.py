"""Scale-out: checks per minute with 1, 2 and 4 worker processes and an unlimited budget.

Real processes: ``mta worker --processes N --threads 1`` (tests/support/farm.py) against a private
redis-server, a SQLite database in a temp folder and an ``mta replica`` subprocess with its rate
limit lifted. Six distinct targets (two Bürgerbüro services at three offices, subscribed in the
database) are fed round-robin as ``check_target`` messages straight onto the checks queue, kept a
few deep so no worker ever waits for work; the scheduler is left out, since its
one-check-per-target pacing is not what is measured. Each process keeps every target's session
warm, so the number of targets does not change what a check costs, only how long the warm-up
takes (a walk per target per process). After the warm-up the check rows written in a fixed window
are counted.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import dramatiq
import redis

from bench._harness import Table
from bench.b20_check_cost import (
    ORLEANSPLATZ,
    PERSONALAUSWEIS,
    WOHNSITZANMELDUNG,
    release_slots,
    replica_process,
)
from replica.config import PAGE_PATH
from shared.db.models import Check
from shared.recording import sync_targets
from tests.conftest import RedisServer, _spawn_redis, free_port
from tests.support.farm import Farm, running_farm
from worker.broker import CHECKS_QUEUE, NAMESPACE, make_broker

OFFICES = (ORLEANSPLATZ, 102523, 102524)
SERVICES = (WOHNSITZANMELDUNG, PERSONALAUSWEIS)
TARGETS = list(itertools.product(SERVICES, OFFICES))
"""(service, office) of each target."""
CAPTCHA_COST = 50
"""Walks only warm the sessions up here; a cheap proof of work keeps the warm-up short."""

WORKER_ENV = {
    "MTA_SITE_BUDGET_PER_MINUTE": "10000",
    "MTA_SITE_REQUESTS_BEFORE_PAUSE": "0",
    "MTA_CHECK_MIN_INTERVAL_S": "0.1",
    "MTA_BROWSER_WARM_SESSIONS": str(len(TARGETS)),
    "MTA_TRACE_ON_FAILURE": "true",
}
"""An unlimited budget, every target warm in every process; failure tracing as in production."""


@dataclass
class Throughput:
    processes: int
    checks: int
    window_s: float
    walks: int
    failures: int
    warmup_s: float

    @property
    def per_minute(self) -> float:
        return self.checks * 60 / self.window_s


class Feeder:
    """Keeps the checks queue ``depth`` messages deep, cycling over the targets."""

    def __init__(self, farm: Farm, target_ids: list[int], depth: int) -> None:
        self.broker = make_broker(farm.settings, with_browser=False)
        self.client = redis.Redis.from_url(farm.redis_url)
        self.targets = itertools.cycle(target_ids)
        self.depth = depth
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="feeder", daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()
        self.broker.close()

    def _loop(self) -> None:
        queue_key = f"{NAMESPACE}:{CHECKS_QUEUE}"
        while not self._stop.is_set():
            for _ in range(max(0, self.depth - int(self.client.llen(queue_key)))):
                message: dramatiq.Message[None] = dramatiq.Message(
                    queue_name=CHECKS_QUEUE,
                    actor_name="check_target",
                    args=(next(self.targets),),
                    kwargs={},
                    options={},
                )
                self.broker.enqueue(message)
                self.sent += 1
            self._stop.wait(0.02)


def _subscribe(farm: Farm, targets: int) -> list[int]:
    plans = [(1000 + i, service, office) for i, (service, office) in enumerate(TARGETS[:targets])]
    farm.subscribe_many(plans)
    with farm.db.transaction() as session:
        return [t.id for t in sync_targets(session)]


def _check_events(farm: Farm) -> list[dict[str, object]]:
    return [event for process in farm.processes for event in process.events("check_done")]


def _when(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def _measure(
    root: Path,
    redis_url: str,
    site_url: str,
    processes: int,
    *,
    targets: int,
    window_s: float,
    warmup_limit_s: float,
) -> Throughput:
    quiet = io.StringIO()  # running_farm prints every process's log tail on the way out
    with contextlib.redirect_stdout(quiet), running_farm(root, redis_url, site_url, **WORKER_ENV) as farm:
        farm.redis.flushall()
        target_ids = _subscribe(farm, targets)
        farm.start_worker(processes=processes, threads=1)
        started = time.monotonic()
        with Feeder(farm, target_ids, depth=2 * processes + 2):
            # warm-up: every process has walked every target (a walk makes several requests)
            walks_needed = processes * len(target_ids)
            while time.monotonic() - started < warmup_limit_s:
                walks = sum(1 for e in _check_events(farm) if int(str(e.get("requests", 1))) > 1)
                if walks >= walks_needed:
                    break
                time.sleep(0.5)
            time.sleep(2)
            warmup_s = time.monotonic() - started
            window_start, before = time.time(), farm.count(Check)
            time.sleep(window_s)
            window_end, after = time.time(), farm.count(Check)
        in_window = [e for e in _check_events(farm) if window_start <= _when(e) < window_end]
        return Throughput(
            processes=processes,
            checks=after - before,
            window_s=window_end - window_start,
            walks=sum(1 for e in in_window if int(str(e.get("requests", 1))) > 1),
            failures=sum(1 for e in in_window if e.get("outcome") not in {"ok", "no_slots"}),
            warmup_s=warmup_s,
        )


def run(quick: bool) -> list[Table]:
    counts = (2,) if quick else (1, 2, 4)
    targets = 2 if quick else len(TARGETS)
    window_s = 5.0 if quick else 25.0
    warmup_limit_s = 30.0 if quick else 120.0
    load_before = os.getloadavg()[0]
    results: list[Throughput] = []
    with tempfile.TemporaryDirectory(prefix="mta-bench-scale-") as name:
        folder = Path(name)
        redis_dir = folder / "redis"
        redis_dir.mkdir()
        port = free_port()
        server = RedisServer(port=port, process=_spawn_redis(port, redis_dir), workdir=redis_dir)
        try:
            with replica_process(folder, MTA_REPLICA_CAPTCHA_COST=str(CAPTCHA_COST)) as base_url:
                for office in OFFICES:
                    release_slots(base_url, office)
                for processes in counts:
                    root = folder / f"farm-{processes}"
                    results.append(
                        _measure(
                            root,
                            server.url,
                            base_url + PAGE_PATH,
                            processes,
                            targets=targets,
                            window_s=window_s,
                            warmup_limit_s=warmup_limit_s,
                        )
                    )
                    shutil.rmtree(root, ignore_errors=True)
        finally:
            server.stop()

    table = Table(
        f"Scale-out: checks per minute, unlimited budget, {targets} targets, `mta worker --threads 1`",
        ["worker processes", "checks/min", "vs 1 process", "checks in window", "walks in window", "failed"],
    )
    single = next((r.per_minute for r in results if r.processes == 1), None)
    for result in results:
        table.add(
            result.processes,
            result.per_minute,
            f"{result.per_minute / single:.2f}×" if single else "–",
            result.checks,
            result.walks,
            result.failures,
        )
    table.notes += [
        f"Window {results[0].window_s:.0f} s per row after the warm-up (every process has walked every "
        f"target; took {', '.join(f'{r.warmup_s:.0f} s' for r in results)}). Each check is recorded in "
        "SQLite (one transaction) and charged to the Redis budget, as in production.",
        f"The machine has {os.cpu_count()} cores, shared by the workers, their Chromiums, the replica, "
        "Redis and SQLite: with more processes than cores the figure shows CPU saturation, not MTA's "
        f"scaling. Other jobs shared it too (1-minute load average {load_before:.1f} just before the run).",
        f"check_target messages fed straight onto the queue (no scheduler); replica captcha cost "
        f"{CAPTCHA_COST} (only the warm-up walks solve it); failure tracing on (the default).",
    ]
    return [table]
