"""The wanted-days contract between scheduler and worker: windows and weekdays to days, and the
compact wire form a check message carries."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from shared.horizon import DayWish, decode_days, encode_days, wanted_days

MONDAY = date(2026, 12, 7)


def test_wishes_become_the_union_of_their_days() -> None:
    """Tried: one wish for Mondays in two weeks, one for two open-ended-start days, one past.
    Asserted: exactly the days at least one covers, inside today..today+horizon."""
    wishes = [
        DayWish(MONDAY, MONDAY + timedelta(days=13), frozenset({0})),
        DayWish(None, MONDAY + timedelta(days=1)),
        DayWish(date(2026, 1, 1), date(2026, 1, 31)),
    ]
    days = wanted_days(wishes, today=MONDAY, horizon_days=30)
    assert days == {MONDAY, MONDAY + timedelta(days=1), MONDAY + timedelta(days=7)}


def test_no_filter_wants_the_whole_horizon() -> None:
    days = wanted_days([DayWish(None, None)], today=MONDAY, horizon_days=10)
    assert days == {MONDAY + timedelta(days=i) for i in range(11)}


def test_days_survive_the_wire_in_compact_runs() -> None:
    """Tried: a run of days, a lone day, another run. Asserted: runs are written first..last and
    decode to the same set."""
    days = {MONDAY + timedelta(days=i) for i in (0, 1, 2, 3, 9, 20, 21)}
    text = encode_days(days)
    assert text == "2026-12-07..2026-12-10,2026-12-16,2026-12-27..2026-12-28"
    assert decode_days(text) == days
    assert decode_days(encode_days([])) == frozenset()


@pytest.mark.parametrize("text", ["2026-12-10..2026-12-07", "tomorrow", "2026-13-01"])
def test_bad_wire_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode_days(text)
