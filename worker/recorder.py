"""Recorded scenarios: what a worker saw, kept as a HAR and played back without the network.

``record`` walks the site for one target exactly as a worker does (the browser pool, the site
adapter, the captcha widget) in a context that records a HAR of everything the page fetched,
API answers included, plus a Playwright trace beside it. ``replay`` runs the same walk in a
context that answers every request from that HAR (``route_from_har``, anything else aborted, so no
network), traced, and returns the observation the adapter would have produced.

Two things make a replay reproducible:

- time: the page computes "today" (and the calendar's date range) from the browser clock, so the
  replay installs Playwright's clock at the moment the recording started; the adapter's own idea of
  today (``MunichAdapter.today``) is pinned to the same day;
- POST bodies: Playwright matches a recorded POST only with a byte-identical body, but the
  captcha's proof-of-work payload carries the solving time, so the recording drops POST bodies and a
  POST then matches on its URL (the answer is what counts, not what we sent).

A recording is a ``.har`` (bodies inline, readable) or a ``.zip`` (``har.har`` plus compressed
bodies, a tenth of the size; what ``tests/recordings`` ships). It carries its own metadata under
``log._mta`` (a HAR custom field): the target, the page URL, the browser time, and the result the
walk produced when it was recorded.
"""

from __future__ import annotations

import contextlib
import json
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Playwright

from shared.domain import DEFAULT_SITE, CheckFailure, Observation, TargetKey
from shared.logging import get_logger
from shared.settings import Settings
from worker.browser import BrowserLauncher, BrowserPool
from worker.browser._launcher import CONTEXT_OPTIONS

log = get_logger("mta.recorder")

META_KEY = "_mta"
ZIP_HAR_NAME = "har.har"
FORMAT_VERSION = 1


class RecordingError(Exception):
    """A bad target, a missing or foreign HAR file; the message says what to fix."""


# --- targets and results as plain data -------------------------------------------------------------
def parse_target(text: str, *, count: int = 1, site: str = "munich") -> TargetKey:
    """``SERVICE:OFFICE[,OFFICE...]`` -> a target key (``1063475:102522,54261``)."""
    service, sep, offices = text.partition(":")
    try:
        service_id = int(service.strip())
        office_ids = tuple(int(o) for o in offices.split(",") if o.strip()) if sep else ()
    except ValueError:
        raise RecordingError(
            f"--target {text!r}: use SERVICE:OFFICE[,OFFICE], e.g. 1063475:102522,54261"
        ) from None
    if not office_ids:
        raise RecordingError(f"--target {text!r}: name at least one office after the colon")
    if count < 1:
        raise RecordingError("--count must be at least 1")
    return TargetKey(site, service_id, count, office_ids)


def result_to_dict(result: Observation | CheckFailure) -> dict[str, Any]:
    """The comparable part of a walk's result (no ids or wall-clock times)."""
    if isinstance(result, CheckFailure):
        return {
            "kind": "failure",
            "type": type(result).__name__,
            "outcome": result.outcome.value,
            "message": str(result),
        }
    return {
        "kind": "observation",
        "site": result.site,
        "service_id": result.service_id,
        "service_count": result.service_count,
        "office_ids": list(result.office_ids),
        "slots": [
            {"office_id": s.office_id, "service_id": s.service_id, "start": s.start.isoformat()}
            for s in sorted(result.slots, key=lambda s: (s.start, s.office_id))
        ],
        "covered_days": sorted(d.isoformat() for d in result.covered_days)
        if result.covered_days is not None
        else None,
    }


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "message"}


def describe_result(result: dict[str, Any]) -> str:
    """Readable lines for the terminal."""
    from shared.catalog import get_catalog
    from shared.domain import SITE_TIMEZONE

    if result["kind"] == "failure":
        return f"failure: {result['type']} ({result['outcome']}): {result['message']}"
    catalog = get_catalog()
    lines = [f"observation: {len(result['slots'])} free slot(s)"]
    covered = result.get("covered_days")
    if covered:
        span = covered[0] if len(covered) == 1 else f"{covered[0]} .. {covered[-1]}"
        lines.append(f"  days read completely: {len(covered)} ({span})")
    for slot in result["slots"]:
        office = catalog.office(slot["office_id"])
        start = datetime.fromisoformat(slot["start"]).astimezone(SITE_TIMEZONE)
        name = office.name if office else str(slot["office_id"])
        lines.append(f"  {start:%a %Y-%m-%d %H:%M}  {slot['office_id']}  {name}")
    return "\n".join(lines)


@dataclass(frozen=True)
class RecordingMeta:
    target: TargetKey
    site_url: str
    browser_time: datetime
    """The browser clock when the walk started; a replay starts its clock here."""
    result: dict[str, Any]
    recorded_at: datetime
    label: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "site": self.target.site,
            "service_id": self.target.service_id,
            "service_count": self.target.service_count,
            "office_ids": list(self.target.office_ids),
            "site_url": self.site_url,
            "browser_time": self.browser_time.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "label": self.label,
            "result": self.result,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordingMeta:
        target = TargetKey(
            str(data["site"]), int(data["service_id"]), int(data["service_count"]), tuple(data["office_ids"])
        )
        return cls(
            target=target,
            site_url=str(data["site_url"]),
            browser_time=datetime.fromisoformat(data["browser_time"]),
            result=dict(data["result"]),
            recorded_at=datetime.fromisoformat(data["recorded_at"]),
            label=str(data.get("label", "")),
        )


def is_zip(path: Path) -> bool:
    """A ``.zip`` recording: the HAR as ``har.har`` with the bodies as compressed files beside it."""
    return path.suffix.lower() == ".zip"


def load_har(path: Path) -> dict[str, Any]:
    if is_zip(path):
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read(ZIP_HAR_NAME).decode("utf-8"))
    else:
        data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("log"), dict):
        raise ValueError("no HAR log in it")
    return data


def store_har(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    if not is_zip(path):
        path.write_text(text, encoding="utf-8")
        return
    with zipfile.ZipFile(path) as archive:
        others = {name: archive.read(name) for name in archive.namelist() if name != ZIP_HAR_NAME}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(ZIP_HAR_NAME, text)
        for name, body in sorted(others.items()):
            archive.writestr(name, body)


def read_meta(har_path: Path) -> RecordingMeta:
    try:
        data = load_har(har_path)
    except FileNotFoundError:
        raise RecordingError(f"{har_path}: no such file") from None
    except (OSError, KeyError, UnicodeDecodeError, ValueError, zipfile.BadZipFile) as exc:
        raise RecordingError(f"{har_path}: not a HAR file ({exc})") from None
    meta = data.get("log", {}).get(META_KEY) if isinstance(data, dict) else None
    if not isinstance(meta, dict):
        raise RecordingError(f"{har_path}: a HAR without MTA's metadata; record it with `mta record`")
    try:
        return RecordingMeta.from_json(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(f"{har_path}: damaged MTA metadata ({exc})") from None


def finish_har(har_path: Path, meta: RecordingMeta) -> int:
    """Drop POST bodies (see the module docstring) and store the metadata; returns entries kept."""
    data = load_har(har_path)
    entries = data["log"].get("entries", [])
    for entry in entries:
        request = entry.get("request", {})
        if request.get("method") == "POST":
            request.pop("postData", None)
    data["log"][META_KEY] = meta.to_json()
    store_har(har_path, data)
    return len(entries)


# --- the browser side ------------------------------------------------------------------------------
class HarLauncher(BrowserLauncher):
    """Contexts that record a HAR (``record_har``) or answer from one (``replay_har``), with the
    page clock started at ``clock_at`` and tracing on when ``trace`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        record_har: Path | None = None,
        replay_har: Path | None = None,
        clock_at: datetime | None = None,
        trace: bool = True,
        playwright: Playwright | None = None,
    ) -> None:
        super().__init__(settings, playwright=playwright)
        self.record_har = record_har
        self.replay_har = replay_har
        self.clock_at = clock_at
        self.trace = trace
        self.contexts: list[BrowserContext] = []

    async def new_context(self, browser: Browser) -> BrowserContext:
        options: dict[str, Any] = {**CONTEXT_OPTIONS, "service_workers": "block"}
        if self.record_har is not None:
            content = "attach" if is_zip(self.record_har) else "embed"
            options.update(
                record_har_path=str(self.record_har), record_har_mode="minimal", record_har_content=content
            )
        context = await browser.new_context(**options)
        if self.replay_har is not None:
            await context.route_from_har(self.replay_har, not_found="abort")
        if self.clock_at is not None:
            await context.clock.install(time=self.clock_at)
        if self.trace:
            # screencast frames under the installed clock slow a replay's captcha from ~2 s to ~15 s;
            # DOM snapshots show the same pages
            screenshots = self.clock_at is None
            await context.tracing.start(screenshots=screenshots, snapshots=True, sources=False)
        self.contexts.append(context)
        return context


def _adapter(settings: Settings, day: date | None = None) -> Any:
    """The worker's Munich adapter; ``day`` pins its "today" (a replay: the recording's day)."""
    from worker.pacer import pacer_from_settings
    from worker.sites.registry import sites

    return sites()[DEFAULT_SITE].make_adapter(
        settings=settings, pacer=pacer_from_settings(settings), today=None if day is None else lambda: day
    )


async def _walk(
    settings: Settings,
    launcher: HarLauncher,
    key: TargetKey,
    site_url: str,
    trace_path: Path | None,
    day: date | None = None,
) -> Observation | CheckFailure:
    """One walk in a fresh session of the worker's pool; the trace is saved before the context closes."""
    from worker.checks import session_key

    adapter = _adapter(settings, day)
    # the pool's own failure traces stay off: this walk is traced from start to end by the launcher
    result: Observation | CheckFailure
    async with (
        BrowserPool(settings, launcher=launcher, trace=False) as pool,
        pool.session(session_key(key)) as session,
    ):
        session.requests_made = 0
        try:
            result = await adapter.walk(session, key, site_url)
        except CheckFailure as failure:
            result = failure
        finally:
            if launcher.trace and trace_path is not None:
                with contextlib.suppress(Exception):
                    await session.context.tracing.stop(path=str(trace_path))
    return result


def _prepare_output(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


def trace_path_beside(har_path: Path) -> Path:
    return har_path.with_name(har_path.stem + ".trace.zip")


async def record(
    settings: Settings,
    key: TargetKey,
    har_path: Path,
    *,
    site_url: str | None = None,
    trace: bool = True,
    label: str = "",
) -> RecordingMeta:
    """Walk ``key`` on the live site (or the replica) and keep the HAR (+ trace) of that walk."""
    url = site_url or settings.site_url
    _prepare_output(har_path)
    browser_time = datetime.now(UTC)
    launcher = HarLauncher(settings, record_har=har_path, trace=trace)
    started = time.monotonic()
    result = await _walk(settings, launcher, key, url, trace_path_beside(har_path) if trace else None)
    meta = RecordingMeta(
        target=key,
        site_url=url,
        browser_time=browser_time,
        result=result_to_dict(result),
        recorded_at=datetime.now(UTC),
        label=label,
    )
    entries = finish_har(har_path, meta)
    log.info(
        "recorded",
        har=str(har_path),
        entries=entries,
        result=meta.result["kind"],
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    return meta


@dataclass(frozen=True)
class Replay:
    meta: RecordingMeta
    result: dict[str, Any]
    trace: Path | None

    @property
    def matches_recording(self) -> bool:
        """Same slots, or the same kind of failure (its wording may differ: the page's screen or
        the API's answer can be noticed first)."""
        return comparable(self.result) == comparable(self.meta.result)


async def replay(
    settings: Settings,
    har_path: Path,
    *,
    trace_path: Path | None = None,
    headed: bool = False,
    playwright: Playwright | None = None,
) -> Replay:
    """Walk the recorded target against ``har_path`` only (no network), traced into ``trace_path``.

    ``playwright``: a running driver to share (many replays in one process); else one is started.
    """
    from shared.domain import SITE_TIMEZONE, CaptchaRequired

    meta = read_meta(har_path)
    cfg = settings.model_copy(update={"pacer": "none", "browser_headless": not headed})
    if trace_path is not None:
        _prepare_output(trace_path)
    launcher = HarLauncher(
        cfg,
        replay_har=har_path,
        clock_at=meta.browser_time,
        trace=trace_path is not None,
        playwright=playwright,
    )
    day = meta.browser_time.astimezone(SITE_TIMEZONE).date()
    result = await _walk(cfg, launcher, meta.target, meta.site_url, trace_path, day)
    if isinstance(result, CaptchaRequired) and result_to_dict(result) != meta.result:
        # the page's own proof-of-work now and then stalls under the replay's installed clock
        # (seen about once in seven replays); the recorded walk passed it: walk once more, afresh
        log.warning("replay_captcha_retry", error=str(result))
        result = await _walk(cfg, launcher, meta.target, meta.site_url, trace_path, day)
    return Replay(meta=meta, result=result_to_dict(result), trace=trace_path)


__all__ = [
    "HarLauncher",
    "RecordingError",
    "RecordingMeta",
    "Replay",
    "comparable",
    "describe_result",
    "parse_target",
    "read_meta",
    "record",
    "replay",
    "result_to_dict",
]
