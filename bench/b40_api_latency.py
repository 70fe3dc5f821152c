"""Status API latency and throughput under 100 and 1,000 concurrent clients.

``mta api`` runs as its own process tree, as deployed: ``MTA_API_WORKERS`` server processes (one per
core by default; ``BENCH_API_WORKERS`` overrides), and once more with one process as the yardstick,
against an SQLite database seeded with a realistic farm state through the real recording code
(12 targets, thousands of checks and slot episodes, hundreds of alerts) and a private redis-server
holding worker and scheduler heartbeats. The load comes from ``wrk`` (``scripts/bench.sh`` installs
it; a Lua script cycles the paths and prints p50/p95/p99 and the error counts; it cannot tell
requests still unanswered at the end of a row), or with ``BENCH_API_GENERATOR=python`` from an
asyncio httpx generator in this process (which is measured as much as the server: about five
times slower here). Either shares the machine's cores with the server, so the figures are a floor
on what a dedicated host would serve.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import httpx
import redis
from sqlalchemy import select

from api.serve import worker_count
from bench._harness import Table, percentile
from shared.catalog import get_catalog
from shared.db.database import Database, open_database
from shared.db.models import Notification, NotificationStatus, Subscription, Target, User
from shared.domain import SITE_TIMEZONE, Observation, SlotSeen
from shared.recording import record_observation, sync_targets
from shared.settings import load_settings
from tests.conftest import free_port, wait_for_port
from worker import heartbeat

TARGETS = 12
SLOTS = "/api/v1/slots?limit=50"
HEALTHZ = "/healthz"
MIX = ("/api/v1/status", "/api/v1/targets", SLOTS, "/", HEALTHZ)
REQUEST_TIMEOUT_S = 5.0
DRAIN_MAX_S = 120.0


# --- the farm's state ----------------------------------------------------------------------------
def _pairs(count: int) -> list[tuple[int, int]]:
    """``count`` (service, office) pairs from the catalogue, spread over services."""
    catalog = get_catalog()
    pairs: list[tuple[int, int]] = []
    services = sorted((s for s in catalog.services.values() if s.public and s.office_ids), key=lambda s: s.id)
    for depth in range(4):
        for service in services:
            offices = sorted(o.id for o in catalog.offices_for_service(service.id))
            if depth < len(offices) and (service.id, offices[depth]) not in pairs:
                pairs.append((service.id, offices[depth]))
            if len(pairs) == count:
                return pairs
    return pairs


def seed_farm(db: Database, *, checks_per_target: int, seed: int = 40) -> dict[str, int]:
    """Subscribers on 12 targets and days of checks recorded as a worker records them.

    Each check sees the target's open slots minus a few that went and plus a few new ones (starts
    on a 15-minute grid in the next 30 days); subscribers want Mondays only, so about a fifth of
    the slot episodes raise alerts. Returns the row counts.
    """
    rng = random.Random(seed)
    pairs = _pairs(TARGETS)
    now = datetime.now(UTC).replace(microsecond=0)
    with db.transaction() as session:
        for i, (service_id, office_id) in enumerate(pairs):
            user_id = 900_000 + i
            session.add(User(id=user_id, language="de"))
            session.flush()
            session.add(
                Subscription(
                    user_id=user_id,
                    service_id=service_id,
                    office_ids=[office_id],
                    weekdays=[0],
                    date_from=date.today(),
                    date_to=date.today() + timedelta(days=60),
                )
            )
        session.flush()
        targets = [(t.id, t.service_id, t.office_key) for t in sync_targets(session)]
    step = timedelta(days=3) / checks_per_target
    for target_id, service_id, key in targets:
        office_id = int(key.split(",")[0])
        open_starts: set[datetime] = set()
        with db.transaction() as session:
            for n in range(checks_per_target):
                observed = now - step * (checks_per_target - n)
                for start in rng.sample(sorted(open_starts), k=min(len(open_starts), rng.randint(0, 2))):
                    open_starts.discard(start)
                for _ in range(rng.choice((0, 0, 1, 1, 2))):
                    day = (observed + timedelta(days=rng.randint(1, 30))).astimezone(SITE_TIMEZONE).date()
                    local = datetime.combine(day, dtime(rng.randint(8, 15), rng.choice((0, 15, 30, 45))))
                    open_starts.add(local.replace(tzinfo=SITE_TIMEZONE).astimezone(UTC))
                observation = Observation(
                    site="munich",
                    service_id=service_id,
                    service_count=1,
                    office_ids=(office_id,),
                    observed_at=observed,
                    slots=[SlotSeen(office_id, service_id, s) for s in sorted(open_starts)],
                )
                record_observation(
                    session, target_id, observation, worker_id="bench:1", duration_ms=rng.randint(900, 4000)
                )
    with db.transaction() as session:  # the bot delivered the older alerts
        old = select(Notification).where(Notification.created_at < now - timedelta(hours=1))
        for note in session.scalars(old):
            note.status = NotificationStatus.SENT
            note.sent_at = note.created_at + timedelta(seconds=2)
    return _counts(db)


def _counts(db: Database) -> dict[str, int]:
    from sqlalchemy import func

    from shared.db.models import Check, Slot

    with db.transaction() as session:
        return {
            name: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for name, model in (
                ("targets", Target),
                ("checks", Check),
                ("slots", Slot),
                ("notifications", Notification),
            )
        }


# --- the processes -------------------------------------------------------------------------------
@dataclass
class Farm:
    root: Path
    redis_url: str
    counts: dict[str, int]


@dataclass
class Api:
    url: str
    workers: int
    process: subprocess.Popen[bytes]
    stderr_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def farm(checks_per_target: int) -> Iterator[Farm]:
    """A private redis-server and a seeded database with the farm's heartbeats."""
    with tempfile.TemporaryDirectory(prefix="mta-bench-api-") as folder:
        root = Path(folder)
        redis_port = free_port()
        redis_bin = shutil.which("redis-server")
        if redis_bin is None:
            raise RuntimeError("redis-server is not installed (scripts/setup.sh installs it)")
        server = subprocess.Popen(
            [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(redis_port)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            settings = load_settings(data_dir=root / "data", redis_url=redis_url, env="test")
            db = open_database(settings, migrate=True)
            try:
                counts = seed_farm(db, checks_per_target=checks_per_target)
            finally:
                db.close()
            client = redis.Redis.from_url(redis_url)
            heartbeat.beat(
                client, "worker", "bench:101", {"browser": "ready", "contexts_open": 2}, ttl_s=3600
            )
            heartbeat.beat(client, "scheduler", "bench:202", {"leader": True}, ttl_s=3600)
            client.set(heartbeat.LEADER_KEY, "bench:202", px=3_600_000)
            client.close()
            yield Farm(root, redis_url, counts)
        finally:
            server.terminate()
            server.wait(10)


@contextmanager
def api_server(running: Farm, workers: int) -> Iterator[Api]:
    """``mta api`` with ``workers`` server processes on a free port, stopped (SIGTERM) at the end."""
    port = free_port()
    env = {
        **os.environ,
        "MTA_DATA_DIR": str(running.root / "data"),
        "MTA_REDIS_URL": running.redis_url,
        "MTA_API_HOST": "127.0.0.1",
        "MTA_API_PORT": str(port),
        "MTA_API_WORKERS": str(workers),
        "MTA_LOG_LEVEL": "WARNING",
        "MTA_ENV": "test",
    }
    stderr_path = running.root / f"api-{port}.stderr"
    mta = Path(sys.executable).with_name("mta")
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen([str(mta), "api"], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for_port(port, timeout_s=60)
        url = f"http://127.0.0.1:{port}"
        for _ in range(4 * workers):  # every process past its start and its first dashboard build
            httpx.get(url + "/", timeout=60).raise_for_status()
        yield Api(url, workers, process, stderr_path)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# --- the load ------------------------------------------------------------------------------------
@dataclass
class Load:
    requests: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    error_kinds: dict[str, int] = field(default_factory=dict)
    generator_cpu_s: float = 0.0
    """CPU seconds the load generator itself used (user + system): its share of the 2 cores."""

    @property
    def rate(self) -> float:
        """Answered (not failed) requests per second."""
        return max(0, self.requests - self.errors) / self.duration_s if self.duration_s else 0.0


_WRK_SCRIPT = """
local paths = {%s}
%s
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"p50\\":%%d,\\"p95\\":%%d,\\"p99\\":%%d," ..
    "\\"connect\\":%%d,\\"read\\":%%d,\\"write\\":%%d,\\"timeout\\":%%d,\\"status\\":%%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), e.connect, e.read, e.write, e.timeout, e.status))
end
"""


def load_wrk(base_url: str, paths: tuple[str, ...], clients: int, duration_s: float, gzip: bool) -> Load:
    wrk = shutil.which("wrk")
    assert wrk is not None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        accept = 'wrk.headers["Accept-Encoding"] = "gzip"' if gzip else ""
        script.write(_WRK_SCRIPT % (", ".join(json.dumps(p) for p in paths), accept))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(
            [
                wrk,
                f"-t{min(2, clients)}",
                f"-c{clients}",
                f"-d{max(1, round(duration_s))}s",
                f"--timeout={REQUEST_TIMEOUT_S:.0f}s",
                "-s",
                script.name,
                base_url,
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + 120,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(x for x in out.splitlines() if x.startswith("BENCHJSON "))
    data = json.loads(line.split(" ", 1)[1])
    kinds = {k: int(data[k]) for k in ("connect", "read", "write", "timeout", "status") if data[k]}
    return Load(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50"] / 1000,
        p95_ms=data["p95"] / 1000,
        p99_ms=data["p99"] / 1000,
        errors=sum(kinds.values()),
        error_kinds=kinds,
        generator_cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    )


def load_python(base_url: str, paths: tuple[str, ...], clients: int, duration_s: float, gzip: bool) -> Load:
    """``clients`` concurrent keep-alive clients, each sending its next request when answered."""

    async def main() -> Load:
        latencies: list[float] = []
        kinds: dict[str, int] = {}
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
        cpu_before_s = time.process_time()
        async with httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_S, headers=headers
        ) as client:
            started = time.monotonic()
            stop_at = started + duration_s

            async def one_client(offset: int) -> None:
                i = offset
                while time.monotonic() < stop_at:
                    path = paths[i % len(paths)]
                    i += 1
                    sent = time.monotonic()
                    try:
                        response = await client.get(path)
                        await response.aread()
                    except httpx.HTTPError as exc:
                        kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
                        continue
                    if response.status_code >= 400:
                        kinds[f"HTTP {response.status_code}"] = (
                            kinds.get(f"HTTP {response.status_code}", 0) + 1
                        )
                    else:
                        latencies.append((time.monotonic() - sent) * 1000)

            await asyncio.gather(*(one_client(n) for n in range(clients)))
            elapsed = time.monotonic() - started
        return Load(
            requests=len(latencies) + sum(kinds.values()),
            duration_s=elapsed,
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            p99_ms=percentile(latencies, 99),
            errors=sum(kinds.values()),
            error_kinds=kinds,
            generator_cpu_s=time.process_time() - cpu_before_s,
        )

    return asyncio.run(main())


@dataclass(frozen=True)
class Row:
    processes: int
    clients: int
    name: str
    paths: tuple[str, ...]
    gzip: bool = True


def _plan(quick: bool, workers: int) -> list[Row]:
    """The rows: with ``workers`` processes the mix at both levels and each endpoint alone (the
    dashboard also without gzip); with one process the yardstick rows."""
    if quick:
        return [Row(workers, 100, "mix of 5", MIX), Row(workers, 1000, "mix of 5", MIX)]
    plan = [Row(workers, 100, "mix of 5", MIX)] + [Row(workers, 100, path, (path,)) for path in MIX]
    plan += [Row(workers, 100, "/ (no gzip)", ("/",), gzip=False)]
    plan += [Row(workers, 1000, "mix of 5", MIX), Row(workers, 1000, SLOTS, (SLOTS,))]
    plan += [Row(workers, 1000, HEALTHZ, (HEALTHZ,))]
    if workers > 1:
        plan += [
            Row(1, 100, HEALTHZ, (HEALTHZ,)),
            Row(1, 100, "mix of 5", MIX),
            Row(1, 1000, "mix of 5", MIX),
        ]
    return plan


def drain(base_url: str) -> float:
    """Wait until a database read is answered promptly again: requests a finished row left queued
    in the server's thread pool (their clients gone) still hold it; returns the seconds waited."""
    started = time.monotonic()
    prompt = 0
    while prompt < 2 and time.monotonic() - started < DRAIN_MAX_S:
        sent = time.monotonic()
        try:
            httpx.get(base_url + "/api/v1/slots?limit=1", timeout=5).raise_for_status()
            prompt = prompt + 1 if time.monotonic() - sent < 0.5 else 0
        except httpx.HTTPError:
            prompt = 0
        time.sleep(0.2)
    return time.monotonic() - started


def _workers() -> int:
    """Server processes as ``mta api`` starts them here (``BENCH_API_WORKERS`` overrides)."""
    chosen = int(os.environ.get("BENCH_API_WORKERS", "").strip() or 0)
    return worker_count(load_settings(env="test", api_workers=chosen))


def run(quick: bool) -> list[Table]:
    use_python = os.environ.get("BENCH_API_GENERATOR", "wrk") == "python"
    if not use_python and shutil.which("wrk") is None:
        raise RuntimeError(
            "wrk is not installed: run scripts/bench.sh (installs it) or apt-get install wrk; "
            "BENCH_API_GENERATOR=python uses the (slower) Python generator instead"
        )
    generator = "python httpx" if use_python else "wrk 4 (2 threads)"
    load = load_python if use_python else load_wrk
    duration_s = 3.0 if quick else 8.0
    workers = _workers()
    table = Table(
        "Status API under concurrent clients (`mta api`, SQLite, load from wrk)"
        if not use_python
        else "Status API under concurrent clients (`mta api`, SQLite, load from a Python generator)",
        [
            "processes",
            "clients",
            "endpoints",
            "requests",
            "answered/s",
            "p50 (ms)",
            "p95 (ms)",
            "p99 (ms)",
            "errors",
            "generator CPU (cores)",
        ],
    )
    load_before = os.getloadavg()[0]
    drains_s: list[float] = []
    plan = _plan(quick, workers)
    with farm(checks_per_target=40 if quick else 250) as running:
        for processes in dict.fromkeys(row.processes for row in plan):
            with api_server(running, processes) as api:
                for row in (r for r in plan if r.processes == processes):
                    drains_s.append(drain(api.url))
                    result = load(api.url, row.paths, row.clients, duration_s, row.gzip)
                    errors = str(result.errors)
                    if result.error_kinds:
                        errors += (
                            " (" + ", ".join(f"{k} {v}" for k, v in sorted(result.error_kinds.items())) + ")"
                        )
                    table.add(
                        processes,
                        row.clients,
                        row.name,
                        result.requests,
                        result.rate,
                        result.p50_ms,
                        result.p95_ms,
                        result.p99_ms,
                        errors,
                        result.generator_cpu_s / result.duration_s if result.duration_s else 0.0,
                    )
                    if not api.alive():
                        raise RuntimeError("mta api died: " + api.stderr_path.read_text()[-2000:])
        counts = running.counts
    table.notes += [
        f"Database: {counts['targets']} targets, {counts['checks']:,} checks, {counts['slots']:,} slot "
        f"episodes, {counts['notifications']:,} alerts, written by shared.recording.record_observation; "
        "Redis holds worker and scheduler heartbeats.",
        f"Server: `mta api` with MTA_API_WORKERS={workers} (one process per core, as deployed) and, as "
        "the yardstick, with 1; the dashboard and the JSON answers are prepared once per refresh "
        "(MTA_API_REFRESH_S, 1 s) by one of the processes for all of them (api.answer_folder) and "
        "sent as ready bytes, /healthz and repeated reads before any routing. Requests say "
        "`Accept-Encoding: gzip` as browsers and httpx do (the dashboard page is 20 times smaller "
        "gzipped; one row shows it without) and carry no If-None-Match, so every answer is a full "
        "body (a 304 would be cheaper still).",
        f"Load generator: {generator} ({duration_s:.0f} s per row, keep-alive connections, each client "
        "sends its next request when answered; the mix cycles /api/v1/status, /api/v1/targets, "
        "/api/v1/slots?limit=50, / (dashboard) and /healthz). Errors are timeouts "
        f"(> {REQUEST_TIMEOUT_S:.0f} s), socket errors and HTTP >= 400; latencies are of the "
        "answered requests; a row's connections all open at its start, so the first request on each "
        "also waits for a server process to accept it. Before each row the bench waits until "
        "/api/v1/slots?limit=1 answers promptly (the server keeps working off requests whose "
        "clients left): at most "
        f"{max(drains_s):.0f} s (cap {DRAIN_MAX_S:.0f} s).",
        f"The load generator and the server share the machine's {os.cpu_count()} cores (load average "
        f"{load_before:.1f} before the run: other work shares them too), so these are lower bounds for "
        "a dedicated host. Generator CPU: the CPU seconds the load generator used per second of the "
        "row (1.0 = one core): what it took from the server.",
    ]
    return [table]
