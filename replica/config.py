"""The replica's configuration: one frozen dataclass, built once from ``shared.settings``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shared.settings import Settings

API_PREFIX = "/buergeransicht/api/citizen"
"""Path prefix of the citizen API, as on www48.muenchen.de."""
PAGE_PATH = "/buergerservice/terminvereinbarung.html"
"""Path of the booking page, as on stadt.muenchen.de."""
CONTROL_PREFIX = "/_replica"


@dataclass(frozen=True)
class ReplicaConfig:
    """Everything the replica needs at start; runtime knobs (faults, clock) live in the state."""

    host: str = "127.0.0.1"
    port: int = 8800
    rate_limit: int = 120
    """Requests allowed without a ``rate_window_s`` pause (city default 60, live 120)."""
    rate_window_s: int = 60
    legacy_api: bool = False
    """Serve the <= muc45 availability endpoints (and slash-less paths) instead of available-calendar."""
    control_enabled: bool = False
    captcha_enabled: bool = True
    """What ``/captcha-details/`` reports; the token check depends on the scope flag alone."""
    captcha_cost: int = 1_000
    """ALTCHA v2 SHA-256 iterations per attempt; tests use 50-200 to stay fast."""
    captcha_challenge_ttl_s: int = 300
    captcha_token_ttl_s: int = 300
    captcha_secret: str = field(default="replica-captcha-secret", repr=False)
    cancel_holdback_s: float = 300.0
    """A cancelled slot becomes free again only this long after the cancellation."""
    maintenance: bool = False
    """Start in maintenance mode (every API call answers 503 serviceUnavailable)."""
    seed: int = 0
    """Seed for scenario randomness (demo releases), so runs are repeatable."""
    start_time: datetime | None = None
    """Where the clock starts; None means real time."""
    freeze_clock: bool = False
    page_url: str = ""
    """Page URL used in e-mail links; empty means ``<request base URL>`` + PAGE_PATH."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> ReplicaConfig:
        """Take the ``replica_*`` settings; fields without a setting keep their defaults."""
        values: dict[str, object] = {
            "host": settings.replica_host,
            "port": settings.replica_port,
            "rate_limit": settings.replica_rate_limit,
            "legacy_api": settings.replica_legacy_api,
            "control_enabled": settings.replica_control,
            "captcha_cost": settings.replica_captcha_cost,
            "captcha_token_ttl_s": settings.replica_captcha_token_ttl_s,
            "captcha_secret": settings.replica_captcha_secret.get_secret_value(),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
