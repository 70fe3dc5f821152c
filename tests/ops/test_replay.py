"""Recorded scenarios: the Munich adapter replayed against recordings of the replica's scenarios.

``tests/recordings/*.zip`` were written by ``scripts/record-scenarios.sh`` (``mta record``): one walk
of the adapter through a replica scenario each, with every response the page got. Here each is
replayed with Playwright's ``route_from_har`` (anything not recorded is aborted: no network) and
must give the result stored at recording time, plus what the scenario is about. A change of the
adapter's reading of the site's answers fails here; so does a change of the answers themselves,
which two doctored recordings below show.
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mta.cli import app
from shared.logging import configure_logging
from shared.settings import Settings, load_settings, reset_settings_cache
from worker.recorder import RecordingError, Replay, load_har, parse_target, read_meta, replay

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

RECORDINGS = Path(__file__).resolve().parents[1] / "recordings"
CONCURRENT_REPLAYS = 3


def _slots(result: dict[str, Any]) -> list[dict[str, Any]]:
    assert result["kind"] == "observation", result
    return list(result["slots"])


def _failure(kind: str) -> Callable[[dict[str, Any]], None]:
    def check(result: dict[str, Any]) -> None:
        assert result["kind"] == "failure" and result["type"] == kind, result

    return check


def _quiet_day(result: dict[str, Any]) -> None:
    slots = _slots(result)
    assert slots and {s["office_id"] for s in slots} == {102522}


def _two_offices(result: dict[str, Any]) -> None:
    assert {s["office_id"] for s in _slots(result)} == {102522, 54261}


def _no_slots(result: dict[str, Any]) -> None:
    assert _slots(result) == [] and result["covered_days"]


def _contested(result: dict[str, Any]) -> None:
    (slot,) = _slots(result)
    assert slot["office_id"] == 102522 and slot["start"].endswith("T07:00:00+00:00")  # 08:00 in Munich


EXPECTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "quiet-day": _quiet_day,
    "two-offices": _two_offices,
    "no-slots": _no_slots,
    "contested-slot": _contested,
    "legacy-api": _quiet_day,
    "maintenance-503": _failure("SiteUnavailable"),
    "rate-limited": _failure("RateLimited"),
    "layout-changed": _failure("LayoutChanged"),
}


def _doctor(source: Path, target: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Copy a recording, passing every available-calendar answer through ``change``."""
    har = load_har(source)
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    bodies = {
        entry["response"]["content"]["_file"]
        for entry in har["log"]["entries"]
        if "available-calendar" in entry["request"]["url"]
    }
    assert bodies, f"{source} has no available-calendar answer"
    for name in bodies:  # equal answers share one file
        files[name] = json.dumps(change(json.loads(files[name]))).encode()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, body in files.items():
            archive.writestr(name, json.dumps(har) if name == "har.har" else body)


def _later_by_15_min(answer: dict[str, Any]) -> dict[str, Any]:
    for day in answer.get("availableDays", []):
        for office in day.get("offices", []):
            office["appointments"] = [t + 900 for t in office["appointments"]]
    return answer


def _renamed_field(answer: dict[str, Any]) -> dict[str, Any]:
    for day in answer.get("availableDays", []):
        for office in day.get("offices", []):
            office["slots"] = office.pop("appointments")
    return answer


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(data_dir=tmp_path_factory.mktemp("replay"), pacer="none", env="test")


@pytest.fixture(scope="module")
def doctored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("doctored")
    paths = {"shifted": folder / "shifted.zip", "renamed": folder / "renamed.zip"}
    _doctor(RECORDINGS / "quiet-day.zip", paths["shifted"], _later_by_15_min)
    _doctor(RECORDINGS / "quiet-day.zip", paths["renamed"], _renamed_field)
    return paths


@pytest.fixture(scope="module")
def replays(settings: Settings, doctored: dict[str, Path]) -> dict[str, Replay]:
    """Every recording (and the doctored copies) replayed once, a few at a time in one driver."""
    from playwright.async_api import async_playwright

    paths = {p.stem: p for p in sorted(RECORDINGS.glob("*.zip"))}
    paths.update({f"doctored-{name}": path for name, path in doctored.items()})

    async def run_all() -> dict[str, Replay]:
        gate = asyncio.Semaphore(CONCURRENT_REPLAYS)
        async with async_playwright() as playwright:

            async def one(name: str, path: Path) -> tuple[str, Replay]:
                async with gate:
                    return name, await replay(settings, path, playwright=playwright)

            return dict(await asyncio.gather(*(one(name, path) for name, path in paths.items())))

    return asyncio.run(run_all())


def test_every_recording_has_an_expectation() -> None:
    shipped = {p.stem for p in RECORDINGS.glob("*.zip")}
    assert shipped == set(EXPECTATIONS), "add the new recording to EXPECTATIONS (or remove the file)"


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_replay_gives_what_was_recorded(name: str, replays: dict[str, Replay]) -> None:
    """The adapter reads the recorded answers exactly as it did when they were recorded, and the
    result is what the scenario shows at that moment."""
    done = replays[name]
    assert done.matches_recording, (done.result, done.meta.result)
    EXPECTATIONS[name](done.result)


def test_a_changed_answer_changes_the_observation(replays: dict[str, Replay]) -> None:
    """Injected: every slot time in the recorded calendar answers moved 15 minutes later. Asserted:
    the replay no longer matches the recording and reports the moved times."""
    done = replays["doctored-shifted"]
    assert not done.matches_recording
    recorded = [s["start"] for s in _slots(done.meta.result)]
    replayed = [s["start"] for s in _slots(done.result)]
    assert len(replayed) == len(recorded) and replayed != recorded


def test_a_changed_answer_shape_is_a_failure_not_a_false_observation(replays: dict[str, Replay]) -> None:
    """Injected: the calendar answer's "appointments" field renamed to "slots". Asserted: the replay
    reports a failure (the adapter does not read the page as "no slots")."""
    done = replays["doctored-renamed"]
    assert not done.matches_recording
    assert done.result["kind"] == "failure", done.result


def test_mta_replay_prints_the_observation_and_writes_a_trace(tmp_path: Path) -> None:
    """`mta replay FILE` prints the slots, keeps a trace, exits 0 when it matches the recording."""
    trace = tmp_path / "replay.zip"
    result = CliRunner().invoke(
        app, ["replay", str(RECORDINGS / "contested-slot.zip"), "--trace", str(trace)], env=_env(tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert "observation: 1 free slot(s)" in result.output
    assert "102522" in result.output and "08:00" in result.output
    assert trace.stat().st_size > 0


def _env(tmp_path: Path) -> dict[str, str]:
    return {"MTA_DATA_DIR": str(tmp_path), "MTA_LOG_LEVEL": "WARNING"}


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """The CLI reads settings once per process; each invocation here brings its own environment."""
    reset_settings_cache()
    yield
    reset_settings_cache()
    # the CLI bound logging to the runner's captured stderr, closed by now: bind it back
    configure_logging(load_settings(env="test"), role="test")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "missing.har"], "no such file"),
        (["record", "--target", "wohnsitz", "--out", "x.har"], "use SERVICE:OFFICE"),
        (["record", "--target", "1063475:", "--out", "x.har"], "name at least one office"),
        (["record", "--target", "1063475:1", "--out", "x.har", "--site-url", "ftp://x"], "--site-url"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path: Path, argv: list[str], message: str) -> None:
    """Bad arguments stop the command with exit 2 and a message; nothing is written."""
    result = CliRunner().invoke(app, argv, env=_env(tmp_path))
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "x.har").exists()


def test_a_foreign_har_is_refused(tmp_path: Path) -> None:
    """Injected: a HAR without MTA's metadata, and a file that is not JSON. Asserted: RecordingError
    saying what is wrong."""
    foreign = tmp_path / "foreign.har"
    foreign.write_text(json.dumps({"log": {"version": "1.2", "entries": []}}))
    with pytest.raises(RecordingError, match="without MTA's metadata"):
        read_meta(foreign)
    garbage = tmp_path / "garbage.har"
    garbage.write_text("<html>")
    with pytest.raises(RecordingError, match="not a HAR file"):
        read_meta(garbage)


def test_target_syntax() -> None:
    key = parse_target("1063475:102522,54261", count=2)
    assert (key.service_id, key.service_count, key.office_ids) == (1063475, 2, (54261, 102522))


def test_record_then_replay_a_live_walk(replica: Any, tmp_path: Path) -> None:
    """`mta record` against the running replica keeps a HAR with the page's API answers, the trace
    beside it, and the observation; the replay of that HAR (replica traffic counted) sends nothing
    to the site and sees the same slots."""
    from datetime import timedelta

    from replica.clock import BERLIN
    from tests.support.replica import ORLEANSPLATZ, WOHNSITZANMELDUNG

    day = datetime.now(BERLIN).date() + timedelta(days=3)
    replica.add_slots(ORLEANSPLATZ, day=day, times=["09:00", "09:15"])
    har = tmp_path / "walk.har"
    env = {**_env(tmp_path), "MTA_PACER": "none"}
    argv = ["record", "--target", f"{WOHNSITZANMELDUNG}:{ORLEANSPLATZ}", "--out", str(har)]
    result = CliRunner().invoke(app, [*argv, "--site-url", replica.page_url], env=env)
    assert result.exit_code == 0, result.output
    assert "observation: 2 free slot(s)" in result.output
    assert (tmp_path / "walk.trace.zip").stat().st_size > 0
    urls = [e["request"]["url"] for e in load_har(har)["log"]["entries"]]
    assert any("/api/citizen/available-calendar" in url for url in urls)

    served = replica.control("GET", "/requests/stats")["total"]
    reset_settings_cache()
    again = CliRunner().invoke(app, ["replay", str(har), "--trace", str(tmp_path / "replay.zip")], env=env)
    assert again.exit_code == 0, again.output
    assert "observation: 2 free slot(s)" in again.output
    assert replica.control("GET", "/requests/stats")["total"] == served
