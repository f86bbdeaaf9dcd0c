"""The report's charts: axes that say what the data can be."""

from __future__ import annotations

import re

from srt_local.report.svg import histogram


def test_a_histogram_of_ratios_starts_its_axis_at_zero_not_below() -> None:
    svg = histogram("IFD", [("original", [0.05, 0.5, 0.9, 10.0])], thresholds=[1.0])
    ticks = [float(t) for t in re.findall(r">(-?[0-9]+\.[0-9]+)<", svg)]
    assert ticks and min(ticks) == 0.0


def test_a_histogram_of_signed_values_keeps_its_margin_below() -> None:
    svg = histogram("diff", [("a", [-1.0, 0.0, 1.0])])
    ticks = [float(t) for t in re.findall(r">(-?[0-9]+\.[0-9]+)<", svg)]
    assert min(ticks) < -1.0
