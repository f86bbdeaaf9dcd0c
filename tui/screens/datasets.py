"""Datasets: import a file; see each dataset's counts and its rejected records, where and why.

On an empty store the tab offers the shipped demo data and a file picker; the path field completes
paths as you type and has the focus, so typing goes straight into it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Button, Checkbox, Input, Select, Static
from textual.worker import get_current_worker

from srt_local.errors import SrtError
from srt_local.formats import FORMATS, RecordError
from srt_local.importer import (
    DEMO_NAME,
    ImportReport,
    demo_file,
    import_dataset,
)
from tui.screens.base import Pane
from tui.widgets.arrow_table import ArrowTable
from tui.widgets.path_input import PathInput
from tui.widgets.status_line import Kind, StatusLine

if TYPE_CHECKING:
    # The first tab shown: pyarrow (with the review queries) is imported by its workers, after
    # the first paint.
    import pyarrow as pa
    from textual_fastdatatable import DataTable

ERRORS_SHOWN = 500
DATASET_SUFFIXES = {".json", ".jsonl", ".parquet", ".csv"}


def errors_table(errors: list[RecordError]) -> pa.Table:
    """Record errors from a report (not stored when the import was refused) as a table."""
    import pyarrow as pa

    return pa.table(
        {
            "location": pa.array([e.location for e in errors[:ERRORS_SHOWN]], pa.string()),
            "field": pa.array([e.field or "" for e in errors[:ERRORS_SHOWN]], pa.string()),
            "reason": pa.array([e.reason for e in errors[:ERRORS_SHOWN]], pa.string()),
        }
    )


def showing(n: int, total: int, what: str) -> str:
    return f"{what}: {total:,}" if n >= total else f"{what}: showing {n:,} of {total:,}"


class DatasetsPane(Pane):
    """Import form on top, the datasets below, and the rejected records of the chosen one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "focus_path", "Import a file"),
        Binding("ctrl+o", "pick_file", "Pick a file"),
        Binding("r", "reload", "Refresh"),
    ]
    HELP = (
        "Type a file's path (→ accepts the completion) and press enter, or pick one with ctrl+o. "
        "On an empty store, the demo data is one button away."
    )

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form"):
            yield PathInput(placeholder="file to import: .json .jsonl .parquet .csv", id="path")
            yield Select(
                [(f, f) for f in ("auto", *FORMATS)],
                value="auto",
                allow_blank=False,
                compact=True,
                id="format",
            )
            yield Input(placeholder="name (optional)", id="name", compact=True)
            yield Checkbox("strict", id="strict", compact=True)
            yield Button("Import", id="import", variant="primary", compact=True)
        yield StatusLine(id="import-status")
        with Horizontal(id="first-run"):
            yield Static(
                "No dataset yet: type a file's path above (→ completes it), pick a file, or "
                "try the method on the demo data.",
                markup=False,
            )
            yield Button("Load the demo data", id="demo", variant="success", compact=True)
            yield Button("Pick a file…", id="pick", compact=True)
        yield ArrowTable(
            "no dataset yet: type a file's path above and press enter",
            fallback="#path",
            id="datasets-table",
        )
        yield ArrowTable("no rejected records", id="errors-table")

    def on_mount(self) -> None:
        self.dataset_ids: list[int] = []

    def activated(self) -> None:
        self.load()

    def focus_main(self) -> None:
        self.query_one("#datasets-table", ArrowTable).focus_table()

    def action_focus_path(self) -> None:
        self.query_one("#path", Input).focus()

    def action_reload(self) -> None:
        self.load()

    # ------------------------------------------------------------ listing

    @work(thread=True, group="datasets-load", exclusive=True, exit_on_error=False)
    def load(self, select: int | None = None) -> None:
        from srt_local.review import datasets_table

        table = datasets_table(self.ctx.store)
        if not get_current_worker().is_cancelled:
            self.from_thread(self._show_datasets, table, select)

    async def _show_datasets(self, table: pa.Table, select: int | None) -> None:
        self.dataset_ids = [int(i) for i in table.column("id").to_pylist()]
        self.query_one("#first-run").display = not self.dataset_ids
        row = self.dataset_ids.index(select) if select in self.dataset_ids else 0
        await self.query_one("#datasets-table", ArrowTable).show(
            table, showing(table.num_rows, table.num_rows, "datasets"), cursor_row=row
        )
        if self.dataset_ids:
            self.load_errors(self.dataset_ids[row])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = self.query_one("#datasets-table", ArrowTable).table
        if event.data_table is table and 0 <= event.cursor_row < len(self.dataset_ids):
            self.load_errors(self.dataset_ids[event.cursor_row])

    @work(thread=True, group="datasets-errors", exclusive=True, exit_on_error=False)
    def load_errors(self, dataset_id: int) -> None:
        from srt_local.review import import_errors_page

        table, total = import_errors_page(self.ctx.store, dataset_id, ERRORS_SHOWN)
        if not get_current_worker().is_cancelled:
            caption = showing(table.num_rows, total, f"rejected records of dataset {dataset_id}")
            self.from_thread(self._show_errors, table, caption)

    async def _show_errors(self, table: pa.Table, caption: str) -> None:
        await self.query_one("#errors-table", ArrowTable).show(table, caption)

    # ------------------------------------------------------------ importing

    @on(Input.Submitted, "#path, #name")
    @on(Button.Pressed, "#import")
    def start_import(self) -> None:
        text = self.query_one("#path", Input).value.strip()
        if not text:
            self.set_status("Type the path of a file to import.", "warning")
            self.query_one("#path", Input).focus()
            return
        fmt = self.query_one("#format", Select).value
        name = self.query_one("#name", Input).value.strip() or None
        strict = self.query_one("#strict", Checkbox).value
        self.set_status(f"importing {text}…")
        self.run_import(Path(text).expanduser(), str(fmt), name, strict)

    @on(Button.Pressed, "#demo")
    def action_load_demo(self) -> None:
        self.set_status(f"importing the demo data ({demo_file().name})…")
        self.run_import(demo_file(), "auto", DEMO_NAME, False)

    @on(Button.Pressed, "#pick")
    @work(group="datasets-pick", exclusive=True, exit_on_error=False)
    async def action_pick_file(self) -> None:
        """Choose the file to import in a file dialog, then import it."""
        from textual_fspicker import FileOpen, Filters

        dialog = FileOpen(
            Path.cwd(),
            title="Import a dataset",
            filters=Filters(
                ("Datasets", lambda p: p.suffix.lower() in DATASET_SUFFIXES),
                ("Any file", lambda _p: True),
            ),
        )
        chosen = await self.app.push_screen_wait(dialog)
        if chosen is None:
            return
        self.query_one("#path", Input).value = str(chosen)
        self.start_import()

    def set_status(self, text: str, kind: Kind = "") -> None:
        self.query_one("#import-status", StatusLine).set(text, kind)

    @work(thread=True, group="import", exclusive=True, exit_on_error=False)
    def run_import(self, path: Path, fmt: str, name: str | None, strict: bool) -> None:
        try:
            max_chars = self.ctx.load_models().limits.import_field_chars
            report = import_dataset(
                self.ctx.store, path, fmt=fmt, name=name, strict=strict, max_chars=max_chars
            )
        except (SrtError, OSError) as exc:
            self.from_thread(self.set_status, f"{exc}", "error")
            return
        self.from_thread(self._imported, report)

    async def _imported(self, report: ImportReport) -> None:
        if report.refused:
            self.set_status(str(report), "error")
            await self.query_one("#errors-table", ArrowTable).show(
                errors_table(report.errors),
                showing(
                    min(len(report.errors), ERRORS_SHOWN),
                    len(report.errors),
                    f"bad records of {report.path.name} (nothing written)",
                ),
            )
            return
        self.set_status(str(report), "warning" if report.errors else "ok")
        self.query_one("#path", Input).value = ""
        self.query_one("#name", Input).value = ""
        self.load(select=report.dataset_id)
