"""Distributions: histograms of IFD and r-IFD, original against reflected, and where the kept fall.

Both series of a chart share one set of bins (computed here), so their bars compare bin by bin; the
third bar of each bin counts the kept samples' final scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.color import Color
from textual.containers import Horizontal
from textual_plotext import PlotextPlot

from srt_local.review import Distributions, score_distributions
from tui.screens.base import RunViewPane
from tui.widgets.run_picker import RunPicker
from tui.widgets.status_line import StatusLine

BINS = 8


def histogram(
    series: Sequence[Sequence[float]], bins: int = BINS
) -> tuple[list[str], list[list[int]]]:
    """Counts of every series over the same `bins` equal bins spanning all their values."""
    values = [v for s in series for v in s]
    if not values:
        return [], [[] for _ in series]
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins if hi > lo else 1.0
    counts = [[0] * bins for _ in series]
    for counted, s in zip(counts, series, strict=True):
        for v in s:
            counted[min(int((v - lo) / width), bins - 1)] += 1
    labels = [f"{lo + (i + 0.5) * width:.2f}" for i in range(bins)]
    return labels, counts


class DistributionsPane(RunViewPane):
    """A run picker and two charts: IFD (ori vs Q) and r-IFD (base vs reflected response)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "reload", "Refresh")]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form"):
            yield RunPicker(id="dist-run")
        yield StatusLine(id="dist-caption")
        yield PlotextPlot(id="ifd-plot")
        yield PlotextPlot(id="rifd-plot")

    def on_mount(self) -> None:
        self.scores: Distributions | None = None
        # The bar colours come from the theme's variables.
        self.watch(self.app, "theme", lambda _theme: self.draw(), init=False)

    def focus_main(self) -> None:
        self.picker.focus()

    def show_run(self, run_id: int) -> None:
        self.load(run_id)

    @work(thread=True, group="dist-load", exclusive=True, exit_on_error=False)
    def load(self, run_id: int) -> None:
        data = score_distributions(self.ctx.store, run_id)
        self.from_thread(self._loaded, data)

    def _loaded(self, data: Distributions) -> None:
        self.scores = data
        self.query_one("#dist-caption", StatusLine).set(
            f"{data.decided:,} decided · {data.kept:,} kept · kept samples need IFD < 1 and "
            "r-IFD < 1 · bars: original, reflected, kept"
        )
        self.draw()

    def colours(self) -> list[tuple[int, int, int]]:
        variables = self.app.theme_variables
        return [Color.parse(variables[name]).rgb for name in ("primary", "warning", "success")]

    def draw(self) -> None:
        d = self.scores
        if d is None:
            return
        self._chart(
            "#ifd-plot",
            "IFD",
            [d.ifd_ori, d.ifd_q, d.ifd_kept],
            ["original", "reflected Q", "kept"],
        )
        self._chart(
            "#rifd-plot",
            "r-IFD",
            [d.rifd_base, d.rifd_reflected, d.rifd_kept],
            ["base", "reflected A/QA", "kept"],
        )

    def _chart(
        self, selector: str, title: str, series: list[list[float]], labels: list[str]
    ) -> None:
        widget = self.query_one(selector, PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        bins, counts = histogram(series)
        if not bins:
            plt.title(f"{title}: no scores yet")
        else:
            names = [f"{label} ({len(s)})" for label, s in zip(labels, series, strict=True)]
            # The bundled stub lags plotext: multiple_bar takes a label and a colour per series.
            plt.multiple_bar(bins, counts, labels=names, color=self.colours())  # type: ignore[call-arg, arg-type]
            top = max(max(c) for c in counts)
            step = max(1, round(top / 4))
            plt.yticks(list(range(0, top + 1, step)))
            # Headroom above the bars keeps the legend (top left) off them.
            plt.ylim(0, top * 1.6)
            plt.title(title)
        widget.refresh()
