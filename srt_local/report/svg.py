"""Small inline SVG charts drawn by hand (no library, no network): histograms with thresholds,
grouped count bars and win rates with their intervals. Every text is escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH = 560
HEIGHT = 220
PAD_LEFT = 44
PAD_RIGHT = 12
PAD_TOP = 28
PAD_BOTTOM = 34
# Colour-blind-safe (Okabe-Ito) series colours.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9")


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 11) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}">'
        f"{escape(text)}</text>"
    )


def _open(title: str, height: int = HEIGHT) -> list[str]:
    return [
        f'<svg viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        _text(WIDTH / 2, 16, title, size=13),
    ]


def histogram(
    title: str,
    series: Sequence[tuple[str, Sequence[float]]],
    thresholds: Sequence[float] = (),
    bins: int = 12,
) -> str:
    """Side-by-side bars of every series over the same bins; thresholds as dashed red lines."""
    values = [v for _, s in series for v in s]
    parts = _open(title)
    if not values:
        parts.append(_text(WIDTH / 2, HEIGHT / 2, "no scores"))
        return "\n".join([*parts, "</svg>"])
    lo = min([*values, *thresholds])
    hi = max([*values, *thresholds])
    if hi <= lo:
        hi = lo + 1.0
    span = hi - lo
    # A margin on both sides, but never below 0 for values that cannot be negative (ratios).
    lo, hi = (lo - span * 0.02 if lo < 0 else max(0.0, lo - span * 0.02)), hi + span * 0.02
    width = (hi - lo) / bins
    counts = [[0] * bins for _ in series]
    for counted, (_, s) in zip(counts, series, strict=True):
        for v in s:
            counted[min(int((v - lo) / width), bins - 1)] += 1
    top = max(max(c) for c in counts) or 1
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    base = PAD_TOP + plot_h

    def x_at(v: float) -> float:
        return PAD_LEFT + (v - lo) / (hi - lo) * plot_w

    bar_w = plot_w / bins / (len(series) + 0.5)
    for k, counted in enumerate(counts):
        colour = COLOURS[k % len(COLOURS)]
        for i, c in enumerate(counted):
            if not c:
                continue
            h = c / top * plot_h
            x = PAD_LEFT + i * plot_w / bins + (k + 0.25) * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(series[k][0])}: {c}</title></rect>'
            )
    parts.append(
        f'<line x1="{PAD_LEFT}" y1="{base}" x2="{WIDTH - PAD_RIGHT}" y2="{base}" stroke="#444"/>'
    )
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        parts.append(_text(x_at(v), base + 14, f"{v:.2f}"))
    parts.append(_text(PAD_LEFT - 6, PAD_TOP + 4, str(top), anchor="end"))
    parts.append(_text(PAD_LEFT - 6, base, "0", anchor="end"))
    for t in thresholds:
        x = x_at(t)
        parts.append(
            f'<line class="threshold" x1="{x:.1f}" y1="{PAD_TOP - 4}" x2="{x:.1f}" y2="{base}" '
            'stroke="#D55E00" stroke-width="2" stroke-dasharray="5,3"/>'
        )
        parts.append(_text(x + 4, PAD_TOP + 6, f"threshold {t:g}", anchor="start", size=10))
    legend_x = PAD_LEFT
    for k, (label, s) in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        y = HEIGHT - 8
        parts.append(f'<rect x="{legend_x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        text = f"{label} ({len(s)})"
        parts.append(_text(legend_x + 14, y, text, anchor="start", size=10))
        legend_x += 24 + 6 * len(text)
    return "\n".join([*parts, "</svg>"])


def grouped_counts(
    title: str, groups: Sequence[tuple[str, Sequence[int]]], names: Sequence[str]
) -> str:
    """One group of bars per label (e.g. a branch), one bar per name (decided, kept)."""
    parts = _open(title)
    top = max([c for _, cs in groups for c in cs] or [0]) or 1
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    base = PAD_TOP + plot_h
    slot = plot_w / max(1, len(groups))
    bar_w = slot / (len(names) + 1)
    for g, (label, cs) in enumerate(groups):
        for k, c in enumerate(cs):
            h = c / top * plot_h
            x = PAD_LEFT + g * slot + (k + 0.5) * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[k % len(COLOURS)]}"><title>{escape(label)} {escape(names[k])}: '
                f"{c}</title></rect>"
            )
            parts.append(_text(x + bar_w / 2, base - h - 3, str(c), size=10))
        parts.append(_text(PAD_LEFT + (g + 0.5) * slot, base + 14, label))
    parts.append(
        f'<line x1="{PAD_LEFT}" y1="{base}" x2="{WIDTH - PAD_RIGHT}" y2="{base}" stroke="#444"/>'
    )
    legend_x = PAD_LEFT
    for k, name in enumerate(names):
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT - 17}" width="10" height="10" '
            f'fill="{COLOURS[k % len(COLOURS)]}"/>'
        )
        parts.append(_text(legend_x + 14, HEIGHT - 8, name, anchor="start", size=10))
        legend_x += 24 + 7 * len(name)
    return "\n".join([*parts, "</svg>"])


def win_rates(title: str, rows: Sequence[tuple[str, float, float, float, int]]) -> str:
    """One horizontal bar per row (label, rate, low, high, n) on a 0-100% axis, with its interval
    as a whisker and a dashed line at 50% (no difference)."""
    row_h = 22
    height = PAD_TOP + row_h * max(1, len(rows)) + PAD_BOTTOM
    parts = _open(title, height)
    left = 150
    plot_w = WIDTH - left - 60
    base = PAD_TOP + row_h * len(rows)

    def x_at(v: float) -> float:
        return left + max(0.0, min(1.0, v)) * plot_w

    for i, (label, rate, low, high, n) in enumerate(rows):
        y = PAD_TOP + i * row_h
        parts.append(_text(left - 6, y + 15, f"{label} (n={n})", anchor="end", size=10))
        if math.isnan(rate):
            continue
        parts.append(
            f'<rect x="{left}" y="{y + 4}" width="{x_at(rate) - left:.1f}" height="{row_h - 8}" '
            f'fill="{COLOURS[0]}" opacity="0.8"><title>{escape(label)}: {rate:.1%} '
            f"[{low:.1%}, {high:.1%}]</title></rect>"
        )
        if not math.isnan(low):
            mid = y + row_h / 2
            parts.append(
                f'<line class="ci" x1="{x_at(low):.1f}" y1="{mid:.1f}" x2="{x_at(high):.1f}" '
                f'y2="{mid:.1f}" stroke="#222" stroke-width="2"/>'
            )
            for v in (low, high):
                parts.append(
                    f'<line x1="{x_at(v):.1f}" y1="{mid - 5:.1f}" x2="{x_at(v):.1f}" '
                    f'y2="{mid + 5:.1f}" stroke="#222" stroke-width="2"/>'
                )
        parts.append(_text(x_at(1.0) + 4, y + 15, f"{rate:.0%}", anchor="start", size=10))
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(_text(x_at(v), base + 14, f"{v:.0%}", size=10))
    parts.append(
        f'<line x1="{x_at(0.5):.1f}" y1="{PAD_TOP - 4}" x2="{x_at(0.5):.1f}" y2="{base}" '
        'stroke="#D55E00" stroke-dasharray="4,3"/>'
    )
    return "\n".join([*parts, "</svg>"])
