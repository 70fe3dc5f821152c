"""What the api process holds open for its lifetime (created and closed in the app's lifespan)."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jinja2 import Environment
from sqlalchemy.orm import Session, sessionmaker

from api.dashboard import DashboardFeed
from api.farm import FarmState, read_farm
from api.outages import OutageWatch
from api.queries import Cadence
from api.snapshot import AnswerCache
from shared.db.database import Database
from shared.settings import Settings


@dataclass
class AppState:
    settings: Settings
    db: Database
    """Read-write sessions, for the few admin actions that change state."""
    reader: sessionmaker[Session]
    """Read-only sessions (SQLite: deferred BEGIN, never queued behind writers) for every read."""
    redis: aioredis.Redis | None
    templates: Environment
    feed: DashboardFeed
    cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    """Briefly reused read results (see ``api.routes._read_shared``); cleared by every write."""
    cache_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    answers: AnswerCache = field(default_factory=AnswerCache)
    """Public reads prepared once per refresh as ready bytes (``api.snapshot``); cleared by every write."""
    outages: OutageWatch | None = None
    """Redis and database outages seen by this process (ongoing ones, and events for ended ones)."""

    async def farm(self) -> FarmState:
        """What Redis says about the farm now (never raises; see ``FarmState.ok``)."""
        return await read_farm(
            self.redis,
            budget_limit=self.settings.site_budget_per_minute,
            before_pause=self.settings.site_requests_before_pause,
        )

    def cadence(self, farm: FarmState) -> Cadence:
        """The scheduler's check intervals as far as ``farm`` tells them (for staleness)."""
        return Cadence(
            min_interval_s=self.settings.check_min_interval_s,
            budget_per_minute=self.settings.site_budget_per_minute,
            round_costs=farm.round_costs,
            paused_sites=farm.paused_sites,
        )


async def get_state(request: Request) -> AppState:  # async: FastAPI runs a sync one in a thread
    state: AppState = request.app.state.mta
    return state


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The operator's token: `Authorization: Bearer <MTA_ADMIN_TOKEN>`.",
)


def require_admin(
    state: Annotated[AppState, Depends(get_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Admin calls change state or show personal data: they need the admin token (constant-time check)."""
    expected = state.settings.admin_token.get_secret_value() if state.settings.admin_token else ""
    if not expected:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "admin API disabled: set MTA_ADMIN_TOKEN on the api process to enable it",
        )
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "admin token required: send 'Authorization: Bearer <MTA_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid admin token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


__all__ = ["AppState", "get_state", "require_admin"]
