"""The booking pace as configured: a practised person's think times and typing delays.

Speed itself is measured by bench b60, never here; these tests pin what the settings say and that
the pacer follows them.
"""

from __future__ import annotations

import pytest

from shared.settings import SettingsError, load_settings
from worker.pacer import HumanPacer, NoPacer, pacer_from_settings


def test_the_default_pace_is_a_practised_persons() -> None:
    """Defaults: 250-750 ms before each click, 40-140 ms per key, two standby pages.
    Tried: the old 400-1,500 ms defaults fail the first assertion."""
    settings = load_settings(env="test")
    assert (settings.think_time_min_ms, settings.think_time_max_ms) == (250, 750)
    assert (settings.typing_delay_min_ms, settings.typing_delay_max_ms) == (40, 140)
    assert settings.booking_standbys == 2
    pacer = pacer_from_settings(settings, seed=7)
    assert isinstance(pacer, HumanPacer)
    thinks = [pacer.think_ms() for _ in range(500)]
    keys = [pacer.type_delay_ms() for _ in range(500)]
    assert min(thinks) >= 250 and max(thinks) <= 750 and max(thinks) - min(thinks) > 400  # random, spread
    assert min(keys) >= 40 and max(keys) <= 140


def test_the_pace_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``MTA_THINK_TIME_*_MS`` and ``MTA_TYPING_DELAY_*_MS`` set the ranges; ``MTA_PACER=none`` turns
    pacing off. Tried: pacer_from_settings ignoring the settings (fixed ranges) fails."""
    monkeypatch.setenv("MTA_THINK_TIME_MIN_MS", "100")
    monkeypatch.setenv("MTA_THINK_TIME_MAX_MS", "120")
    monkeypatch.setenv("MTA_TYPING_DELAY_MIN_MS", "10")
    monkeypatch.setenv("MTA_TYPING_DELAY_MAX_MS", "11")
    pacer = pacer_from_settings(load_settings(env="test"), seed=1)
    assert isinstance(pacer, HumanPacer)
    assert pacer.think_range_ms == (100.0, 120.0) and pacer.typing_range_ms == (10.0, 11.0)
    assert isinstance(pacer_from_settings(load_settings(env="test", pacer="none")), NoPacer)


def test_a_range_upside_down_or_standbys_out_of_range_stop_start_up() -> None:
    """Minimum above maximum, or more standbys than allowed, is refused with the setting's name."""
    with pytest.raises(SettingsError, match="MTA_THINK_TIME_MIN_MS"):
        load_settings(env="test", think_time_min_ms=800, think_time_max_ms=700)
    with pytest.raises(SettingsError, match=r"(?i)booking_standbys"):
        load_settings(env="test", booking_standbys=9)
