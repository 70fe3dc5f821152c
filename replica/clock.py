"""A controllable clock: real time by default, frozen or shifted in tests and scenarios.

Everything time-based in the replica (slot visibility, reservation expiry, captcha token TTL,
the rate-limit window, "future timestamps only") reads this clock, never ``time.time()``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")


def _aware_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("the replica clock takes timezone-aware datetimes only")
    return dt.astimezone(UTC)


class Clock:
    """Real time plus an offset; or a frozen instant that moves only by ``advance``/``set``."""

    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        self._offset_s = 0.0
        self._frozen_at: datetime | None = None
        if frozen:
            self.freeze()
        if start is not None:
            self.set(start)

    def now(self) -> datetime:
        """The replica's current time, aware, in UTC."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return datetime.fromtimestamp(time.time() + self._offset_s, UTC)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def local_now(self) -> datetime:
        """The current time in Europe/Berlin (the site's dates are Berlin dates)."""
        return self.now().astimezone(BERLIN)

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward (or back, with a negative value); returns the new time."""
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += timedelta(seconds=seconds)
                return self._frozen_at
            self._offset_s += seconds
        return self.now()

    def set(self, dt: datetime) -> datetime:
        """Jump to ``dt``; a running clock keeps running from there."""
        target = _aware_utc(dt)
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = target
            else:
                self._offset_s = target.timestamp() - time.time()
        return target

    def freeze(self) -> datetime:
        """Stop the clock at its current time."""
        current = self.now()
        with self._lock:
            self._frozen_at = current
        return current

    def unfreeze(self) -> datetime:
        """Let the clock run again from where it stands."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset_s = self._frozen_at.timestamp() - time.time()
                self._frozen_at = None
        return self.now()

    def reset(self) -> None:
        """Back to real time, running."""
        with self._lock:
            self._offset_s = 0.0
            self._frozen_at = None
