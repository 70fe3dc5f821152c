"""Domain types: aware UTC times only, canonical office sets, failures mapped to outcomes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from shared.domain import (
    CaptchaRequired,
    CheckFailure,
    CheckOutcome,
    CheckTimeout,
    LayoutChanged,
    Observation,
    RateLimited,
    SiteUnavailable,
    SlotSeen,
    TargetKey,
    office_key,
    parse_office_key,
)


def test_slot_times_are_aware_utc() -> None:
    cet = timezone(timedelta(hours=1))
    slot = SlotSeen(102522, 1063475, datetime(2026, 12, 2, 10, 0, tzinfo=cet))
    assert slot.start == datetime(2026, 12, 2, 9, 0, tzinfo=UTC) and slot.start.tzinfo is UTC
    assert slot.local_start.hour == 10
    with pytest.raises(ValueError, match="timezone-aware"):
        SlotSeen(1, 1, datetime(2026, 12, 2, 10, 0))


def test_office_sets_are_canonical() -> None:
    assert office_key([3, 1, 2, 3]) == "1,2,3"
    assert parse_office_key("1,2,3") == (1, 2, 3) and parse_office_key("") == ()
    assert TargetKey("munich", 1, 1, (3, 1)) == TargetKey("munich", 1, 1, (1, 3))


def test_observation_coverage() -> None:
    obs = Observation(
        site="munich",
        service_id=1,
        service_count=1,
        office_ids=(2, 1),
        observed_at=datetime(2026, 12, 1, tzinfo=UTC),
        covered_days=frozenset({date(2026, 12, 2)}),
    )
    assert obs.office_ids == (1, 2) and obs.key.office_key == "1,2"
    assert obs.covers(datetime(2026, 12, 1, 23, 30, tzinfo=UTC))  # 00:30 on the 2nd in Munich
    assert not obs.covers(datetime(2026, 12, 2, 23, 30, tzinfo=UTC))
    assert obs.observation_id != Observation("munich", 1, 1, (1,), obs.observed_at).observation_id


def test_failures_carry_their_outcome() -> None:
    reset = datetime(2026, 12, 1, 8, 1, tzinfo=UTC)
    cases: list[tuple[CheckFailure, CheckOutcome]] = [
        (RateLimited(reset_at=reset), CheckOutcome.RATE_LIMITED),
        (CaptchaRequired(), CheckOutcome.CAPTCHA),
        (SiteUnavailable(status_code=503), CheckOutcome.SITE_ERROR),
        (LayoutChanged(), CheckOutcome.LAYOUT_CHANGED),
        (CheckTimeout(), CheckOutcome.TIMEOUT),
    ]
    for failure, outcome in cases:
        assert failure.outcome == outcome
        assert isinstance(failure, CheckFailure)
    assert RateLimited(reset_at=reset).reset_at == reset
    assert {o.value for o in CheckOutcome} == {
        "ok",
        "no_slots",
        "rate_limited",
        "captcha",
        "site_error",
        "layout_changed",
        "timeout",
    }
