"""Charts drawn on the server as inline SVG: the console's CSP allows no script.

Only numbers and our own labels go in; labels are escaped. Colours are presentation attributes,
not style, so ``style-src 'self'`` is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from markupsafe import Markup, escape

COLOURS = ("#2a6fdb", "#d1495b", "#edae49", "#00798c", "#7b4b94", "#66a182", "#444")
WIDTH, HEIGHT = 560, 150
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 8, 34
LEGEND_ROW = 13


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]  # None: no value for that point (no requests, for latency)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 < value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if value <= step * factor:
            return step * factor
    return step * 10


def _number(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"


def line_chart(title: str, series: Sequence[Series], x_labels: tuple[str, str], unit: str = "",
               chart_id: str = "") -> Markup:
    """One chart: a line per series over equally spaced points, the y axis from 0 to a round maximum."""
    points = max((len(s.values) for s in series), default=0)
    top_value = _nice_max(max((v for s in series for v in s.values if v is not None), default=0.0))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (inner_w * i / (points - 1) if points > 1 else inner_w / 2)

    def y(v: float) -> float:
        return TOP + inner_h - inner_h * v / top_value

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart"'
             + (f' id="{escape(chart_id)}"' if chart_id else "") + f' aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<rect x="{LEFT}" y="{TOP}" width="{inner_w}" height="{inner_h}" fill="#fafafa" stroke="#bbb"/>']
    for fraction in (0.5, 1.0):
        level = y(top_value * fraction)
        parts.append(f'<line x1="{LEFT}" y1="{level:.1f}" x2="{WIDTH - RIGHT}" y2="{level:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{level + 4:.1f}" text-anchor="end" font-size="10">'
                     f"{escape(_number(top_value * fraction))}{escape(unit)}</text>")
    parts.append(f'<text x="{LEFT - 4}" y="{TOP + inner_h + 4}" text-anchor="end" font-size="10">0</text>')
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - BOTTOM + 13}" font-size="10">{escape(x_labels[0])}</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - BOTTOM + 13}" font-size="10" text-anchor="end">'
                 f"{escape(x_labels[1])}</text>")
    legend_x, legend_row = LEFT, 0
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(i):.1f},{y(v):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif run:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(run)}"/>')
        total = sum(v for v in s.values if v is not None)
        label = f"{s.label}" + (f" ({_number(total)})" if not unit else "")
        width = 16 + 6 * len(label)
        if legend_x + width > WIDTH and legend_x > LEFT:  # the next row rather than off the edge
            legend_x, legend_row = LEFT, legend_row + 1
        row_y = HEIGHT + LEGEND_ROW * legend_row
        parts.append(f'<rect x="{legend_x}" y="{row_y - 12}" width="9" height="9" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 12}" y="{row_y - 4}" font-size="10" class="legend">{escape(label)}</text>')
        legend_x += width
    height = HEIGHT + LEGEND_ROW * legend_row
    parts[0] = parts[0].replace(f'viewBox="0 0 {WIDTH} {HEIGHT}"', f'viewBox="0 0 {WIDTH} {height}"')
    parts.append("</svg>")
    return Markup("".join(parts))
