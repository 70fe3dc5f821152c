"""Getting past the site's captcha, and knowing how long the pass lasts.

Munich uses ALTCHA, a proof-of-work captcha: nobody has to read anything, the page's own widget
computes the answer when its "Ich bin kein Bot." label is clicked, and the site's verify endpoint
answers with a JWT (``token``) that later calendar requests carry. ``InPageAltchaSolver`` lets the
widget do exactly that and captures the token from the page's own verify response; the session
reuses it until it nears expiry (``exp`` read from the JWT without verifying it: we only need the
time, and the secret is the site's).

``RelaySolver`` is for a captcha a person must read (an image or audio challenge): it sends a
screenshot of the challenge to the subscriber and types their answer. ``FakeSolver`` is for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Response
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from shared.domain import CaptchaRequired
from shared.logging import get_logger
from worker.captcha_token import jwt_claims_unverified as jwt_claims_unverified
from worker.captcha_token import jwt_expiry as jwt_expiry
from worker.captcha_token import token_lifetime_s
from worker.pacer import NoPacer, Pacer
from worker.sites.munich import selectors as sel

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

    from worker.browser._session import BrowserSession

log = get_logger("mta.captcha")

LABEL_GRACE_S = 5.0  # how long a mounted widget may take to show its label (or its progress)

AskUser = Callable[[bytes, str], Awaitable[str]]
"""``ask_user(image_png, prompt) -> answer``: shows the challenge to a person and returns their text."""


# --- the token: worker.captcha_token (re-exported) --------------------------------------------------


# --- solvers --------------------------------------------------------------------------------------
class CaptchaSolver(Protocol):
    """Gets the page past its captcha."""

    async def solve(self, page: Page, session: BrowserSession) -> str | None:
        """Pass the captcha shown on ``page``; return the site's token (None when the page showed
        no captcha, or the pass is kept by the page itself). Raises ``CaptchaRequired`` on failure."""
        ...


@dataclass(frozen=True)
class AltchaWidgetTexts:
    """How the ALTCHA widget looks on the site (Munich's German texts by default, spec §3.4)."""

    widget: str = sel.CAPTCHA_WIDGET
    label: str = sel.CAPTCHA_LABEL
    verifying: str = sel.CAPTCHA_VERIFYING
    verified: str = sel.CAPTCHA_VERIFIED
    failures: tuple[str, ...] = (sel.CAPTCHA_FAILED, sel.CAPTCHA_EXPIRED, sel.CAPTCHA_LOAD_FAILED)
    verify_marker: str = f"/{sel.CAPTCHA_VERIFY_ENDPOINT}"


def token_from_verify(data: object) -> str:
    """The ``token`` of a verify answer (always HTTP 200; ``meta.success`` false means refused)."""
    if not isinstance(data, dict):
        raise CaptchaRequired("captcha verify answered something other than a JSON object")
    meta = data.get("meta")
    token = data.get("token")
    if not isinstance(meta, dict) or meta.get("success") is not True:
        error = meta.get("error") if isinstance(meta, dict) else None
        raise CaptchaRequired(f"captcha verification refused: {error or 'no reason given'}")
    if not isinstance(token, str) or not token:
        raise CaptchaRequired("captcha verification succeeded but returned no token")
    return token


async def _shown(locator: Locator) -> bool:
    try:
        return bool(await locator.count()) and await locator.is_visible()
    except PlaywrightError:
        return False


async def _visible_text(locators: list[Locator]) -> str | None:
    for locator in locators:
        if await locator.count() and await locator.first.is_visible():
            return await locator.first.inner_text()
    return None


async def _wait_for_verdict(page: Page, verified: Locator, failures: list[Locator], timeout_s: float) -> None:
    """Wait until the widget shows success; a failure text or the deadline raises CaptchaRequired."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await verified.count() and await verified.first.is_visible():
            return
        said = await _visible_text(failures)
        if said:
            raise CaptchaRequired(f"captcha widget says: {said}")
        if time.monotonic() >= deadline:
            raise CaptchaRequired("captcha widget did not report success in time")
        await asyncio.sleep(0.05)


class InPageAltchaSolver:
    """Clicks the widget's label and lets the page's own ALTCHA widget do the proof of work.

    A click can be lost (the widget still wiring itself up, a busy renderer): when the widget still
    shows its unticked label ``reclick_after_s`` after a click, it is clicked again, as a person
    would, at most ``max_clicks`` times in all."""

    def __init__(
        self,
        *,
        texts: AltchaWidgetTexts | None = None,
        timeout_s: float = 60.0,
        reclick_after_s: float = 5.0,
        max_clicks: int = 3,
        pacer: Pacer | None = None,
    ) -> None:
        self.texts = texts or AltchaWidgetTexts()
        self.timeout_s = timeout_s
        self.reclick_after_s = reclick_after_s
        self.max_clicks = max_clicks
        self.pacer: Pacer = pacer or NoPacer()

    async def solve(self, page: Page, session: BrowserSession) -> str | None:
        texts = self.texts
        label = page.get_by_text(texts.label, exact=True).first
        if not await label.count() and not await page.locator(texts.widget).count():
            return None
        failures = [page.get_by_text(text, exact=True) for text in texts.failures]
        verified = page.get_by_text(texts.verified, exact=True)
        verifies: list[Response] = []

        def on_response(response: Response) -> None:
            if texts.verify_marker in response.url and response.request.method == "POST":
                verifies.append(response)

        page.on("response", on_response)
        try:
            if not await self._click_until_verified(page, label, verified, failures, verifies):
                log.debug("captcha_passed_by_page", key=session.key)
                return None  # the widget verified on its own; the page keeps its pass
            try:
                data = await verifies[0].json()
            except (PlaywrightError, ValueError):
                raise CaptchaRequired("captcha verify answered no JSON") from None
            token = token_from_verify(data)
            await _wait_for_verdict(page, verified, failures, self.timeout_s)
        finally:
            page.remove_listener("response", on_response)
        log.debug("captcha_passed", key=session.key, lifetime_s=token_lifetime_s(token))
        return token

    async def _click_until_verified(
        self,
        page: Page,
        label: Locator,
        verified: Locator,
        failures: list[Locator],
        verifies: list[Response],
    ) -> bool:
        """Click the label until the page posts its solution (True). A widget that is already
        verifying is left to finish; one that shows success before any click verified on its own
        (False: no verify answer to read)."""
        verifying = page.get_by_text(self.texts.verifying, exact=True)
        started = time.monotonic()
        clicks = 0
        clicked_at = -float("inf")
        while not verifies:
            now = time.monotonic()
            if await _shown(label):
                if now - clicked_at >= self.reclick_after_s:
                    if clicks >= self.max_clicks:
                        said = await _visible_text(failures)
                        raise CaptchaRequired(
                            f"captcha widget says: {said}"
                            if said
                            else f"captcha widget ignored {clicks} clicks"
                        )
                    if clicks:
                        log.debug("captcha_reclick", clicks=clicks)
                    else:
                        await self.pacer.move_to(page, label)
                    with contextlib.suppress(PlaywrightTimeoutError):
                        await label.click(timeout=self.reclick_after_s * 1000)
                    clicks += 1
                    clicked_at = time.monotonic()
            elif not clicks and await _shown(verified.first):
                return False
            elif not clicks and now - started >= LABEL_GRACE_S and not await _shown(verifying.first):
                raise CaptchaRequired("captcha widget present without its label")
            if now - started >= self.timeout_s:
                raise CaptchaRequired("captcha widget did not verify in time")
            await asyncio.sleep(0.05)
        return True


class RelaySolver:
    """For a captcha a person must read: screenshot it, ask the subscriber, type their answer.

    ``ask_user(image_png, prompt)`` is supplied by the bot (issue 5) and should return the person's
    text; it is cancelled after ``timeout_s``. The challenge element is located with
    ``challenge_selector``, the answer typed into ``answer_selector`` (paced), then submitted with
    ``submit_selector`` (or Enter). When ``token_marker`` is set, the token is read from the page's own
    response to a URL containing it (``{"token": ...}``), as with ALTCHA; otherwise the pass lives in
    the page and None is returned. ``success_text``/``failure_texts`` confirm the outcome.
    ALTCHA itself needs no person; use ``InPageAltchaSolver`` for it.
    """

    def __init__(
        self,
        ask_user: AskUser,
        *,
        challenge_selector: str,
        answer_selector: str,
        submit_selector: str | None = None,
        prompt: str = "Bitte geben Sie die Zeichen im Bild ein.",
        timeout_s: float = 300.0,
        token_marker: str | None = None,
        success_text: str | None = None,
        failure_texts: tuple[str, ...] = (),
        verdict_timeout_s: float = 30.0,
        pacer: Pacer | None = None,
    ) -> None:
        self.ask_user = ask_user
        self.challenge_selector = challenge_selector
        self.answer_selector = answer_selector
        self.submit_selector = submit_selector
        self.prompt = prompt
        self.timeout_s = timeout_s
        self.token_marker = token_marker
        self.success_text = success_text
        self.failure_texts = failure_texts
        self.verdict_timeout_s = verdict_timeout_s
        self.pacer: Pacer = pacer or NoPacer()

    async def solve(self, page: Page, session: BrowserSession) -> str | None:
        challenge = page.locator(self.challenge_selector)
        if not await challenge.count():
            return None
        image = await challenge.first.screenshot()
        try:
            answer = await asyncio.wait_for(self.ask_user(image, self.prompt), self.timeout_s)
        except TimeoutError:
            raise CaptchaRequired("nobody answered the relayed captcha in time") from None
        answer = answer.strip()
        if not answer:
            raise CaptchaRequired("the relayed captcha got an empty answer")
        await self.pacer.think()
        await self.pacer.type_text(page.locator(self.answer_selector).first, answer)
        token: str | None = None
        try:
            if self.token_marker is not None:
                marker = self.token_marker
                async with page.expect_response(
                    lambda r: marker in r.url, timeout=self.verdict_timeout_s * 1000
                ) as info:
                    await self._submit(page)
                token = token_from_verify(await (await info.value).json())
            else:
                await self._submit(page)
            if self.success_text is not None:
                failures = [page.get_by_text(text, exact=True) for text in self.failure_texts]
                verified = page.get_by_text(self.success_text, exact=True)
                await _wait_for_verdict(page, verified, failures, self.verdict_timeout_s)
        except PlaywrightTimeoutError:
            raise CaptchaRequired("the relayed captcha answer was not accepted in time") from None
        return token

    async def _submit(self, page: Page) -> None:
        if self.submit_selector is not None:
            await page.locator(self.submit_selector).first.click()
        else:
            await page.locator(self.answer_selector).first.press("Enter")


class FakeSolver:
    """Returns a fixed token (or fails) without touching the page; counts its calls."""

    def __init__(self, token: str | None = None, *, fail: str | None = None) -> None:
        self.token = token
        self.fail = fail
        self.calls = 0

    async def solve(self, page: Page, session: BrowserSession) -> str | None:
        self.calls += 1
        if self.fail is not None:
            raise CaptchaRequired(self.fail)
        return self.token


__all__ = [
    "AltchaWidgetTexts",
    "AskUser",
    "CaptchaSolver",
    "FakeSolver",
    "InPageAltchaSolver",
    "RelaySolver",
    "jwt_claims_unverified",
    "jwt_expiry",
    "token_lifetime_s",
]
