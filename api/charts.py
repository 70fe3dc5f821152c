"""Small inline SVG charts, drawn on the server: no chart library, no build step, fine on a phone.

Each function returns ``Markup`` (safe to drop into a template); every text inside is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from shared.domain import SITE_TIMEZONE

WEEKDAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")


def _fmt_s(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def latency_chart(
    points: Sequence[tuple[datetime, float, bool]],
    *,
    now: datetime,
    window: timedelta = timedelta(hours=24),
    p50_s: float | None = None,
    p95_s: float | None = None,
) -> Markup:
    """Detection latency per slot over the last ``window``: a dot per slot, p50/p95 as lines.

    ``points`` are (first seen, latency in seconds, alerted); alerted slots are filled dots.
    """
    width, height, left, right, top, bottom = 520, 220, 52, 12, 14, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    start = now - window
    ys = [p[1] for p in points]
    y_max = max([*ys, p95_s or 0.0, 1.0]) * 1.1
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Detection latency over the last {window.total_seconds() / 3600:.0f} hours">'
    ]
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="chart-bg"/>')
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        label = escape(_fmt_s(y_max * frac))
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" class="axis" text-anchor="end">{label}</text>')
    for hours_back in range(0, int(window.total_seconds() // 3600) + 1, 6):
        t = now - timedelta(hours=hours_back)
        x = left + plot_w * (1 - hours_back * 3600 / window.total_seconds())
        label = escape(t.astimezone(SITE_TIMEZONE).strftime("%H:%M"))
        anchor = "end" if hours_back == 0 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" class="axis" text-anchor="{anchor}">{label}</text>')
    quantiles = ((p50_s, "p50", left + 4, "start"), (p95_s, "p95", left + plot_w - 4, "end"))
    for value, name, x_label, anchor in quantiles:
        if value is None:
            continue
        y = top + plot_h * (1 - value / y_max)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="q {name}"/>'
            f'<text x="{x_label}" y="{y - 4:.1f}" class="axis q-label" text-anchor="{anchor}">'
            f"{name} {escape(_fmt_s(value))}</text>"
        )
    for first_seen, latency_s, alerted in points:
        if first_seen < start:
            continue
        x = left + plot_w * ((first_seen - start).total_seconds() / window.total_seconds())
        y = top + plot_h * (1 - latency_s / y_max)
        css = "dot alerted" if alerted else "dot"
        tip = escape(f"{first_seen.astimezone(SITE_TIMEZONE):%d.%m. %H:%M:%S}: {_fmt_s(latency_s)}")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" class="{css}"><title>{tip}</title></circle>')
    if not points:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" class="axis empty" '
            'text-anchor="middle">no new slots detected in this window</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def heatmap(grid: Sequence[Sequence[int]], *, title: str) -> Markup:
    """Weekday × hour (Europe/Berlin) counts as a grid of shaded cells, darker = more slots."""
    cell, left, top = 22, 28, 16
    width, height = left + 24 * cell, top + 7 * cell
    peak = max((max(row) for row in grid), default=0) or 1
    parts = [f'<svg class="heatmap" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">']
    for hour in range(0, 24, 3):
        x = left + hour * cell + cell / 2
        parts.append(f'<text x="{x}" y="{top - 4}" class="axis" text-anchor="middle">{hour}</text>')
    for day, row in enumerate(grid):
        y = top + day * cell
        parts.append(
            f'<text x="{left - 4}" y="{y + cell * 0.7}" class="axis" text-anchor="end">{WEEKDAYS[day]}</text>'
        )
        for hour, n in enumerate(row):
            opacity = 0.06 if n == 0 else 0.2 + 0.8 * n / peak
            tip = escape(f"{WEEKDAYS[day]} {hour:02d}:00–{hour:02d}:59: {n} new slot{'s' if n != 1 else ''}")
            parts.append(
                f'<rect x="{left + hour * cell + 1}" y="{y + 1}" width="{cell - 2}" '
                f'height="{cell - 2}" rx="3" class="cell" fill-opacity="{opacity:.2f}" '
                f'data-count="{n}"><title>{tip}</title></rect>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


__all__ = ["WEEKDAYS", "heatmap", "latency_chart"]
