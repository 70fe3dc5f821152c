"""Shared plumbing for the benchmarks: result tables, machine description, percentiles, a replica."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from replica.app import serve_in_thread
from replica.config import ReplicaConfig
from shared.chromium import find_chromium


@dataclass
class Table:
    """One benchmark's figures: a title, column names, rows of cells, and notes on method."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([_cell(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values (a bench that measured nothing says so)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    """One line naming the machine, so figures are read against what produced them."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    chromium = find_chromium() or "playwright chromium"
    try:
        version = subprocess.run(
            [chromium, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout.strip()
    except OSError:
        version = chromium
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, "
        f"Python {platform.python_version()}, {version or 'chromium'}"
    )


@contextmanager
def replica(**overrides: object) -> Iterator[str]:
    """A replica on a free port with the control API on; yields its base URL."""
    from tests.conftest import free_port

    config = dataclasses.replace(ReplicaConfig(control_enabled=True), port=free_port(), **overrides)  # type: ignore[arg-type]
    with serve_in_thread(config) as (base_url, _app):
        yield base_url


Bench = Callable[[bool], list[Table]]
"""A benchmark module's ``run(quick)``: quick mode shrinks sizes so the whole suite smoke-tests fast."""
