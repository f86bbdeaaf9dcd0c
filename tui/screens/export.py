"""Export: a run's selection (overrides applied) to a training file, with the LLaMA-Factory
dataset_info.json entry that loads it, shown once written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Button, Checkbox, Input, Select, Static

from srt_local.errors import SrtError
from srt_local.exporter import ExportError, ExportReport, export_run
from srt_local.formats import EXPORT_FORMATS
from srt_local.textsafe import visible
from tui.screens.base import RunViewPane
from tui.widgets.confirm import Confirm
from tui.widgets.run_picker import RunPicker
from tui.widgets.status_line import Kind, StatusLine


def parse_top(text: str) -> tuple[int | None, float | None]:
    """'' -> no cut; '100' -> top 100; '10%' or '0.1' -> the top tenth."""
    text = text.strip()
    if not text:
        return None, None
    try:
        if text.endswith("%"):
            return None, float(text[:-1]) / 100
        if "." in text:
            return None, float(text)
        return int(text), None
    except ValueError:
        raise ExportError(
            f"top-k {text!r}: give a count (100), a percentage (10%) or a fraction (0.1)"
        ) from None


def default_path(run_id: int | None, fmt: str) -> str:
    suffix = ".parquet" if fmt == "parquet" else ".json"
    return f"srt-run{run_id if run_id is not None else ''}-{fmt}{suffix}"


def report_text(r: ExportReport) -> str:
    cut = "" if r.n_written == r.n_selected else f" (the top {r.n_written} by IFD)"
    verb = "updated" if r.replaced_entry else "added"
    return (
        f"wrote {r.n_written} of {r.n_selected} selected samples{cut} to {r.path}\n"
        f"{verb} entry {r.entry_name!r} in {r.info_path}:"
    )


class ExportPane(RunViewPane):
    """Run, format, top-k and path; then what was written and the dataset_info.json entry."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "export", "Export")]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form"):
            yield RunPicker(id="export-run")
            yield Select(
                [(f, f) for f in EXPORT_FORMATS],
                value="alpaca",
                allow_blank=False,
                compact=True,
                id="export-format",
            )
            yield Input(placeholder="top-k: 100, 10%", compact=True, id="top")
            yield Checkbox(
                "scores",
                compact=True,
                id="with-scores",
                tooltip="add the ifd_ppl and rifd_ppl fields",
            )
        with Horizontal(classes="form"):
            yield Input(
                placeholder="file to write (.json, .jsonl or .parquet)", compact=True, id="out"
            )
            yield Button("Export", id="export", variant="primary", compact=True)
        yield StatusLine(
            "The selection of the chosen run (with your overrides) is written to the "
            "file, and an entry that loads it is added to dataset_info.json beside it.",
            id="export-status",
        )
        yield Static("", id="entry", markup=False)

    def on_mount(self) -> None:
        self.auto_path = True

    def focus_main(self) -> None:
        self.query_one("#out", Input).focus()

    def show_run(self, run_id: int) -> None:
        self.suggest_path()

    @on(Select.Changed)
    def suggest_path(self) -> None:
        """Keep the default file name in step with run and format until the user edits it."""
        if not self.auto_path:
            return
        run_id = self.query_one("#export-run", RunPicker).value
        fmt = str(self.query_one("#export-format", Select).value)
        out = self.query_one("#out", Input)
        with out.prevent(Input.Changed):
            out.value = default_path(run_id if isinstance(run_id, int) else None, fmt)
            out.cursor_position = len(out.value)  # at the end, wherever the last value left it

    @on(Input.Changed, "#out")
    def path_edited(self) -> None:
        self.auto_path = False

    def set_status(self, text: str, kind: Kind = "") -> None:
        self.query_one("#export-status", StatusLine).set(text, kind)

    @on(Button.Pressed, "#export")
    @on(Input.Submitted, "#out, #top")
    def action_export(self) -> None:
        run_id = self.query_one("#export-run", RunPicker).value
        if not isinstance(run_id, int):
            self.set_status("No run to export: run the pipeline first (tab 3).", "warning")
            return
        fmt = str(self.query_one("#export-format", Select).value)
        out = self.query_one("#out", Input).value.strip()
        if not out:
            self.set_status("Type the file to write.", "warning")
            return
        try:
            top_k, top_fraction = parse_top(self.query_one("#top", Input).value)
        except ExportError as exc:
            self.set_status(str(exc), "error")
            return
        with_scores = self.query_one("#with-scores", Checkbox).value
        self.confirm_and_write(
            run_id, fmt, Path(out).expanduser().resolve(), top_k, top_fraction, with_scores
        )

    @work(group="export-ask", exclusive=True, exit_on_error=False)
    async def confirm_and_write(
        self,
        run_id: int,
        fmt: str,
        out: Path,
        top_k: int | None,
        top_fraction: float | None,
        with_scores: bool,
    ) -> None:
        """Ask before replacing a file (export refuses to without `force`), then write."""
        force = False
        if out.exists() and not out.is_dir():
            force = await self.app.push_screen_wait(
                Confirm(f"{out} exists. Replace it?", yes="Replace", no="Keep it")
            )
            if not force:
                return
        self.set_status("exporting…", "")
        self.write(run_id, fmt, out, top_k, top_fraction, with_scores, force)

    @work(thread=True, group="export", exclusive=True, exit_on_error=False)
    def write(
        self,
        run_id: int,
        fmt: str,
        out: Path,
        top_k: int | None,
        top_fraction: float | None,
        with_scores: bool,
        force: bool = False,
    ) -> None:
        try:
            report = export_run(
                self.ctx.store,
                run_id,
                fmt,
                out,
                top_k=top_k,
                top_fraction=top_fraction,
                with_scores=with_scores,
                force=force,
            )
        except (SrtError, OSError) as exc:
            self.from_thread(self.set_status, str(exc), "error")
            return
        self.from_thread(self._written, report)

    def _written(self, report: ExportReport) -> None:
        self.set_status(report_text(report), "ok")
        entry = json.dumps({report.entry_name: report.entry}, indent=2, ensure_ascii=False)
        self.query_one("#entry", Static).update(visible(entry))
