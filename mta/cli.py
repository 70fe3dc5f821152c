"""`mta`: the single entry point. Each sub-command starts one role or runs one chore.

Every command reads the same settings (``shared.settings``); an invalid setting stops it with a
message naming the setting, before anything starts.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from shared import use_metrics_dir
from shared.logging import configure_logging, get_logger
from shared.settings import Settings, SettingsError, get_settings

app = typer.Typer(
    name="mta",
    help="Munich Termin Automator: watch Munich's appointment site, alert on Telegram, book.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database chores: migrations, backup, restore.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _settings(role: str) -> Settings:
    """Load settings and configure logging, or stop with a readable message."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        _fail(str(exc))
    configure_logging(settings, role=role)
    return settings


@app.command()
def settings(
    show: Annotated[
        bool, typer.Option("--show", help="Print the effective settings, secrets masked.")
    ] = True,
) -> None:
    """Validate the settings and print them with secrets masked."""
    cfg = _settings("cli")
    if show:
        for name, value in cfg.model_dump().items():
            typer.echo(f"MTA_{name.upper()}={value}")
        typer.echo(f"# effective database: {cfg.effective_database_url}")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Alembic revision")] = "head") -> None:
    """Create or migrate the database to the latest schema."""
    cfg = _settings("db")
    from shared.db.migrate import upgrade

    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(cfg.effective_database_url, revision)
    get_logger("mta.db").info("database upgraded", revision=revision)


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision."""
    cfg = _settings("db")
    from shared.db.migrate import current_revision

    typer.echo(current_revision(cfg.effective_database_url) or "(empty database)")


@db_app.command("backup")
def db_backup(
    file: Annotated[Path, typer.Argument(help="Where to write the backup")],
    force: Annotated[bool, typer.Option(help="Replace FILE if it exists")] = False,
) -> None:
    """Back up the database (consistent while the farm runs)."""
    cfg = _settings("db")
    from shared.backup import BackupError, backup_database

    try:
        result = backup_database(cfg.effective_database_url, file, overwrite=force)
    except BackupError as exc:
        _fail(f"mta db backup: {exc}", 1)
    typer.echo(f"backed up the {result.backend} database to {result.path} ({result.size_bytes} bytes)")
    key = "MTA_ENCRYPTION_KEY" if cfg.encryption_key else str(cfg.data_dir / "encryption.key")
    typer.echo(f"keep the encryption key ({key}) with it: personal data cannot be read without it")


@db_app.command("restore")
def db_restore(file: Annotated[Path, typer.Argument(help="A backup made by `mta db backup`")]) -> None:
    """Replace the database with a backup (the current one is kept beside it first)."""
    cfg = _settings("db")
    from shared.backup import BackupError, restore_database

    try:
        result = restore_database(cfg.effective_database_url, file)
    except BackupError as exc:
        _fail(f"mta db restore: {exc}", 1)
    typer.echo(f"restored the {result.backend} database from {file}")
    if result.safety_copy:
        typer.echo(f"the database as it was before is kept at {result.safety_copy}")
    typer.echo("run `mta db upgrade` if the backup is from an older MTA version")


@app.command()
def replica(
    port: Annotated[int | None, typer.Option(help="Port (default MTA_REPLICA_PORT)")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default MTA_REPLICA_HOST)")] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario YAML file or the name of a shipped one")
    ] = None,
    control: Annotated[bool | None, typer.Option(help="Enable the /_replica/ control API")] = None,
) -> None:
    """Run the local replica of the city's appointment site."""
    cfg = _settings("replica")
    from replica.app import run

    updates: dict[str, object] = {}
    if port is not None:
        updates["replica_port"] = port
    if host is not None:
        updates["replica_host"] = host
    if control is not None:
        updates["replica_control"] = control
    run(cfg.model_copy(update=updates), scenario)


@app.command()
def worker(
    processes: Annotated[int, typer.Option(min=1, help="Worker processes (one Chromium each)")] = 1,
    threads: Annotated[int, typer.Option(min=1, help="Worker threads per process")] = 2,
    queues: Annotated[str, typer.Option(help="Comma-separated queues to consume")] = "checks,bookings",
) -> None:
    """Run Dramatiq worker processes that drive headless Chromium (SIGTERM stops them cleanly)."""
    cfg = _settings("worker")
    if not cfg.redis_url:
        _fail("MTA_REDIS_URL is empty: the workers need Redis (or use `mta up`, which starts one).")
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - set(WORKER_QUEUES))
    if not names or unknown:
        given = ", ".join(unknown) or "(none given)"
        _fail(f"--queues: unknown queue(s) {given}; use {','.join(WORKER_QUEUES)}")
    _require_schema(cfg)
    os.execvpe(sys.executable, worker_command(processes, threads, queues), worker_environment(cfg, threads))


WORKER_QUEUES = ("checks", "bookings")


def _require_schema(cfg: Settings) -> None:
    """Workers and schedulers never migrate (several start at once): the schema must be there."""
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines say nothing useful here
    from shared.db.migrate import current_revision

    try:
        revision = current_revision(cfg.effective_database_url)
    except Exception as exc:  # unreachable server, bad credentials
        _fail(f"cannot open the database ({type(exc).__name__}): check MTA_DATABASE_URL")
    if revision is None:
        _fail("the database has no schema yet: run `mta db upgrade` first")


WORKER_SHUTDOWN_TIMEOUT_MS = 8_000
"""A running check may finish this long after SIGTERM (inside Docker's 10 s stop grace period)."""


def worker_command(processes: int, threads: int, queues: str) -> list[str]:
    """Dramatiq's own CLI: in each process it calls ``worker.broker:setup_broker`` (the broker is
    built here, by the entry point), then imports the actor modules, which declare against it."""
    names = [q.strip() for q in queues.split(",") if q.strip()]
    return [
        sys.executable, "-m", "dramatiq", "worker.broker:setup_broker", "worker.actors", "worker.bookings",
        "--processes", str(processes), "--threads", str(threads), "--skip-logging",
        "--worker-shutdown-timeout", str(WORKER_SHUTDOWN_TIMEOUT_MS), "--queues", *names,
    ]  # fmt: skip


def worker_environment(cfg: Settings, threads: int = 1) -> dict[str, str]:
    """Worker processes: browser hook on; a process holds no more messages than it has threads (a
    queued check waits in Redis for any free worker, not behind a busy one); a short idle poll
    (detection latency)."""
    cfg.metrics_dir.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "MTA_WORKER_PROCESS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(cfg.metrics_dir.resolve()),
        "dramatiq_prom_db": str(cfg.metrics_dir.resolve()),
        "dramatiq_queue_prefetch": str(max(1, threads)),
        "dramatiq_worker_timeout": "100",
    }


@app.command()
def scheduler() -> None:
    """Run the scheduler (one leader at a time through a Redis lock; others stand by)."""
    cfg = _settings("scheduler")
    if not cfg.redis_url:
        _fail("MTA_REDIS_URL is empty: the scheduler needs Redis (or use `mta up`, which starts one).")
    _require_schema(cfg)
    use_metrics_dir(cfg.metrics_dir)  # the budget gauge, for /metrics
    import redis

    from shared.db.database import open_database
    from worker.broker import setup_broker

    setup_broker(cfg)  # before the actor modules: their actors are declared against it
    from worker.actors import check_target
    from worker.bookings import poll_booking_states
    from worker.scheduler import BOOKING_POLL_EVERY_S, RETENTION_EVERY_S, PeriodicJob, Scheduler

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    db = open_database(cfg)
    client = redis.Redis.from_url(cfg.redis_url)
    get_logger("mta.scheduler").info("scheduler starting", budget_per_minute=cfg.site_budget_per_minute)

    def send(target_id: int, dispatch_id: str, riders: list[int], days: str) -> None:
        check_target.send(target_id, dispatch_id, riders, days)

    def purge() -> None:
        from shared.domain import utcnow
        from shared.retention import purge as purge_rows

        with db.transaction() as session:
            purge_rows(
                session,
                utcnow(),
                cfg.retention_days,
                inactive_user_days=cfg.inactive_user_days,
                inactive_warning_days=cfg.inactive_warning_days,
            )

    jobs = [
        PeriodicJob("poll_booking_states", BOOKING_POLL_EVERY_S, poll_booking_states.send),
        PeriodicJob("retention", RETENTION_EVERY_S, purge),
    ]
    if cfg.backup_interval_h > 0:
        from shared.backup import scheduled_backup

        every_s = cfg.backup_interval_h * 3600
        jobs.append(
            PeriodicJob(  # asks often whether one is due; the newest file's time decides
                "backup",
                min(600.0, every_s),
                lambda: scheduled_backup(
                    cfg.effective_database_url, cfg.backup_dir, every_s=every_s, keep=cfg.backup_keep
                ),
            )
        )
    try:
        Scheduler(cfg, db, client, send=send, jobs=jobs).run(stop)
    finally:
        db.close()
    get_logger("mta.scheduler").info("scheduler stopped")


@app.command()
def bot() -> None:
    """Run the Telegram bot: conversations and the alert sender (polling; webhook with MTA_WEBHOOK_URL)."""
    cfg = _settings("bot")
    if cfg.telegram_token is None or not cfg.telegram_token.get_secret_value():
        _fail("MTA_TELEGRAM_TOKEN is empty: the bot needs a token from @BotFather.")
    _require_schema(cfg)
    use_metrics_dir(cfg.metrics_dir)  # alerts and detection latency, for /metrics
    from bot.app import run_bot

    run_bot(cfg)


@app.command()
def api() -> None:
    """Run the status service: dashboard, JSON API, health and metrics (MTA_API_WORKERS processes)."""
    cfg = _settings("api")
    from api.serve import run

    run(cfg)


@app.command()
def health(
    role: Annotated[str, typer.Argument(help="api | worker | scheduler | bot")],
    max_age_s: Annotated[float, typer.Option(help="Oldest heartbeat that counts as alive")] = 60.0,
    this_host: Annotated[bool, typer.Option(help="Only heartbeats naming this host (one container)")] = False,
) -> None:
    """Exit 0 when ROLE is healthy, else 1 with a one-line reason (for container healthchecks)."""
    cfg = _settings("health")
    from api.health import Role, check

    if role not in {r.value for r in Role}:
        _fail(f"mta health: unknown role {role!r}; choose one of api, worker, scheduler, bot")
    ok, reason = check(cfg, Role(role), max_age_s=max_age_s, this_host=this_host)
    typer.echo(reason, err=not ok)
    raise typer.Exit(0 if ok else 1)


@app.command()
def up(
    replica_scenario: Annotated[
        str | None, typer.Option("--replica", help="Start the replica with this scenario and watch it")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (one Chromium each)")] = 1,
) -> None:
    """Run the whole farm on this machine (Ctrl-C stops it); see mta/up.py."""
    cfg = _settings("up")
    from mta.up import run_farm

    raise typer.Exit(run_farm(cfg, replica_scenario=replica_scenario, workers=workers))


@app.command()
def record(
    target: Annotated[str, typer.Option(help="SERVICE:OFFICE[,OFFICE], e.g. 1063475:102522")],
    out: Annotated[Path, typer.Option(help="The HAR file to write (a .trace.zip goes beside it)")],
    site_url: Annotated[str | None, typer.Option(help="The booking page (default MTA_SITE_URL)")] = None,
    count: Annotated[int, typer.Option(min=1, help="How many people (the service count)")] = 1,
    trace: Annotated[bool, typer.Option(help="Also keep a Playwright trace of the walk")] = True,
    label: Annotated[str, typer.Option(help="A note stored in the recording")] = "",
) -> None:
    """Record one walk for a target as a HAR with the site's answers (see worker/recorder.py)."""
    cfg = _settings("record")
    import asyncio

    from worker.recorder import RecordingError, describe_result, parse_target
    from worker.recorder import record as record_walk

    if site_url is not None and not site_url.startswith(("http://", "https://")):
        _fail("--site-url must be an http:// or https:// URL")
    try:
        key = parse_target(target, count=count)
    except RecordingError as exc:
        _fail(str(exc))
    meta = asyncio.run(record_walk(cfg, key, out, site_url=site_url, trace=trace, label=label))
    typer.echo(f"recorded {out}" + (f" and {out.with_name(out.stem + '.trace.zip')}" if trace else ""))
    typer.echo(describe_result(meta.result))


@app.command()
def replay(
    har: Annotated[Path, typer.Argument(help="A HAR written by `mta record`")],
    headed: Annotated[bool, typer.Option(help="Show the browser window")] = False,
    trace: Annotated[Path | None, typer.Option(help="Trace file (default in MTA_DATA_DIR/traces)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Run the adapter against a recording (no network) and print what it would have observed.

    Exits 1 when the result differs from the one stored at recording time."""
    cfg = _settings("replay")
    import asyncio
    import json

    from worker.recorder import RecordingError, describe_result
    from worker.recorder import replay as replay_walk

    trace_path = trace or cfg.trace_dir / f"replay-{har.stem}.zip"
    try:
        done = asyncio.run(replay_walk(cfg, har, trace_path=trace_path, headed=headed))
    except RecordingError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(done.result, indent=1))
    else:
        typer.echo(describe_result(done.result))
        typer.echo(f"trace: {trace_path} (open with `playwright show-trace`)")
    if not done.matches_recording:
        typer.echo("differs from the recording, which saw:\n" + describe_result(done.meta.result), err=True)
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - thin wrapper
    sys.exit(app())
