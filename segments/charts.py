"""A segment's size over time as an inline SVG line chart, drawn on the server (no chart script to
vendor or load): a line through the daily sizes, each day a point with its figure as a tooltip,
the scale's bounds and the first and last day as labels."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 720
HEIGHT = 200
LEFT = 64  # room for the size labels
RIGHT = 16
TOP = 16
BOTTOM = 28  # room for the date labels


def _nice_ceiling(value: int) -> int:
    """A round number at or above ``value`` for the top of the scale (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def size_chart_svg(points: Sequence[tuple[date, int]], *, title: str = "Size over time") -> SafeString:
    """The chart of ``points`` (day, size), oldest first; a short note when there are none."""
    if not points:
        return mark_safe('<p class="help">No daily sizes recorded yet: they are recorded every day at 00:05 UTC.</p>')
    first_day, last_day = points[0][0], points[-1][0]
    span_days = max(1, (last_day - first_day).days)
    top = _nice_ceiling(max(size for _, size in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: date) -> float:
        return LEFT + (plot_w * (day - first_day).days / span_days if len(points) > 1 else plot_w / 2)

    def y(size: int) -> float:
        return TOP + plot_h * (1 - size / top)

    line = " ".join(f"{x(day):.1f},{y(size):.1f}" for day, size in points)
    dots = "".join(
        f'<circle cx="{x(day):.1f}" cy="{y(size):.1f}" r="3">'
        f"<title>{escape(day.isoformat())}: {size:,}</title></circle>"
        for day, size in points
    )
    grid = "".join(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>'
        f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:,}</text>'
        for value in (0, top // 2, top)
    )
    labels = (
        f'<text x="{LEFT}" y="{HEIGHT - 8}" text-anchor="start">{escape(first_day.isoformat())}</text>'
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end">{escape(last_day.isoformat())}</text>'
    )
    svg = (
        f'<svg class="segment-size-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f"{grid}{labels}"
        f'<polyline points="{line}" class="line"/>{dots}</svg>'
    )
    # Every interpolated value above is a number or escaped text.
    return mark_safe(svg)  # noqa: S308
