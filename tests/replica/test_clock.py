"""The controllable clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from replica.clock import BERLIN, Clock


def test_real_time_by_default() -> None:
    clock = Clock()
    assert abs(clock.timestamp() - time.time()) < 1
    assert clock.now().tzinfo is UTC
    assert not clock.frozen


def test_frozen_clock_moves_only_when_told() -> None:
    start = datetime(2026, 11, 23, 6, 0, tzinfo=BERLIN)
    clock = Clock(start, frozen=True)
    assert clock.now() == start
    time.sleep(0.01)
    assert clock.now() == start
    assert clock.advance(90) == start + timedelta(seconds=90)
    clock.set(start)
    assert clock.local_now() == start
    assert clock.local_now().tzinfo is BERLIN


def test_running_clock_keeps_running_from_a_set_time() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = Clock(start)
    first = clock.now()
    time.sleep(0.02)
    assert clock.now() > first
    assert abs((clock.now() - start).total_seconds()) < 1
    frozen_at = clock.freeze()
    assert clock.now() == frozen_at
    clock.advance(3600)
    clock.unfreeze()
    assert (clock.now() - frozen_at).total_seconds() >= 3600
    clock.reset()
    assert abs(clock.timestamp() - time.time()) < 1


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        Clock().set(datetime(2026, 1, 1))
