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


def _not_built(role: str, issue: int) -> NoReturn:
    _fail(f"mta {role}: this role is not built yet (tracked in issue #{issue}); nothing was started.")


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
    processes: Annotated[int, typer.Option(help="Worker processes (one Chromium each)")] = 1,
    threads: Annotated[int, typer.Option(help="Worker threads per process")] = 2,
    queues: Annotated[str, typer.Option(help="Comma-separated queues to consume")] = "checks,bookings",
) -> None:
    """Run Dramatiq worker processes that drive headless Chromium."""
    cfg = _settings("worker")
    if not cfg.redis_url:
        _fail("MTA_REDIS_URL is empty: the workers need Redis (or use `mta up`, which starts one).")
    os.execvpe(sys.executable, worker_command(processes, threads, queues), worker_environment(cfg))


def worker_command(processes: int, threads: int, queues: str) -> list[str]:
    names = [q.strip() for q in queues.split(",") if q.strip()]
    return [
        sys.executable, "-m", "dramatiq", "worker.actors",
        "--processes", str(processes), "--threads", str(threads), "--skip-logging",
        "--worker-shutdown-timeout", "5000", "--queues", *names,
    ]  # fmt: skip


def worker_environment(cfg: Settings) -> dict[str, str]:
    """Worker processes: browser hook on, one message at a time, a short idle poll (latency)."""
    cfg.metrics_dir.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "MTA_WORKER_PROCESS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(cfg.metrics_dir.resolve()),
        "dramatiq_prom_db": str(cfg.metrics_dir.resolve()),
        "dramatiq_queue_prefetch": "1",
        "dramatiq_worker_timeout": "100",
    }


@app.command()
def scheduler() -> None:
    """Run the scheduler (one leader at a time through a Redis lock; others stand by)."""
    cfg = _settings("scheduler")
    if not cfg.redis_url:
        _fail("MTA_REDIS_URL is empty: the scheduler needs Redis (or use `mta up`, which starts one).")
    import redis

    from shared.db.database import open_database
    from worker.actors import check_target
    from worker.scheduler import Scheduler

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    db = open_database(cfg)
    client = redis.Redis.from_url(cfg.redis_url)
    get_logger("mta.scheduler").info("scheduler starting", budget_per_minute=cfg.site_budget_per_minute)

    def send(target_id: int) -> None:
        check_target.send(target_id)

    Scheduler(cfg, db, client, send=send).run(stop)


@app.command()
def bot() -> None:
    """Run the Telegram bot: conversations and the alert sender."""
    _settings("bot")
    _not_built("bot", 5)


@app.command()
def api() -> None:
    """Run the status service: dashboard, JSON API, health and metrics."""
    _settings("api")
    _not_built("api", 7)


@app.command()
def up(
    replica_scenario: Annotated[
        str | None, typer.Option("--replica", help="Start the replica with this scenario and watch it")
    ] = None,
) -> None:
    """Run the whole farm on this machine."""
    _settings("up")
    _not_built("up", 7)


def main() -> None:  # pragma: no cover - thin wrapper
    sys.exit(app())
