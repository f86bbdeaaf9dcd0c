"""Report: the figures of `srt report` in the terminal, for the run picked anywhere in the app.

A caption with kept/rejected, branch counts and the judge's win rates; IFD and r-IFD histograms
(original against reflected, and the kept) with the keep threshold drawn; and one bar per judged
group with its 95% interval in the label. The figures come from the same `gather` as the HTML.
"""

from __future__ import annotations

import math
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.color import Color
from textual.containers import Horizontal
from textual.widgets import Static
from textual_plotext import PlotextPlot

from srt_local.judge.stats import WinRate
from srt_local.report.figures import IFD_THRESHOLD, RIFD_THRESHOLD, ReportData, gather
from tui.screens.base import RunViewPane
from tui.widgets.run_picker import RunPicker

BINS = 10


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0%}"


def rate_label(name: str, rate: WinRate) -> str:
    return f"{name} {_pct(rate.win_rate)} [{_pct(rate.low)}-{_pct(rate.high)}] n={rate.n}"


def caption(d: ReportData) -> str:
    """The report's headline figures as a few lines of text."""
    branches = ", ".join(f"{b} {k}/{n}" for b, n, k in d.branches) or "none"
    lines = [
        f"{d.kept} kept, {d.decided - d.kept} rejected of {d.decided} decided · kept/decided by "
        f"branch: {branches} · overrides: {d.overridden_by_person} by you, "
        f"{d.overridden_by_judge} by the judge"
    ]
    for c in d.comparisons:
        s = c.summary
        lc = s.length_controlled
        lc_text = f"{_pct(lc.win_rate)} [{_pct(lc.low)}-{_pct(lc.high)}]" if lc else "–"
        lines.append(
            f"vs {c.against} ({c.judge}): win rate {_pct(s.overall.win_rate)} "
            f"[{_pct(s.overall.low)}-{_pct(s.overall.high)}], {s.overall.wins}/{s.overall.ties}/"
            f"{s.overall.losses} w/t/l, length-controlled {lc_text}, "
            f"Δlength {s.mean_length_diff:+.0f} chars, orders agree {_pct(s.consistency)}"
        )
    if not d.comparisons:
        lines.append(f"not judged yet: srt judge {d.run['run_id']}")
    return "\n".join(lines)


def shared_bins(
    series: list[list[float]], threshold: float, bins: int = BINS
) -> tuple[list[str], list[list[int]], float]:
    """Counts of every series over the same bins, spanning the values and the threshold (so its
    line is always on the chart); the threshold's x position in bar coordinates (bar i at i+1)."""
    values = [v for s in series for v in s]
    if not values:
        return [], [], 0.0
    lo, hi = min(*values, threshold), max(*values, threshold)
    width = (hi - lo) / bins if hi > lo else 1.0
    counts = [[0] * bins for _ in series]
    for counted, s in zip(counts, series, strict=True):
        for v in s:
            counted[min(int((v - lo) / width), bins - 1)] += 1
    labels = [f"{lo + (i + 0.5) * width:.2f}" for i in range(bins)]
    return labels, counts, (threshold - lo) / width + 0.5


class ReportPane(RunViewPane):
    """A run picker, the report's caption, two histograms and the judge's win rates."""

    DEFAULT_CSS = """
    ReportPane #report-caption { height: auto; max-height: 5; padding: 0 1; }
    ReportPane #report-charts { height: 1fr; }
    ReportPane #report-charts > PlotextPlot { width: 1fr; }
    ReportPane #report-wins { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "reload", "Refresh")]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form"):
            yield RunPicker(id="report-run")
        yield Static("", id="report-caption", markup=False)
        with Horizontal(id="report-charts"):
            yield PlotextPlot(id="report-ifd")
            yield PlotextPlot(id="report-rifd")
        yield PlotextPlot(id="report-wins")

    def on_mount(self) -> None:
        self.data: ReportData | None = None
        self.watch(self.app, "theme", lambda _theme: self.draw(), init=False)

    def focus_main(self) -> None:
        self.picker.focus()

    def show_run(self, run_id: int) -> None:
        self.load(run_id)

    @work(thread=True, group="report-load", exclusive=True, exit_on_error=False)
    def load(self, run_id: int) -> None:
        data = gather(self.ctx.store, run_id)
        self.from_thread(self._loaded, data)

    def _loaded(self, data: ReportData) -> None:
        self.data = data
        self.query_one("#report-caption", Static).update(caption(data))
        self.draw()

    def colours(self) -> list[tuple[int, int, int]]:
        variables = self.app.theme_variables
        names = ("primary", "warning", "success", "error")
        return [Color.parse(variables[name]).rgb for name in names]

    def draw(self) -> None:
        d = self.data
        if d is None:
            return
        self._histogram(
            "#report-ifd",
            "IFD",
            [("original", d.ifd_ori), ("reflected Q", d.ifd_reflected), ("kept", d.ifd_kept)],
            IFD_THRESHOLD,
        )
        self._histogram(
            "#report-rifd",
            "r-IFD",
            [("base", d.rifd_base), ("reflected", d.rifd_reflected), ("kept", d.rifd_kept)],
            RIFD_THRESHOLD,
        )
        self._wins(d)

    def _histogram(
        self, selector: str, title: str, series: list[tuple[str, list[float]]], threshold: float
    ) -> None:
        widget = self.query_one(selector, PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        labels, counts, at = shared_bins([values for _, values in series], threshold)
        if not labels:
            plt.title(f"{title}: no scores yet")
        else:
            colours = self.colours()
            names = [f"{label} ({len(values)})" for label, values in series]
            # The bundled stub lags plotext: multiple_bar takes a label and a colour per series.
            plt.multiple_bar(labels, counts, labels=names, color=colours[:3])  # type: ignore[call-arg, arg-type]
            plt.vline(at, colours[3])
            top = max(max(c) for c in counts)
            plt.ylim(0, top * 1.6)  # headroom keeps the legend (top left) off the bars
            plt.title(f"{title} · keep below {threshold:g}")
        widget.refresh()

    def _wins(self, d: ReportData) -> None:
        widget = self.query_one("#report-wins", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        rows: list[tuple[str, WinRate]] = []
        for c in d.comparisons:
            rows.append((f"vs {c.against}", c.summary.overall))
            rows += [(f"  {c.against} {b}", r) for b, r in c.summary.by_branch.items()]
        rows = [(label, rate) for label, rate in rows if not math.isnan(rate.win_rate)]
        if not rows:
            plt.title("judge win rates: not judged yet")
        else:
            rows.reverse()  # plotext draws the first bar at the bottom
            labels = [rate_label(label, rate) for label, rate in rows]
            values = [rate.win_rate * 100 for _, rate in rows]
            plt.bar(labels, values, orientation="horizontal", color=self.colours()[0], width=0.3)
            plt.xlim(0, 100)
            plt.title("judge win rate % of the selected pair [95% interval]")
        widget.refresh()
