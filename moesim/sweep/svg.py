"""Tiny inline-SVG chart primitives for the sweep report (no JavaScript, no downloads).

Every chart is a plain `<svg id=...>` string; values become marks with a `<title>` tooltip.
"""

from __future__ import annotations

import math
from html import escape

# Perceptually ordered colour ramp (viridis anchor points) for heat maps.
_RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
GRADE_COLOURS = {"S": "#1a9850", "A": "#66bd63", "B": "#a6d96a", "C": "#fee08b", "D": "#fdae61", "F": "#d73027"}
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
TIER_COLOURS = {"vram": "#2ca02c", "host": "#1f77b4", "nvme": "#d62728"}


def ramp(t: float) -> str:
    """Colour for t in [0, 1] on the ramp."""
    t = min(max(t, 0.0), 1.0) * (len(_RAMP) - 1)
    i = min(int(t), len(_RAMP) - 2)
    f = t - i
    r, g, b = (round(a + (b_ - a) * f) for a, b_ in zip(_RAMP[i], _RAMP[i + 1]))
    return f"#{r:02x}{g:02x}{b:02x}"


def fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _open(svg_id: str, width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg id="{escape(svg_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="8" y="16" class="title">{escape(title)}</text>',
    ]


def empty(svg_id: str, title: str, message: str) -> str:
    parts = _open(svg_id, 480, 60, title)
    parts.append(f'<text x="240" y="42" text-anchor="middle" class="note">{escape(message)}</text></svg>')
    return "\n".join(parts)


def heatmap(svg_id: str, title: str, rows: list[str], cols: list[str], values: dict, labels: dict | None = None,
            unit: str = "tok/s") -> str:
    """Cells coloured by log10(value); `values[(row, col)]`, missing cells left blank."""
    cell_w, cell_h = 34, 14
    left = 8 + 7 * max((len(r) for r in rows), default=4)
    top = 30 + 6 * max((len(c) for c in cols), default=4)
    width, height = left + cell_w * len(cols) + 20, top + cell_h * len(rows) + 10
    finite = [v for v in values.values() if v is not None and math.isfinite(v) and v > 0]
    lo, hi = (math.log10(min(finite)), math.log10(max(finite))) if finite else (0.0, 1.0)
    span = hi - lo or 1.0
    title += f" (colour: log {unit}, {fmt(10 ** lo)} to {fmt(10 ** hi)})" if finite else ""
    width = max(width, 16 + 7 * len(title))
    parts = _open(svg_id, width, height, title)
    for j, col in enumerate(cols):
        x = left + j * cell_w + cell_w / 2
        parts.append(f'<text x="{x:.0f}" y="{top - 4}" transform="rotate(-60 {x:.0f} {top - 4})" class="tick">{escape(col)}</text>')
    for i, row in enumerate(rows):
        y = top + i * cell_h
        parts.append(f'<text x="{left - 4}" y="{y + cell_h - 3}" text-anchor="end" class="tick">{escape(row)}</text>')
        for j, col in enumerate(cols):
            value = values.get((row, col))
            if value is None:
                continue
            ok = math.isfinite(value) and value > 0
            colour = ramp((math.log10(value) - lo) / span) if ok else "#dddddd"
            label = (labels or {}).get((row, col), "")
            parts.append(
                f'<rect class="cell" x="{left + j * cell_w}" y="{y}" width="{cell_w - 1}" height="{cell_h - 1}" '
                f'fill="{colour}"><title>{escape(row)} / {escape(col)}: {fmt(value)} {unit} {escape(label)}</title></rect>'
            )
            if label:
                parts.append(f'<text x="{left + j * cell_w + cell_w / 2:.0f}" y="{y + cell_h - 3}" text-anchor="middle" '
                             f'class="cell-label">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10.0 ** e for e in range(math.floor(lo), math.ceil(hi) + 1)]
    step = 10 ** math.floor(math.log10((hi - lo) or 1.0))
    if (hi - lo) / step < 4:
        step /= 2
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step) + 1)]


def line_chart(svg_id: str, title: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str,
               log_y: bool = False, y_range: tuple[float, float] | None = None) -> str:
    """One polyline with markers per series; points sorted by x."""
    width, height, left, right, top, bottom = 640, 360, 64, 170, 28, 44
    pts = [(x, y) for s in series.values() for x, y in s if math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y)]
    if not pts:
        return empty(svg_id, title, "no points of this kind in the sweep")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    if y_range is not None:
        y_lo, y_hi = y_range
    elif log_y:
        y_lo, y_hi = math.log10(min(ys)), math.log10(max(ys))
        if y_hi == y_lo:
            y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    else:
        y_lo, y_hi = 0.0, max(ys) * 1.05 or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y):
        v = math.log10(y) if log_y else y
        return top + plot_h - (v - y_lo) / ((y_hi - y_lo) or 1.0) * plot_h

    parts = _open(svg_id, width, height, title)
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>')
    for tick in _ticks(x_lo, x_hi, False):
        parts.append(f'<text x="{px(tick):.1f}" y="{top + plot_h + 14}" text-anchor="middle" class="tick">{fmt(tick)}</text>')
    for tick in _ticks(y_lo, y_hi, log_y):
        v = math.log10(tick) if log_y else tick
        if y_lo - 1e-9 <= v <= y_hi + 1e-9:
            parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" class="grid"/>')
            parts.append(f'<text x="{left - 4}" y="{py(tick) + 4:.1f}" text-anchor="end" class="tick">{fmt(tick)}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle" class="axis">{escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{top + plot_h / 2:.0f}" transform="rotate(-90 14 {top + plot_h / 2:.0f})" '
                 f'text-anchor="middle" class="axis">{escape(y_label)}</text>')
    for k, (name, points) in enumerate(series.items()):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        good = sorted((x, y) for x, y in points if math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y))
        if not good:
            continue
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in good)
        parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for x, y in good:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}">'
                         f'<title>{escape(name)}: {fmt(x)}, {fmt(y)}</title></circle>')
        parts.append(f'<rect x="{width - right + 10}" y="{top + 14 * k}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{width - right + 24}" y="{top + 14 * k + 9}" class="tick">{escape(name[:24])}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def stacked_bars(svg_id: str, title: str, bars: list[tuple[str, dict[str, float]]], unit: str,
                 colours: dict[str, str], capacity: float | None = None) -> str:
    """Horizontal bars stacked by component (e.g. GB per memory tier); optional capacity line."""
    if not bars:
        return empty(svg_id, title, "no points of this kind in the sweep")
    left = 8 + 7 * max(len(name) for name, _ in bars)
    width, bar_h, top = left + 520, 14, 40
    height = top + bar_h * len(bars) + 30
    total_max = max(sum(parts.values()) for _, parts in bars) or 1.0
    scale_max = max(total_max, capacity or 0.0)
    plot_w = width - left - 40

    parts_svg = _open(svg_id, width, height, title)
    for k, (name, colour) in enumerate(colours.items()):
        parts_svg.append(f'<rect x="{left + 90 * k}" y="22" width="10" height="10" fill="{colour}"/>')
        parts_svg.append(f'<text x="{left + 90 * k + 14}" y="31" class="tick">{escape(name)}</text>')
    for i, (name, components) in enumerate(bars):
        y = top + i * bar_h
        parts_svg.append(f'<text x="{left - 4}" y="{y + bar_h - 3}" text-anchor="end" class="tick">{escape(name)}</text>')
        x = float(left)
        for component, colour in colours.items():
            value = components.get(component, 0.0)
            if value <= 0:
                continue
            w = value / scale_max * plot_w
            parts_svg.append(f'<rect class="bar" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}">'
                             f'<title>{escape(name)} {escape(component)}: {fmt(value)} {unit}</title></rect>')
            x += w
    if capacity:
        cx = left + capacity / scale_max * plot_w
        parts_svg.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{top}" y2="{height - 26}" class="capacity"/>')
        parts_svg.append(f'<text x="{cx:.1f}" y="{height - 12}" text-anchor="middle" class="tick">VRAM {fmt(capacity)} {unit}</text>')
    parts_svg.append("</svg>")
    return "\n".join(parts_svg)


def bar_chart(svg_id: str, title: str, bars: list[tuple[str, float]], colours: dict[str, str]) -> str:
    """Vertical bars, one per label (e.g. count of points per grade)."""
    width, height, left, top, bottom = 360, 220, 40, 28, 30
    top_value = max((v for _, v in bars), default=0) or 1
    slot = (width - left - 10) / max(len(bars), 1)
    parts = _open(svg_id, width, height, title)
    for i, (label, value) in enumerate(bars):
        h = value / top_value * (height - top - bottom)
        x = left + i * slot
        parts.append(f'<rect class="bar" x="{x + 4:.1f}" y="{height - bottom - h:.1f}" width="{slot - 8:.1f}" height="{h:.1f}" '
                     f'fill="{colours.get(label, "#888")}"><title>{escape(label)}: {fmt(value)}</title></rect>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle" class="tick">{escape(label)}</text>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom - h - 3:.1f}" text-anchor="middle" class="tick">{int(value)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
