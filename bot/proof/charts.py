"""Inline SVG charts for the report: drawn by the browser from the page itself, with no
script or font to fetch, so a report opened offline years later still shows them. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 34
FONT = "font-family='system-ui, sans-serif' font-size='11'"
LINE = "#2563eb"  # a series
TARGET = "#dc2626"  # the RTO target and points over it
MISSING = "#6b7280"


@dataclass(frozen=True)
class Point:
    """One value at one time."""

    when: datetime
    value: float
    bad: bool = False  # drawn in the target's colour: over target, or failed


def chart(title: str, unit: str, points: list[Point], target: float | None = None) -> str:
    """One time series as an SVG element: a line through the points, a dashed line at
    `target`, the first and last time on the x axis and the range on the y axis."""
    head = (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='{WIDTH}' "
        f"height='{HEIGHT}' viewBox='0 0 {WIDTH} {HEIGHT}' role='img' "
        f"aria-label='{escape(title)}'><title>{escape(title)}</title>"
        f"<text x='{LEFT}' y='16' {FONT} font-weight='600'>{escape(title)}</text>"
    )
    if not points:
        text = f"<text x='{LEFT}' y='{HEIGHT // 2}' {FONT} fill='{MISSING}'>nothing recorded</text>"
        return head + text + "</svg>"
    points = sorted(points, key=lambda p: p.when)
    top = max([p.value for p in points] + ([target] if target is not None else [])) or 1.0
    x_of = _x_scale(points[0].when, points[-1].when)

    def y_of(value: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / (top * 1.1))

    parts = [head, _axes(top * 1.1, unit, points[0].when, points[-1].when)]
    if target is not None:
        y = y_of(target)
        parts.append(
            f"<line class='target' x1='{LEFT}' y1='{y:.1f}' x2='{WIDTH - RIGHT}' y2='{y:.1f}' "
            f"stroke='{TARGET}' stroke-width='2' stroke-dasharray='6 4'/>"
            f"<text x='{WIDTH - RIGHT}' y='{y - 4:.1f}' text-anchor='end' {FONT} "
            f"fill='{TARGET}'>target {_number(target)} {escape(unit)}</text>"
        )
    xy = [(x_of(p.when), y_of(p.value), p) for p in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in xy)
    parts.append(
        f"<polyline class='series' points='{line}' fill='none' stroke='{LINE}' stroke-width='3'/>"
    )
    for x, y, p in xy:
        colour = TARGET if p.bad else LINE
        label = f"{p.when:%Y-%m-%d %H:%M}: {_number(p.value)} {unit}"
        parts.append(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='4' fill='{colour}'>"
            f"<title>{escape(label)}</title></circle>"
        )
    return "".join(parts) + "</svg>"


def _x_scale(first: datetime, last: datetime) -> Callable[[datetime], float]:
    span = (last - first).total_seconds() or 1.0
    width = WIDTH - LEFT - RIGHT

    def x_of(when: datetime) -> float:
        if first == last:
            return LEFT + width / 2
        return LEFT + width * (when - first).total_seconds() / span

    return x_of


def _axes(top: float, unit: str, first: datetime, last: datetime) -> str:
    bottom_y = HEIGHT - BOTTOM
    return (
        f"<line x1='{LEFT}' y1='{TOP}' x2='{LEFT}' y2='{bottom_y}' stroke='#9ca3af'/>"
        f"<line x1='{LEFT}' y1='{bottom_y}' x2='{WIDTH - RIGHT}' y2='{bottom_y}' stroke='#9ca3af'/>"
        f"<text x='{LEFT - 6}' y='{TOP + 4}' text-anchor='end' {FONT}>{_number(top)}</text>"
        f"<text x='{LEFT - 6}' y='{bottom_y}' text-anchor='end' {FONT}>0</text>"
        f"<text x='{LEFT - 6}' y='{(TOP + bottom_y) // 2}' text-anchor='end' {FONT}>"
        f"{escape(unit)}</text>"
        f"<text x='{LEFT}' y='{HEIGHT - 12}' {FONT}>{first:%Y-%m-%d}</text>"
        f"<text x='{WIDTH - RIGHT}' y='{HEIGHT - 12}' text-anchor='end' {FONT}>{last:%Y-%m-%d}</text>"
    )


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
