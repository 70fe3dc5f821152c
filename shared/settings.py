"""One settings class for every MTA role.

Every process (worker, scheduler, bot, api, replica, the ``mta`` CLI) reads the same
environment: variables prefixed ``MTA_``, optionally from a ``.env`` file in the working
directory. Durations carry their unit in the name. Secrets are ``SecretStr`` so that they
never show up in a repr, a log line or an error message.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SITE_URL = "https://stadt.muenchen.de/buergerservice/terminvereinbarung.html"


class SettingsError(Exception):
    """Raised when the environment holds an invalid setting; the message names it."""


class Settings(BaseSettings):
    """MTA configuration. Each field maps to ``MTA_<FIELD_NAME>``; ``.env.example`` documents all."""

    model_config = SettingsConfigDict(
        env_prefix="MTA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- general -------------------------------------------------------------------------------
    env: Literal["development", "production", "test"] = "development"
    """Deployment flavour; production logs JSON lines."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    """auto: readable on a terminal, JSON lines otherwise."""
    data_dir: Path = Path("data")
    """Folder for the SQLite database, traces, screenshots, keys and Prometheus files."""
    log_max_bytes: int = Field(default=10_000_000, ge=10_000, le=10_000_000_000)
    """Under ``mta up``: a role's log file past this size is rotated (``<role>.log.1`` …)."""
    log_backups: int = Field(default=5, ge=0, le=100)
    """Under ``mta up``: rotated copies kept per role (0: the log is just truncated)."""

    # --- storage -------------------------------------------------------------------------------
    database_url: str = ""
    """SQLAlchemy URL; empty means SQLite at ``<data_dir>/mta.db``."""
    db_busy_timeout_ms: int = Field(default=10_000, ge=0, le=600_000)
    redis_url: str = ""
    """Redis for Dramatiq, rate limits and wake-ups; empty lets ``mta up`` start a local one."""
    encryption_key: SecretStr | None = None
    """Fernet key for personal data at rest; empty means a key file in the data folder."""

    # --- the site ------------------------------------------------------------------------------
    site_url: str = DEFAULT_SITE_URL
    """The city's booking page (the replica's page when running against it)."""
    site_budget_per_minute: int = Field(default=30, ge=1, le=10_000)
    """Requests per minute that all workers together may send to one site (the city allows 60-120)."""
    booking_budget_per_minute: int = Field(default=5, ge=1, le=1_000)
    check_jitter_s: float = Field(default=2.0, ge=0, le=30)
    """Random extra delay (0..N s) between two dispatches to one site, so the rhythm is not
    machine-regular."""
    release_aware: bool = True
    """Spend the budget where slots appear: faster inside the city's stated release windows and the
    hours MTA has seen slots appear in, slower at night and at weekends (``worker.release_plan``)."""
    release_windows_file: str = ""
    """A YAML file of release windows replacing the shipped ``shared/data/release-windows.yaml``."""
    release_hot_factor: float = Field(default=0.5, gt=0, le=1)
    """A group's interval factor inside a release window (0.5: rounds twice as often as normal)."""
    release_cold_factor: float = Field(default=4.0, ge=1, le=60)
    """A group's interval factor at night and at weekends outside release windows."""
    worker_heartbeat_timeout_ms: int = Field(default=15_000, ge=1_000)
    """A check whose worker died (SIGKILL) is delivered again after this long."""
    layout_changed_alert_after: int = Field(default=3, ge=1, le=1_000)
    """Consecutive LayoutChanged results before one operator alert."""
    site_requests_before_pause: int = Field(default=50, ge=0, le=100_000)
    """The city answers 429 after N requests without a 60 s pause (N = 60..120); after this many
    requests without such a pause MTA pauses for 60 s itself, or sooner when the site's
    X-RateLimit-Limit header announces a lower N (a sixth of N is kept back). 0 turns the pause off."""
    check_min_interval_s: float = Field(default=10.0, gt=0, le=3_600)
    """No target is checked more often than this, whatever the budget allows."""
    check_day_requests_max: int = Field(default=12, ge=0, le=200)
    """Day requests one check round may make beyond its horizon request: the free times of days
    that became bookable (first) and of the least recently read half of the other open days that
    someone wants. The round's cost is charged to the budget, and the scheduler spaces rounds by it."""
    check_request_timeout_s: float = Field(default=30.0, gt=0, le=300)
    """How long a warm check waits for the site's calendar answer; longer is a ``timeout`` failure
    (the target backs off)."""
    check_horizon_days: int = Field(default=183, ge=1, le=365)
    """How far ahead the scheduler looks for days that subscribers want (the page asks 6 months)."""
    scheduler_lease_ms: int = Field(default=10_000, ge=500, le=600_000)
    """The scheduler leader's lease in Redis; a standby takes over this long after the leader died."""
    worker_stall_s: float = Field(default=180.0, ge=5, le=3_600)
    """Under ``mta up``: a worker process with no fresh heartbeat, or holding a check without
    finishing one, for this long is wedged (Chromium or its driver hung) and is replaced."""

    # --- browsers ------------------------------------------------------------------------------
    chromium_path: str = ""
    """Chromium binary; empty means Playwright's own browser, else the system one."""
    browser_headless: bool = True
    browser_warm_sessions: int = Field(default=8, ge=1, le=32)
    session_max_checks: int = Field(default=200, ge=1)
    session_max_age_s: float = Field(default=900.0, gt=0)
    browser_max_sessions: int = Field(default=20, ge=1)
    """Sessions (browser contexts) one browser may open before it is retired."""
    trace_on_failure: bool = True
    pacer: Literal["human", "none"] = "human"
    think_time_min_ms: int = Field(default=250, ge=0)
    think_time_max_ms: int = Field(default=750, ge=0)
    """Pause before each click, drawn evenly from the range: a practised person who knows the page
    and reacts to what it shows, not one reading it for the first time (that was 400-1,500 ms)."""
    typing_delay_min_ms: int = Field(default=40, ge=0)
    typing_delay_max_ms: int = Field(default=140, ge=0)
    """Delay before each typed character (about 11 characters/s on average: a fast typist)."""
    booking_standbys: int = Field(default=2, ge=0, le=8)
    """Booking pages each worker process keeps ready for the newest autobook targets: walked to
    the service step with the captcha passed, one press from a fresh calendar (0: none)."""

    # --- Telegram ------------------------------------------------------------------------------
    telegram_token: SecretStr | None = None
    """Bot token from @BotFather; without one, alerts show on the console and dashboard only."""
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    operator_chat_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    """Comma-separated chat ids that receive operator alerts."""
    webhook_url: str = ""
    """Public HTTPS URL for webhook mode; empty means polling."""
    webhook_secret: SecretStr | None = None
    webhook_port: int = Field(default=8443, ge=1, le=65_535)
    """Local port the bot listens on in webhook mode (behind the public HTTPS URL)."""
    telegram_timeout_s: float = Field(default=15.0, gt=0, le=300)
    """Read timeout of one Bot API call; a timed-out alert is retried."""
    outbox_sweep_s: float = Field(default=5.0, gt=0, le=3_600)
    """Seconds between the sender's sweeps of the outbox (wake-ups over Redis come sooner)."""
    site_blocked_alert_after_s: int = Field(default=1_800, ge=60)
    """A site whose every target failed for this long (429, 503, captcha) raises one operator alert."""

    # --- e-mail alerts (Apprise over SMTP) --------------------------------------------------------
    smtp_host: str = ""
    """SMTP server for alert e-mails; empty (or no ``smtp_from``): no e-mail channel, no /email."""
    smtp_port: int = Field(default=587, ge=1, le=65_535)
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    """starttls (port 587), ssl (implicit TLS, port 465) or none (a local relay only)."""
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    smtp_from: str = ""
    """The sender address of alert mails."""
    smtp_timeout_s: float = Field(default=15.0, gt=0, le=300)
    """Connect and read timeout of one SMTP delivery; a timed-out mail is retried."""
    email_code_ttl_s: int = Field(default=1_800, ge=60, le=86_400)
    """How long the code mailed by /email stays valid."""

    # --- status service ------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65_535)
    api_workers: int = Field(default=0, ge=0, le=64)
    """Server processes of ``mta api`` on the one port; 0: one per core, at most 8."""
    api_refresh_s: float = Field(default=1.0, gt=0, le=60)
    """How often the dashboard and the public JSON answers are rebuilt; in between every client
    gets the same prepared bytes (after the interval the first request starts the rebuild, and the
    previous answer serves until it is done; one asked for only after two intervals waits)."""
    admin_token: SecretStr | None = None
    """Bearer token for admin API calls; empty disables them."""
    retention_days: int = Field(default=30, ge=1, le=3_650)
    inactive_user_days: int = Field(default=365, ge=0, le=36_500)
    """A person without an active subscription or booking and no sign of life for this long is
    warned, then erased with their profile (0: never)."""
    inactive_warning_days: int = Field(default=14, ge=1, le=365)
    """Days between that warning and the erasure (anything they do in between keeps them)."""
    backup_interval_h: float = Field(default=24.0, ge=0, le=8_760)
    """The scheduler backs the database up this often into ``<data_dir>/backups`` (0: never)."""
    backup_keep: int = Field(default=7, ge=1, le=1_000)
    """Scheduled backups kept; older ones are deleted."""

    # --- the replica ---------------------------------------------------------------------------
    replica_host: str = "127.0.0.1"
    replica_port: int = Field(default=8800, ge=1, le=65_535)
    replica_rate_limit: int = Field(default=120, ge=1)
    """Requests without a 60 s pause before the replica answers 429 (city: 60 default, 120 live)."""
    replica_legacy_api: bool = False
    """Serve the pre-muc46 availability endpoints instead of available-calendar."""
    replica_control: bool = False
    """Enable the /_replica/ control API (tests and demos only)."""
    replica_captcha_cost: int = Field(default=1_000, ge=1)
    replica_captcha_token_ttl_s: int = Field(default=300, ge=1)
    replica_captcha_secret: SecretStr = SecretStr("replica-captcha-secret")

    @field_validator("operator_chat_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError as exc:
                raise ValueError("must be comma-separated integer chat ids, e.g. 12345,-100678") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("site_url", "telegram_api_base_url")
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.think_time_min_ms > self.think_time_max_ms:
            raise ValueError("MTA_THINK_TIME_MIN_MS must not exceed MTA_THINK_TIME_MAX_MS")
        if self.typing_delay_min_ms > self.typing_delay_max_ms:
            raise ValueError("MTA_TYPING_DELAY_MIN_MS must not exceed MTA_TYPING_DELAY_MAX_MS")
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError("MTA_WEBHOOK_SECRET is required when MTA_WEBHOOK_URL is set")
        return self

    # --- derived -------------------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'mta.db').resolve()}"

    @property
    def trace_dir(self) -> Path:
        return self.data_dir / "traces"

    @property
    def metrics_dir(self) -> Path:
        return self.data_dir / "metrics"

    @property
    def backup_dir(self) -> Path:
        return self.data_dir / "backups"


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
        name = "MTA_" + loc[0].upper() if loc else "settings"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        # never echo the input: it may be a secret
        lines.append(f"{name}: {msg}")
    return "Invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
