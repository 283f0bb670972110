"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, nothing to load. Every chart
has a title, a text alternative and a tooltip (SVG ``<title>``) on each point or bar, and sits
beside a table with the same numbers.

Every piece of text that comes from data (event names, sources, variant names) is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe (Okabe-Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
WIDTH = 640
HEIGHT = 280
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 36, 44

_ids = count(1)

Format = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def fmt_pp(value: float) -> str:
    return f"{value * 100:+.1f} pp"


def fmt_money(value: float) -> str:
    return f"{value:,.2f}"


def _nice_step(span: float, ticks: int = 4) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _scale(low: float, high: float, *, whole: bool = False) -> tuple[float, float, list[float]]:
    """A rounded axis covering [low, high] (always including 0) and its ticks; ``whole``: counts,
    whose ticks are whole numbers."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1
    step = _nice_step(high - low)
    if whole:
        step = max(1.0, math.ceil(step))
    start = math.floor(low / step) * step
    end = math.ceil(high / step) * step
    ticks = []
    value = start
    while value <= end + step / 2:
        ticks.append(round(value, 10))
        value += step
    return start, end, ticks


def _frame(chart_id: str, title: str, description: str, body: list[str], legend: Sequence[str] = ()) -> SafeString:
    parts = [
        f'<svg class="report-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" preserveAspectRatio="xMidYMid meet"'
        f' aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(description)}</desc>',
    ]
    x = LEFT
    for index, name in enumerate(legend):
        colour = PALETTE[index % len(PALETTE)]
        label = escape(name if len(name) <= 24 else name[:23] + "…")
        parts.append(f'<rect x="{x}" y="10" width="10" height="10" fill="{colour}"></rect>')
        parts.append(f'<text x="{x + 14}" y="19" class="legend">{label}</text>')
        x += 24 + 7 * min(len(name), 24)
        if x > WIDTH - 80:
            break
    parts.extend(body)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every data-derived string above is escaped)


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{colour}" stroke-width="2"></line>'


def _polyline(points: list[str], colour: str) -> str:
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"></polyline>'


def _dot(cx: float, cy: float, radius: int, colour: str, tip: str) -> str:
    return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="{colour}"><title>{escape(tip)}</title></circle>'


def _y_axis(ticks: list[float], y: Callable[[float], float], value_format: Format) -> list[str]:
    parts = []
    for tick in ticks:
        position = y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{position:.1f}" y2="{position:.1f}" class="grid"></line>'
        )
        label = escape(value_format(tick))
        parts.append(f'<text x="{LEFT - 6}" y="{position + 4:.1f}" class="tick" text-anchor="end">{label}</text>')
    return parts


def _x_labels(labels: Sequence[str], x: Callable[[int], float]) -> list[str]:
    every = max(1, math.ceil(len(labels) / 10))
    parts = []
    for index, label in enumerate(labels):
        if index % every == 0:
            text = escape(label if len(label) <= 14 else label[:13] + "…")
            parts.append(
                f'<text x="{x(index):.1f}" y="{HEIGHT - BOTTOM + 16}" class="tick" text-anchor="middle">{text}</text>'
            )
    return parts


def empty_chart(title: str, message: str = "No data for these filters yet.") -> SafeString:
    chart_id = f"chart{next(_ids)}"
    body = [f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">{escape(message)}</text>']
    return _frame(chart_id, title, message, body)


def line_chart(
    *, title: str, labels: Sequence[str], series: Sequence[Series], value_format: Format = fmt_int
) -> SafeString:
    values = [v for s in series for v in s.values if v is not None]
    if not labels or not values:
        return empty_chart(title)
    chart_id = f"chart{next(_ids)}"
    low, high, ticks = _scale(min(values), max(values), whole=value_format is fmt_int)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index: int) -> float:
        return LEFT + (plot_w * index / (len(labels) - 1) if len(labels) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    body = _y_axis(ticks, y, value_format) + _x_labels(labels, x)
    for number, item in enumerate(series):
        colour = PALETTE[number % len(PALETTE)]
        path: list[str] = []
        for index, value in enumerate(item.values):
            if value is None:
                if path:
                    body.append(_polyline(path, colour))
                path = []
                continue
            path.append(f"{x(index):.1f},{y(value):.1f}")
        if path:
            body.append(_polyline(path, colour))
        if len(labels) <= 60:
            for index, value in enumerate(item.values):
                if value is not None:
                    tip = f"{item.name}, {labels[index]}: {value_format(value)}"
                    body.append(_dot(x(index), y(value), 3, colour, tip))
    description = f"Line chart of {', '.join(s.name for s in series)} over {labels[0]} to {labels[-1]}."
    return _frame(chart_id, title, description, body, [s.name for s in series] if len(series) > 1 else ())


def bar_chart(
    *, title: str, labels: Sequence[str], series: Sequence[Series], value_format: Format = fmt_int
) -> SafeString:
    """Grouped vertical bars: one group per label, one bar per series."""
    values = [v for s in series for v in s.values if v is not None]
    if not labels or not values:
        return empty_chart(title)
    chart_id = f"chart{next(_ids)}"
    low, high, ticks = _scale(min(values), max(values), whole=value_format is fmt_int)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / len(labels)
    bar_w = max(2.0, group_w * 0.8 / len(series))

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    def centre(index: int) -> float:
        return LEFT + group_w * (index + 0.5)

    body = _y_axis(ticks, y, value_format) + _x_labels(labels, centre)
    for number, item in enumerate(series):
        colour = PALETTE[number % len(PALETTE)]
        for index, value in enumerate(item.values):
            if value is None:
                continue
            left = LEFT + group_w * index + group_w * 0.1 + bar_w * number
            top, bottom = sorted((y(value), y(0)))
            tip = escape(f"{item.name}, {labels[index]}: {value_format(value)}")
            body.append(
                f'<rect x="{left:.1f}" y="{top:.1f}" width="{bar_w:.1f}" height="{max(bottom - top, 0.5):.1f}"'
                f' fill="{colour}"><title>{tip}</title></rect>'
            )
    description = f"Bar chart of {', '.join(s.name for s in series)} for {', '.join(labels)}."
    return _frame(chart_id, title, description, body, [s.name for s in series] if len(series) > 1 else ())


def interval_chart(
    *,
    title: str,
    labels: Sequence[str],
    estimates: Sequence[tuple[float | None, float | None, float | None]],
    value_format: Format = fmt_pp,
) -> SafeString:
    """Point estimates with their confidence intervals, around a zero line (an uplift chart)."""
    values = [v for estimate in estimates for v in estimate if v is not None]
    if not labels or not values:
        return empty_chart(title, "Not enough data yet.")
    chart_id = f"chart{next(_ids)}"
    low, high, ticks = _scale(min(values), max(values), whole=value_format is fmt_int)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / len(labels)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    def centre(index: int) -> float:
        return LEFT + group_w * (index + 0.5)

    body = _y_axis(ticks, y, value_format) + _x_labels(labels, centre)
    body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" class="zero"></line>')
    for index, (point, lower, upper) in enumerate(estimates):
        if point is None:
            continue
        cx = centre(index)
        colour = PALETTE[0]
        if lower is not None and upper is not None:
            body.append(_line(cx, y(lower), cx, y(upper), colour))
            for end in (lower, upper):
                body.append(_line(cx - 8, y(end), cx + 8, y(end), colour))
        interval = (
            f" (95% CI {value_format(lower)} to {value_format(upper)})"
            if lower is not None and upper is not None
            else ""
        )
        body.append(_dot(cx, y(point), 5, colour, f"{labels[index]}: {value_format(point)}{interval}"))
    description = "Uplift against the control group with 95% confidence intervals for " + ", ".join(labels) + "."
    return _frame(chart_id, title, description, body)
