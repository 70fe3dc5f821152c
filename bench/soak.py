"""Soak: warm checks for a long time with browser retirement on; memory must stay flat.

``python -m bench.soak --minutes 30`` (not part of ``python -m bench``: it takes as long as asked).
Checks four Bürgerbüro targets round-robin through ``run_check`` and one ``BrowserPool`` with the
production policy (one warm session per site serves all four; it re-walks after
``session_max_checks`` checks or when its token nears expiry; a browser is replaced after
``browser_max_sessions`` contexts), against an
``mta replica`` subprocess. Every ``--sample-every`` checks it prints the PSS of the Chromium tree,
the Playwright driver and this process; the table at the end shows whether memory grows with the
number of checks done.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.__main__ import save, section
from bench._harness import Table, machine
from bench.b20_check_cost import (
    BUERGERBUERO,
    CITY_CAPTCHA_COST,
    ORLEANSPLATZ,
    OTHER_TARGETS,
    adapter_for,
    bench_settings,
    browser_pss_mib,
    driver_pss_mib,
    release_slots,
    replica_process,
)
from replica.config import PAGE_PATH
from shared.domain import CheckFailure
from shared.logging import configure_logging
from shared.settings import load_settings
from worker.browser import BrowserPool
from worker.checks import run_check

TARGETS = [BUERGERBUERO, *OTHER_TARGETS]
SESSIONS = len({key.site for key in TARGETS})
"""Warm sessions open in steady state: one per site."""


@dataclass
class Sample:
    checks: int
    elapsed_s: float
    walks: int
    failures: int
    contexts_open: int
    contexts_opened: int
    browsers_launched: int
    browser_mib: float
    driver_mib: float
    own_mib: float


@dataclass
class Options:
    minutes: float
    sample_every: int
    pause_s: float
    session_max_checks: int
    browser_max_sessions: int
    captcha_cost: int


async def _soak(folder: Path, site_url: str, options: Options) -> list[Sample]:
    settings = bench_settings(
        folder,
        site_url,
        session_max_checks=options.session_max_checks,
        browser_max_sessions=options.browser_max_sessions,
        browser_warm_sessions=len(TARGETS),
    )
    adapter = adapter_for(settings)
    me = psutil.Process()
    samples: list[Sample] = []
    checks = walks = failures = 0
    due = False
    async with BrowserPool(settings) as pool:
        started = time.monotonic()
        deadline = started + options.minutes * 60

        def sample() -> None:
            stats = pool.stats
            samples.append(
                Sample(
                    checks,
                    time.monotonic() - started,
                    walks,
                    failures,
                    stats.contexts_open,
                    stats.contexts_opened,
                    stats.browsers_launched,
                    browser_pss_mib(),
                    driver_pss_mib(),
                    me.memory_full_info().pss / 2**20,
                )
            )
            s = samples[-1]
            print(
                f"  {s.elapsed_s:7.0f} s  {s.checks:6d} checks  {s.walks:4d} walks  "
                f"{s.contexts_open}/{s.contexts_opened:4d} contexts open/opened  "
                f"{s.browsers_launched:3d} browsers  "
                f"Chromium {s.browser_mib:6.0f} MiB  driver {s.driver_mib:4.0f} MiB  "
                f"python {s.own_mib:4.0f} MiB",
                flush=True,
            )

        for key in itertools.cycle(TARGETS):
            try:
                result = await run_check(pool, adapter, key, site_url=site_url)
                walks += result.walked
            except CheckFailure as failure:
                failures += 1
                print(f"  check failed: {type(failure).__name__}: {failure}", flush=True)
            checks += 1
            if checks == len(TARGETS) or checks % options.sample_every == 0:
                due = True
            # sample with every warm session open, so that samples compare like with like
            if due and pool.stats.contexts_open == SESSIONS:
                sample()
                due = False
            if time.monotonic() >= deadline:
                break
            if options.pause_s:
                await asyncio.sleep(options.pause_s)
        if samples[-1].checks != checks:
            sample()
    return samples


def table(samples: list[Sample], options: Options) -> Table:
    result = Table(
        f"Soak: {samples[-1].checks:,} warm checks in {samples[-1].elapsed_s / 60:.0f} min, "
        "browser retirement on",
        [
            "checks",
            "minutes",
            "walks",
            "contexts open",
            "contexts opened",
            "browsers launched",
            "Chromium PSS (MiB)",
            "driver PSS (MiB)",
            "python PSS (MiB)",
        ],
    )
    for s in samples:
        result.add(
            s.checks,
            f"{s.elapsed_s / 60:.1f}",
            s.walks,
            s.contexts_open,
            s.contexts_opened,
            s.browsers_launched,
            s.browser_mib,
            s.driver_mib,
            s.own_mib,
        )
    steady = samples[1:] or samples
    first, last = steady[0], steady[-1]
    chromium = [s.browser_mib for s in steady]
    result.notes += [
        f"After the first sample: Chromium PSS {first.browser_mib:.0f} → {last.browser_mib:.0f} MiB "
        f"(min {min(chromium):.0f}, max {max(chromium):.0f}); python {first.own_mib:.0f} → "
        f"{last.own_mib:.0f} MiB; driver {first.driver_mib:.0f} → {last.driver_mib:.0f} MiB.",
        f"{len(TARGETS)} targets round-robin, {options.pause_s:g} s between checks; session_max_checks "
        f"{options.session_max_checks}, browser_max_sessions {options.browser_max_sessions} (a new "
        f"Chromium every {options.browser_max_sessions} contexts); failure tracing on; "
        f"{samples[-1].failures} failed checks; replica captcha cost {options.captcha_cost:,}.",
        "PSS splits shared pages among every process mapping them, so other Chromiums on the machine "
        "move it a little. Samples are taken every --sample-every checks at the first moment the "
        "site's warm session is open (a retired session closes at once and the next check re-walks), "
        "so they compare like with like.",
    ]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to keep checking")
    parser.add_argument("--sample-every", type=int, default=200, help="checks between memory samples")
    parser.add_argument("--pause-s", type=float, default=0.1, help="pause between checks")
    parser.add_argument("--session-max-checks", type=int, default=200, help="as MTA_SESSION_MAX_CHECKS")
    parser.add_argument("--browser-max-sessions", type=int, default=20, help="as MTA_BROWSER_MAX_SESSIONS")
    parser.add_argument("--captcha-cost", type=int, default=CITY_CAPTCHA_COST, help="replica's ALTCHA cost")
    parser.add_argument("--save", action="store_true", help="save the table in bench/RESULTS.md")
    parser.add_argument("--readme", action="store_true", help="save it in README.md as well")
    args = parser.parse_args(argv)
    options = Options(
        args.minutes,
        args.sample_every,
        args.pause_s,
        args.session_max_checks,
        args.browser_max_sessions,
        args.captcha_cost,
    )
    configure_logging(load_settings(env="test", log_level="WARNING"), role="bench")
    measured = machine()
    print(f"Measured on {measured}", flush=True)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mta-bench-soak-") as name:
        folder = Path(name)
        with replica_process(folder, MTA_REPLICA_CAPTCHA_COST=str(options.captcha_cost)) as base_url:
            for office in {key.office_ids[0] for key in TARGETS} | {ORLEANSPLATZ}:
                release_slots(base_url, office)
            samples = asyncio.run(_soak(folder, base_url + PAGE_PATH, options))
    print()
    result = table(samples, options)
    print(result.markdown(), flush=True)
    if args.save or args.readme:
        context = f"{measured}; load average {load:.1f} at start"
        save({"soak": section("soak", context, [result])}, readme=args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
