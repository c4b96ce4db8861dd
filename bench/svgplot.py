"""Dependency-free SVG line charts for the benchmark plots (no matplotlib for one figure).

``line_chart`` draws one panel: a polyline and dots per series, round y ticks
from 0, and on a log10 x axis ticks at the powers of ten labelled 1k, 10k, 100k,
1M. ``side_by_side`` puts panels in one SVG document under a common title.

>>> panel = line_chart({"warm": [(1e3, 900.0), (1e4, 1200.0)]}, title="rate", x_label="meters", y_label="readings/s")
>>> panel.startswith("<svg") and ">10k<" in panel and ">1,000<" in panel
True
>>> doc = side_by_side([panel, panel], title="two panels")
>>> doc.count("<polyline")
2
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
MARGIN = {"left": 78, "right": 24, "top": 58, "bottom": 52}  # room for tick labels, axis labels, legend


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Ticks from 0 to a round number >= ``top``, steps of 1, 2, 2.5 or 5 times a power of ten.

    >>> nice_ticks(23_400)
    [0.0, 5000.0, 10000.0, 15000.0, 20000.0, 25000.0]
    """
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [float(k * step) for k in range(math.ceil(top / step - 1e-9) + 1)]


def compact(value: float) -> str:
    """A log-axis tick label: 1k, 10k, 100k, 1M.

    >>> [compact(10.0**p) for p in range(0, 7)]
    ['1', '10', '100', '1k', '10k', '100k', '1M']
    """
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def number(value: float) -> str:
    """A linear-axis tick label, with thousands separators (0, 2,500, 5,000) or decimals (0.25)."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,g}"


def _text(x: float, y: float, body: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(body)}</text>'


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    log_x: bool = True,
    width: int = 480,
    height: int = 340,
) -> str:
    """One panel as a standalone ``<svg>`` element; points are sorted by x."""
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    fx: float | None = None
    if log_x:
        lo, hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
        hi = max(hi, lo + 1)  # a single power of ten still needs a span
        x_ticks = [10.0**p for p in range(lo, hi + 1)]
        fx = lo
        span = float(hi - lo)
    else:
        x_ticks = nice_ticks(max(xs))
        span = x_ticks[-1]
    y_ticks = nice_ticks(max(ys))
    left, top = MARGIN["left"], MARGIN["top"]
    plot_w, plot_h = width - left - MARGIN["right"], height - top - MARGIN["bottom"]

    def px(x: float) -> float:
        return left + plot_w * ((math.log10(x) - fx) if fx is not None else x) / span

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_ticks[-1])

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        _text(width / 2, 18, title, extra=' font-size="14" font-weight="bold"'),
    ]
    for y in y_ticks:
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(_text(left - 6, py(y) + 4, number(y), "end"))
    for x in x_ticks:
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eee"/>')
        out.append(_text(px(x), top + plot_h + 18, compact(x) if log_x else number(x)))
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>')
    out.append(_text(left + plot_w / 2, height - 10, x_label))
    out.append(_text(16, top + plot_h / 2, y_label, extra=f' transform="rotate(-90 16 {top + plot_h / 2:.1f})"'))
    legend_x = left
    for k, (name, points) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        coords = [(px(x), py(y)) for x, y in sorted(points)]
        joined = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(f'<polyline points="{joined}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in coords)
        # Legend in a row above the plot, so it never hides a line.
        out.append(f'<rect x="{legend_x}" y="{top - 20}" width="14" height="4" fill="{colour}"/>')
        out.append(_text(legend_x + 18, top - 14, name, "start"))
        legend_x += 30 + 7 * len(name)
    out.append("</svg>")
    return "\n".join(out)


def side_by_side(panels: list[str], *, title: str, title_height: int = 30) -> str:
    """Panels from ``line_chart`` in a row, under ``title``, as one SVG document."""
    sizes = [(int(ET.fromstring(p).get("width", 0)), int(ET.fromstring(p).get("height", 0))) for p in panels]
    width, height = sum(w for w, _ in sizes), max(h for _, h in sizes) + title_height
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        _text(width / 2, 21, title, extra=' font-size="15" font-weight="bold"'),
    ]
    offset = 0
    for panel, (w, _) in zip(panels, sizes, strict=True):
        out.append(f'<g transform="translate({offset} {title_height})">\n{panel}\n</g>')
        offset += w
    out.append("</svg>")
    return "\n".join(out) + "\n"
